"""The lifecycle feed: every run's moments, gap-free for a reader resuming by cursor."""

from __future__ import annotations

import random

import anyio
import psycopg
import pytest

from runtime.store import (
    EXECUTOR_LOST_EVENT,
    LIFECYCLE_CHANNEL,
    LIFECYCLE_WATCH_ID,
    InvalidCursor,
    LifecycleEntry,
    Listener,
    NewEvent,
    Store,
    StoreConfig,
)

pytestmark = pytest.mark.anyio

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _drain(store: Store, cursor: str | None) -> tuple[list[LifecycleEntry], str]:
    """Every entry after ``cursor`` committed so far, waiting out the ones held back
    behind transactions still running anywhere on the server (bounded)."""
    entries: list[LifecycleEntry] = []
    with anyio.fail_after(60):
        while True:
            page = await store.read_lifecycle(cursor, limit=7)
            entries += page.entries
            cursor = page.cursor
            if not page.entries and not page.held_back:
                return entries, cursor
            if page.held_back and not page.entries:
                # No notification comes when another transaction ends: poll.
                await anyio.sleep(0.01)


async def test_a_run_s_life_is_in_the_feed_in_order(store: Store) -> None:
    head = await store.lifecycle_head()
    run, _ = await store.create_run(
        owner="alice", session_id="s", run_type="chat", traceparent=TRACE
    )
    lease = await store.acquire_lease(run.run_id, owner_node="node-a")
    await store.append_event(run.run_id, lease.epoch, "step")
    await store.append_event(run.run_id, lease.epoch, EXECUTOR_LOST_EVENT, {})
    await store.append_events(run.run_id, lease.epoch, [NewEvent("run.succeeded", {})])
    entries, _ = await _drain(store, head)
    assert [(e.type, e.status, e.seq) for e in entries] == [
        ("run.created", "pending", 0),
        ("run.started", "running", 0),
        ("run.recovered", "running", 2),
        ("run.succeeded", "succeeded", 3),
    ]
    assert {(e.run_id, e.owner, e.run_type, e.session_id) for e in entries} == {
        (run.run_id, "alice", "chat", "s")
    }
    assert entries[0].traceparent == TRACE
    # Resuming from any entry's cursor gives exactly what followed it.
    for index, entry in enumerate(entries):
        assert (await _drain(store, entry.cursor))[0] == entries[index + 1 :]
    # The head cursor is past everything written before it.
    assert (await _drain(store, await store.lifecycle_head()))[0] == []


async def test_a_row_committed_late_is_not_skipped(store: Store, dsn: str) -> None:
    """A transaction that started first and commits last holds the feed back; it never
    makes a reader skip its row (as a cursor over ids alone would)."""
    head = await store.lifecycle_head()
    async with await psycopg.AsyncConnection.connect(dsn) as slow:
        await slow.execute(
            "INSERT INTO runs (run_id, owner, session_id, run_type)"
            " VALUES (gen_random_uuid(), 'slow', 's', 'chat')"
        )
        fast, _ = await store.create_run(owner="fast", session_id="s", run_type="chat")
        page = await store.read_lifecycle(head)
        assert page.entries == []
        assert page.held_back  # fast's row is committed, and waits behind slow's
        await slow.commit()
    entries, _ = await _drain(store, head)
    assert [e.owner for e in entries] == ["slow", "fast"]
    assert entries[1].run_id == fast.run_id


async def test_concurrent_writers_never_make_a_resuming_reader_skip(
    dsn: str, config: StoreConfig
) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    writers, per_writer = 6, 12
    holds = [[rng.random() < 0.5 for _ in range(per_writer)] for _ in range(writers)]
    async with Store(dsn, config) as store:
        start = await store.lifecycle_head()
        seen: list[LifecycleEntry] = []
        done = anyio.Event()

        async def writer(index: int) -> None:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                for n, hold in enumerate(holds[index]):
                    await conn.execute(
                        "INSERT INTO runs (run_id, owner, session_id, run_type)"
                        " VALUES (gen_random_uuid(), %s, %s, 'chat')",
                        (f"w{index}", str(n)),
                    )
                    if hold:
                        # Commit only after another writer's run went in meanwhile.
                        await store.create_run(
                            owner=f"w{index}", session_id=f"between-{n}", run_type="chat"
                        )
                    await conn.commit()

        async def reader() -> None:
            cursor = start
            while not done.is_set():
                page = await store.read_lifecycle(cursor, limit=5)
                seen.extend(page.entries)
                cursor = page.cursor
                await anyio.lowlevel.checkpoint()
            rest, _ = await _drain(store, cursor)
            seen.extend(rest)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                async with anyio.create_task_group() as inner:
                    for index in range(writers):
                        inner.start_soon(writer, index)
                done.set()
        everything, _ = await _drain(store, start)
    expected = writers * per_writer + sum(map(sum, holds))
    assert len(everything) == expected
    assert [e.cursor for e in seen] == [e.cursor for e in everything]


async def test_the_feed_wakes_a_watch_on_its_channel(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    async with Listener(dsn, config) as listener:
        with listener.watch(LIFECYCLE_WATCH_ID, channel=LIFECYCLE_CHANNEL) as watch:
            await store.create_run(owner="alice", session_id="s", run_type="chat")
            with anyio.fail_after(10):
                assert await watch.wait()


@pytest.mark.parametrize("bad", ["", "12", "a-b", "1-2-3", "99999999999999999999999-1"])
async def test_a_malformed_feed_cursor_is_refused(store: Store, bad: str) -> None:
    with pytest.raises(InvalidCursor):
        await store.read_lifecycle(bad)
