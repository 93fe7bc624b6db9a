"""What the store does for run execution (issue 9): writers, the cancel fence, reclaim.

* every event records its writer (node id with boot UUID, attempt), covered by its hash;
  events written before writers were recorded (schema version 1) still verify;
* once ``run.cancel_requested`` is committed, only cancellation bookkeeping is appended:
  even an append already waiting for the run's row is refused with ``EgressFenced``;
* a node reclaims the unexpired lease its own crashed executor left, with a new epoch.
"""

from __future__ import annotations

import uuid

import anyio
import pytest

from runtime.store import (
    CANCEL_BOOKKEEPING,
    SCHEMA_VERSION,
    EgressFenced,
    LeaseHeld,
    MemoryScope,
    NewEvent,
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    Store,
    Writer,
)
from runtime.store.chain import GENESIS_HASH, canonical_parts, link
from tests.runtime._helpers import (
    cli_env,
    expire_lease,
    leased_run,
    query,
    run_cli_async,
    wait_blocked_by,
)
from tests.runtime.store.test_append_paths import _log, _row_lock

pytestmark = pytest.mark.anyio

NODE = "node-a:6f1c2d9e-0000-4000-8000-000000000001"


async def test_every_event_records_its_writer(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store, node=NODE)
    writer = Writer(NODE, 2)
    await store.append_event(run.run_id, lease.epoch, "step", {"n": 1}, writer=writer)
    await store.append_events(
        run.run_id, lease.epoch, [NewEvent("a"), NewEvent("b")], writer=Writer(NODE, 3)
    )
    await store.append_event(run.run_id, lease.epoch, "anonymous")
    events = await store.read_events(run.run_id)
    assert [event.writer for event in events] == [
        writer,
        Writer(NODE, 3),
        Writer(NODE, 3),
        None,
    ]
    assert {event.schema_version for event in events} == {SCHEMA_VERSION}
    assert (await store.verify_chain(run.run_id)).ok
    # Checkable from the database alone.
    rows = await query(
        dsn,
        "SELECT seq, writer_node, writer_attempt FROM run_events WHERE run_id = %s ORDER BY seq",
        (run.run_id,),
    )
    assert rows == [(1, NODE, 2), (2, NODE, 3), (3, NODE, 3), (4, None, None)]


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE run_events SET writer_node = 'someone-else' WHERE seq = 2",
        "UPDATE run_events SET writer_attempt = 9 WHERE seq = 2",
        "UPDATE run_events SET writer_node = NULL, writer_attempt = NULL WHERE seq = 2",
    ],
)
async def test_the_writer_is_covered_by_the_hash_chain(store: Store, dsn: str, edit: str) -> None:
    run, lease = await leased_run(store, node=NODE)
    for n in range(3):
        await store.append_event(run.run_id, lease.epoch, "step", {"n": n}, writer=Writer(NODE, 1))
    await query(dsn, f"{edit} AND run_id = %s", (run.run_id,))
    report = await store.verify_chain(run.run_id)
    assert report.first_bad_seq == 2


async def _append_v1(dsn: str, run_id: uuid.UUID, epoch: int, types: list[str]) -> None:
    """Write events the way builds before writers were recorded did (schema version 1)."""
    prev, seq = GENESIS_HASH, 0
    for type_ in types:
        seq += 1
        head, tail = canonical_parts(
            run_id=run_id, type_json=f'"{type_}"'.encode(), epoch=epoch, schema_version=1,
            payload=b"null",
        )  # fmt: skip
        digest = link(prev, head, seq, tail)
        await query(
            dsn,
            "INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version,"
            " prev_hash, hash) VALUES (%s, %s, %s, 'null', %s, 1, %s, %s)",
            (run_id, seq, type_, epoch, prev, digest),
        )
        prev = digest
    await query(
        dsn, "UPDATE runs SET last_seq = %s, last_hash = %s WHERE run_id = %s", (seq, prev, run_id)
    )


async def test_old_and_new_events_verify_in_one_chain(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store, node=NODE)
    await _append_v1(dsn, run.run_id, lease.epoch, ["old.one", "old.two"])
    await store.append_event(run.run_id, lease.epoch, "new.one", writer=Writer(NODE, 1))
    versions = [event.schema_version for event in await store.read_events(run.run_id)]
    assert versions == [1, 1, SCHEMA_VERSION]
    assert (await store.verify_chain(run.run_id)).ok
    verified = await run_cli_async("verify", str(run.run_id), env=cli_env(WARDEN_DSN=dsn))
    assert verified.returncode == 0, verified.stderr
    await query(
        dsn, "UPDATE run_events SET type = 'forged' WHERE seq = 1 AND run_id = %s", (run.run_id,)
    )
    assert (await store.verify_chain(run.run_id)).first_bad_seq == 1


