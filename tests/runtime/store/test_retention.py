"""Retention: pruning finished runs' events behind an anchor (DESIGN §10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.store import NewEvent, RunNotFound, StaleCursor, Store, StoreConfig
from tests.runtime._helpers import leased_run, query

if TYPE_CHECKING:
    from uuid import UUID

pytestmark = pytest.mark.anyio


async def _finished_run(store: Store, steps: int = 5, run_type: str = "chat") -> UUID:
    run, _ = await store.create_run(owner="alice", session_id="s", run_type=run_type)
    lease = await store.acquire_lease(run.run_id, owner_node="node-a")
    await store.append_events(
        run.run_id,
        lease.epoch,
        [*(NewEvent("step", {"i": i}) for i in range(steps)), NewEvent("run.succeeded", {})],
    )
    return run.run_id


async def test_pruning_keeps_the_run_its_terminal_event_and_a_verifiable_chain(
    store: Store,
) -> None:
    run_id = await _finished_run(store, steps=5)
    before = await store.read_events(run_id)
    report = await store.prune_events(default_window=0)
    assert (report.runs, report.events, report.skipped) == (1, 5, ())
    run = await store.get_run(run_id)
    assert (run.status, run.last_seq, run.retention_floor) == ("succeeded", 6, 5)
    (terminal,) = await store.read_events(run_id, after=5)
    assert terminal == before[-1]
    assert terminal.prev_hash == before[4].hash  # the anchor
    chain = await store.verify_chain(run_id)
    assert chain.ok
    assert (chain.events, chain.last_seq, chain.floor) == (1, 6, 5)
    # Nothing more to prune: the terminal event always stays.
    assert (await store.prune_events(default_window=0)).events == 0


async def test_a_cursor_below_the_floor_is_stale(store: Store) -> None:
    run_id = await _finished_run(store, steps=3)
    await store.prune_events(default_window=0)
    for cursor in (0, 1, 2):
        with pytest.raises(StaleCursor) as stale:
            await store.read_events(run_id, after=cursor)
        assert (stale.value.run_id, stale.value.cursor, stale.value.floor) == (run_id, cursor, 3)
        assert "retention floor 3" in str(stale.value)
    assert [e.seq for e in await store.read_events(run_id, after=3)] == [4]
    assert await store.read_events(run_id, after=4) == []


async def test_an_unknown_run_is_still_not_found(store: Store, dsn: str) -> None:
    run_id = await _finished_run(store, steps=1)
    await query(dsn, "DELETE FROM runs WHERE run_id = %s", (run_id,))
    for cursor in (0, 5):
        with pytest.raises(RunNotFound):
            await store.read_events(run_id, after=cursor)


@pytest.mark.parametrize(
    ("edit", "bad_seq"),
    [
        ("UPDATE run_events SET payload = '{\"forged\": true}' WHERE run_id = %s AND seq = 6", 6),
        ("UPDATE runs SET retention_anchor = sha256('x') WHERE run_id = %s", 6),
        ("UPDATE run_events SET prev_hash = sha256('x') WHERE run_id = %s AND seq = 6", 6),
    ],
)
async def test_tampering_after_the_anchor_is_still_detected(
    store: Store, dsn: str, edit: str, bad_seq: int
) -> None:
    run_id = await _finished_run(store, steps=5)
    await store.prune_events(default_window=0)
    await query(dsn, edit, (run_id,))
    report = await store.verify_chain(run_id)
    assert not report.ok
    assert report.first_bad_seq == bad_seq


async def test_a_partly_pruned_run_verifies_and_the_next_sweep_goes_on(store: Store) -> None:
    run_id = await _finished_run(store, steps=9)
    first = await store.prune_events(default_window=0, batch_size=4)
    assert (first.events, first.exhausted) == (4, True)
    assert (await store.get_run(run_id)).retention_floor == 4
    assert (await store.verify_chain(run_id)).ok
    second = await store.prune_events(default_window=0, batch_size=4)
    third = await store.prune_events(default_window=0, batch_size=4)
    assert (second.events, third.events) == (4, 1)
    assert (await store.get_run(run_id)).retention_floor == 9
    report = await store.verify_chain(run_id)
    assert report.ok
    assert (report.events, report.floor) == (1, 9)


async def test_nothing_is_pruned_for_running_runs_or_inside_the_window(
    store: Store, dsn: str
) -> None:
    running, lease = await leased_run(store)
    await store.append_events(running.run_id, lease.epoch, [NewEvent("step")] * 3)
    chat = await _finished_run(store, steps=3, run_type="chat")
    kept = await _finished_run(store, steps=3, run_type="long")
    report = await store.prune_events(default_window=3600, windows={"chat": 0})
    assert (report.runs, report.events) == (1, 3)
    assert (await store.get_run(chat)).retention_floor == 3
    assert (await store.get_run(kept)).retention_floor == 0
    assert (await store.get_run(running.run_id)).retention_floor == 0
    assert await query(
        dsn, "SELECT count(*) FROM run_events WHERE run_id = ANY(%s)", ([running.run_id, kept],)
    ) == [(7,)]
    # Inside its window by default, a run type without a window of its own is kept.
    assert (await store.prune_events(default_window=3600)).events == 0


async def test_two_stores_pruning_at_once_never_work_on_the_same_run(
    dsn: str, config: StoreConfig
) -> None:
    async with Store(dsn, config) as first, Store(dsn, config) as second:
        runs = [await _finished_run(first, steps=6) for _ in range(12)]
        pruned: list[int] = []

        async def sweep(store: Store) -> None:
            while True:
                report = await store.prune_events(default_window=0, batch_size=5)
                pruned.append(report.events)
                if report.events == 0:
                    return

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sweep, first)
                tg.start_soon(sweep, second)
        # Every event before a terminal one deleted exactly once, counted once.
        assert sum(pruned) == 12 * 6
        for run_id in runs:
            assert (await first.get_run(run_id)).retention_floor == 6
            assert (await first.verify_chain(run_id)).ok