async def test_after_a_cancel_request_only_bookkeeping_is_appended(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store, node=NODE)
    await store.append_event(run.run_id, lease.epoch, "token", {"i": 0})
    request = await store.request_cancel(run.run_id, reason="stop")
    for refused in ("token", "run.succeeded", "task.succeeded", "frame.consumed"):
        with pytest.raises(EgressFenced) as caught:
            await store.append_event(run.run_id, lease.epoch, refused)
        assert (caught.value.run_id, caught.value.reason) == (run.run_id, "cancel_requested")
    # An append mixing bookkeeping with anything else is refused whole.
    with pytest.raises(EgressFenced):
        await store.append_events(
            run.run_id, lease.epoch, [NewEvent("task.canceled"), NewEvent("token")]
        )
    seqs = await store.append_events(
        run.run_id,
        lease.epoch,
        [NewEvent("run.executor_lost"), NewEvent("task.canceled"), NewEvent("run.canceled")],
    )
    assert seqs == [3, 4, 5]
    assert {"run.executor_lost", "task.canceled", "run.canceled"} == CANCEL_BOOKKEEPING
    assert [type_ for _, type_, _ in await _log(dsn, run.run_id)] == [
        "token",
        "run.cancel_requested",
        "run.executor_lost",
        "task.canceled",
        "run.canceled",
    ]
    assert request.seq == 2
    assert (await store.get_run(run.run_id)).status == "canceled"
    assert (await store.verify_chain(run.run_id)).ok


async def test_an_append_waiting_for_the_row_when_the_cancel_commits_is_refused(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store, node=NODE)
    assert await store.append_event(run.run_id, lease.epoch, "token") == 1  # head cached
    outcome: list[object] = []

    async def append() -> None:
        try:
            outcome.append(await store.append_event(run.run_id, lease.epoch, "token"))
        except EgressFenced as error:
            outcome.append(error)

    async with _row_lock(dsn, run.run_id) as holder, anyio.create_task_group() as task_group:
        task_group.start_soon(append)
        with anyio.fail_after(10):
            await wait_blocked_by(dsn, holder.info.backend_pid)
        # The cancel commits while the append waits for the row (as request_cancel's
        # transaction would).
        await holder.execute(
            "UPDATE runs SET cancel_requested_at = now() WHERE run_id = %s", (run.run_id,)
        )
        await holder.commit()
    assert len(outcome) == 1
    assert isinstance(outcome[0], EgressFenced)
    assert [seq for seq, _, _ in await _log(dsn, run.run_id)] == [1]


async def test_one_cancelled_run_does_not_hold_back_a_batch(store: Store, dsn: str) -> None:
    cancelled, first = await leased_run(store, node=NODE)
    other, second = await leased_run(store, node=NODE)
    await store.request_cancel(cancelled.run_id)
    results: dict[str, object] = {}

    async def append(name: str, run_id: uuid.UUID, epoch: int) -> None:
        try:
            results[name] = await store.append_event(run_id, epoch, "token")
        except EgressFenced as error:
            results[name] = error

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(append, "cancelled", cancelled.run_id, first.epoch)
        task_group.start_soon(append, "other", other.run_id, second.epoch)
    assert isinstance(results["cancelled"], EgressFenced)
    assert results["other"] == 1


async def test_a_node_reclaims_the_lease_its_crashed_executor_left(store: Store) -> None:
    run, held = await leased_run(store, node=NODE)
    with pytest.raises(LeaseHeld):
        await store.acquire_lease(run.run_id, owner_node=NODE)  # without reclaim: held
    with pytest.raises(LeaseHeld):
        await store.acquire_lease(run.run_id, owner_node="node-b:other", reclaim=True)
    reclaimed = await store.acquire_lease(run.run_id, owner_node=NODE, reclaim=True)
    assert reclaimed.epoch == held.epoch + 1
    with pytest.raises(StaleEpoch):
        await store.append_event(run.run_id, held.epoch, "from the crashed executor")
    assert await store.append_event(run.run_id, reclaimed.epoch, "from the new one") == 1


SCOPE = MemoryScope("session", "s-1")


async def test_a_logged_memory_write_and_its_event_commit_together(store: Store) -> None:
    run, lease = await leased_run(store, node=NODE)
    writer = Writer(NODE, 1)
    seq, payload = await store.put_memory_logged(
        run.run_id, lease.epoch, SCOPE, "k", {"v": 1},
        writer=writer, event_type="memory.written", fields={"key": "k"},
    )  # fmt: skip
    assert (seq, payload) == (1, {"key": "k", "version": 1, "conflict_version": None})
    seq, payload = await store.put_memory_logged(
        run.run_id, lease.epoch, SCOPE, "k", {"v": 2}, expected_version=5,
        writer=writer, event_type="memory.written", fields={},
    )  # fmt: skip
    assert (seq, payload) == (2, {"version": None, "conflict_version": 1})
    seq, payload = await store.get_memory_logged(
        run.run_id, lease.epoch, SCOPE, "k", writer=writer, event_type="memory.read", fields={}
    )
    assert payload == {"found": True, "value": {"v": 1}, "version": 1}
    seq, payload = await store.delete_memory_logged(
        run.run_id, lease.epoch, SCOPE, "k", writer=writer, event_type="memory.deleted", fields={}
    )
    assert (seq, payload) == (4, {"deleted": True})
    events = await store.read_events(run.run_id)
    assert [event.type for event in events] == [
        "memory.written",
        "memory.written",
        "memory.read",
        "memory.deleted",
    ]
    assert {event.writer for event in events} == {writer}
    # The group-commit writer picks up the moved head.
    assert await store.append_event(run.run_id, lease.epoch, "after", writer=writer) == 5
    assert (await store.verify_chain(run.run_id)).ok


@pytest.mark.parametrize("fence", ["stale epoch", "cancel requested", "terminal"])
async def test_a_fenced_executor_changes_no_memory(store: Store, dsn: str, fence: str) -> None:
    run, lease = await leased_run(store, node=NODE)
    epoch = lease.epoch
    expected: type[Exception]
    if fence == "stale epoch":
        await expire_lease(dsn, run.run_id)
        await store.acquire_lease(run.run_id, owner_node="node-b:x")
        expected = StaleEpoch
    elif fence == "cancel requested":
        await store.request_cancel(run.run_id)
        expected = EgressFenced
    else:
        await store.append_event(run.run_id, epoch, "run.succeeded")
        expected = RunTerminal
    before = await store.read_events(run.run_id)
    with pytest.raises(expected):
        await store.put_memory_logged(
            run.run_id, epoch, SCOPE, "k", 1,
            writer=Writer(NODE, 1), event_type="memory.written", fields={},
        )  # fmt: skip
    assert await store.get_memory(SCOPE, "k") is None
    assert await store.read_events(run.run_id) == before


async def test_begin_attempt_closes_lost_ones_and_counts_failed_ones(store: Store) -> None:
    run, lease = await leased_run(store, node=NODE)
    first, failed = await store.begin_attempt(run.run_id, node_id=NODE, epoch=lease.epoch)
    assert (first.attempt, failed) == (1, 0)
    await store.finish_attempt(run.run_id, 1, outcome="failed", error_type="ValueError")
    second, failed = await store.begin_attempt(run.run_id, node_id=NODE, epoch=lease.epoch)
    assert (second.attempt, failed) == (2, 1)
    # Attempt 2's executor died without finishing it: the next one closes it as lost.
    third, failed = await store.begin_attempt(run.run_id, node_id=NODE, epoch=lease.epoch)
    assert (third.attempt, failed) == (3, 1)
    outcomes = [attempt.outcome for attempt in await store.list_attempts(run.run_id)]
    assert outcomes == ["failed", "lost", None]
    with pytest.raises(RunNotFound):
        await store.begin_attempt(uuid.uuid4(), node_id=NODE, epoch=1)


async def test_releasing_a_lease_can_finish_the_attempt_in_the_same_call(store: Store) -> None:
    run, lease = await leased_run(store, node=NODE)
    attempt, _ = await store.begin_attempt(run.run_id, node_id=NODE, epoch=lease.epoch)
    released = await store.release_lease(
        run.run_id, owner_node=NODE, epoch=lease.epoch, attempt=attempt.attempt, outcome="canceled"
    )
    assert released
    (finished,) = await store.list_attempts(run.run_id)
    assert (finished.outcome, finished.finished_at is not None) == ("canceled", True)
    # Released already: nothing more happens, and a finished attempt keeps its outcome.
    assert not await store.release_lease(
        run.run_id, owner_node=NODE, epoch=lease.epoch, attempt=attempt.attempt, outcome="lost"
    )
    assert [a.outcome for a in await store.list_attempts(run.run_id)] == ["canceled"]
