"""The append paths of the group-commit writer: the fence in the run row, the head
cache, the contested settle under row locks, the writer's own connection (DESIGN §6-§7).

Concurrency is driven deterministically: a second connection holds the run row's lock
inside an open transaction, and the test waits until the writer's backend is blocked
by it (``pg_blocking_pids``) before letting go.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import psycopg
import pytest

from runtime.store import (
    DatabaseUnavailable,
    NewEvent,
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    Store,
    StoreTimeout,
    TransactionConflict,
    _db,
)
from runtime.store._writer import WRITER_APPLICATION_NAME
from runtime.store.leases import acquire_lease
from tests.runtime._helpers import expire_lease, leased_run, query, wait_blocked_by
from tests.runtime._proxy import FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from psycopg.rows import TupleRow

    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio


async def _log(dsn: str, run_id: uuid.UUID) -> list[tuple[int, str, int]]:
    rows = await query(
        dsn, "SELECT seq, type, epoch FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,)
    )
    return [(int(seq), str(type_), int(epoch)) for seq, type_, epoch in rows]


@contextlib.asynccontextmanager
async def _row_lock(
    dsn: str, run_id: uuid.UUID
) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
    """A connection holding ``run_id``'s row lock in an open transaction."""
    holder = await psycopg.AsyncConnection.connect(dsn)
    await holder.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
    try:
        yield holder
    finally:
        await holder.rollback()
        await holder.close()


async def test_a_head_moved_by_request_cancel_is_picked_up(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    assert await store.append_event(run.run_id, lease.epoch, "a") == 1
    request = await store.request_cancel(run.run_id, reason="stop")
    assert request.seq == 2
    # After a cancel request only cancellation bookkeeping is accepted (the cancel fence).
    assert await store.append_event(run.run_id, lease.epoch, "task.canceled") == 3
    assert await _log(dsn, run.run_id) == [
        (1, "a", lease.epoch),
        (2, "run.cancel_requested", 0),
        (3, "task.canceled", lease.epoch),
    ]
    assert (await store.verify_chain(run.run_id)).ok


async def test_a_head_moved_by_another_store_is_settled_again_under_lock(
    store: Store, dsn: str, config: StoreConfig
) -> None:
    # The other store's request_cancel moves the head behind this store's cache: the
    # optimistic statement moves nothing, and the append is settled under the row lock.
    run, lease = await leased_run(store)
    assert await store.append_events(run.run_id, lease.epoch, [NewEvent("a"), NewEvent("b")]) == [
        1,
        2,
    ]
    async with Store(dsn, config) as other:
        assert (await other.request_cancel(run.run_id)).seq == 3
    before = store.statistics().writer
    assert await store.append_event(run.run_id, lease.epoch, "task.canceled") == 4
    assert await store.append_events(run.run_id, lease.epoch, [NewEvent("run.canceled")]) == [5]
    after = store.statistics().writer
    assert after.contested == before.contested + 1  # once; then the cache is right again
    assert [seq for seq, _, _ in await _log(dsn, run.run_id)] == [1, 2, 3, 4, 5]
    assert (await store.verify_chain(run.run_id)).ok


@pytest.mark.parametrize("takeover", ["committed", "rolled_back"])
async def test_a_takeover_while_an_append_waits_for_the_row(
    store: Store, dsn: str, takeover: str
) -> None:
    run, old = await leased_run(store, node="node-old")
    assert await store.append_event(run.run_id, old.epoch, "before") == 1  # head cached
    await expire_lease(dsn, run.run_id)
    outcome: list[int | StaleEpoch] = []

    async def append_as_old_owner() -> None:
        try:
            outcome.append(await store.append_event(run.run_id, old.epoch, "late"))
        except StaleEpoch as exc:
            outcome.append(exc)

    async with await psycopg.AsyncConnection.connect(dsn) as holder:
        # Acquire in an open transaction: the run row stays locked and the new epoch
        # uncommitted while the old owner's append waits for the row.
        new = await acquire_lease(
            holder, run.run_id, owner_node="node-new", ttl=30, rng=random.Random(1)
        )
        assert new.epoch == old.epoch + 1
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(append_as_old_owner)
                await wait_blocked_by(dsn, holder.info.backend_pid)
                if takeover == "committed":
                    await holder.commit()
                else:
                    await holder.rollback()

    contested = store.statistics().writer.contested
    if takeover == "committed":
        (error,) = outcome
        assert isinstance(error, StaleEpoch)
        assert (error.epoch, error.current_epoch) == (old.epoch, old.epoch + 1)
        assert await _log(dsn, run.run_id) == [(1, "before", old.epoch)]
        # The waiting UPDATE re-checked the fence on the new row version and moved
        # nothing; the settle under the row lock then named the new epoch.
        assert contested == 1
    else:
        assert contested == 0
        assert outcome == [2]
        assert await _log(dsn, run.run_id) == [(1, "before", old.epoch), (2, "late", old.epoch)]
    assert (await store.verify_chain(run.run_id)).ok


async def test_one_batch_mixing_good_stale_terminal_and_unknown_runs(
    store: Store, dsn: str
) -> None:
    blocker, blocker_lease = await leased_run(store)
    good, good_lease = await leased_run(store)
    multi, multi_lease = await leased_run(store)
    stale, _ = await leased_run(store)
    await expire_lease(dsn, stale.run_id)
    stale_lease = await store.acquire_lease(stale.run_id, owner_node="node-b")
    ended, ended_lease = await leased_run(store)
    await store.append_event(ended.run_id, ended_lease.epoch, "run.succeeded")
    missing = uuid.uuid4()
    outcomes: dict[str, object] = {}

    async def append(name: str, run_id: uuid.UUID, epoch: int, count: int = 1) -> None:
        try:
            events = [NewEvent(name, {"k": k}) for k in range(count)]
            outcomes[name] = await store.append_events(run_id, epoch, events)
        except (StaleEpoch, RunTerminal, RunNotFound) as exc:
            outcomes[name] = exc

    async with _row_lock(dsn, blocker.run_id) as holder:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                # The writer waits on the blocker's row; everything below queues meanwhile
                # and goes out as the next batch.
                tg.start_soon(append, "blocker", blocker.run_id, blocker_lease.epoch)
                await wait_blocked_by(dsn, holder.info.backend_pid)
                before = store.statistics().writer
                tg.start_soon(append, "good-1", good.run_id, good_lease.epoch)
                tg.start_soon(append, "stale", stale.run_id, stale_lease.epoch - 1)
                tg.start_soon(append, "good-2", good.run_id, good_lease.epoch)
                tg.start_soon(append, "ended", ended.run_id, ended_lease.epoch)
                tg.start_soon(append, "missing", missing, 1)
                tg.start_soon(append, "multi", multi.run_id, multi_lease.epoch, 3)
                await anyio.wait_all_tasks_blocked()
                await holder.rollback()

    after = store.statistics().writer
    assert outcomes["blocker"] == [1]
    assert outcomes["good-1"] == [1]
    assert outcomes["good-2"] == [2]
    assert outcomes["multi"] == [1, 2, 3]
    stale_error = outcomes["stale"]
    assert isinstance(stale_error, StaleEpoch)
    assert stale_error.current_epoch == stale_lease.epoch
    ended_error = outcomes["ended"]
    assert isinstance(ended_error, RunTerminal)
    assert ended_error.status == "succeeded"
    assert isinstance(outcomes["missing"], RunNotFound)
    # The blocker's transaction and one more for the whole mixed batch.
    assert after.transactions == before.transactions + 2
    assert after.refused == before.refused + 3
    assert [seq for seq, _, _ in await _log(dsn, good.run_id)] == [1, 2]
    assert await _log(dsn, stale.run_id) == []
    assert [seq for seq, _, _ in await _log(dsn, ended.run_id)] == [1]
    for run in (good, multi, ended, blocker):
        assert (await store.verify_chain(run.run_id)).ok


async def test_the_head_cache_is_bounded_and_refills(dsn: str, config: StoreConfig) -> None:
    small = config.model_copy(update={"append_head_cache_size": 2})
    async with Store(dsn, small) as store:
        runs = [await leased_run(store) for _ in range(5)]
        for run, lease in runs:
            assert await store.append_event(run.run_id, lease.epoch, "first") == 1
        stats = store.statistics().writer
        assert (stats.head_cache_size, stats.head_cache_capacity) == (2, 2)
        reads = stats.head_reads
        # The first runs were evicted: their heads are read again, and the seqs go on.
        for run, lease in runs:
            assert await store.append_event(run.run_id, lease.epoch, "second") == 2
        stats = store.statistics().writer
        assert stats.head_cache_size == 2
        assert stats.head_reads == reads + 5
        assert stats.contested == 0
        for run, _ in runs:
            assert (await store.verify_chain(run.run_id)).ok


async def test_a_cancelled_caller_s_append_still_lands_once(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    async with _row_lock(dsn, run.run_id) as holder:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.append_event, run.run_id, lease.epoch, "cancelled")
                await wait_blocked_by(dsn, holder.info.backend_pid)
                tg.cancel_scope.cancel()
            await holder.rollback()
    # Appends commit in queue order: once this one has, the cancelled one had.
    assert await store.append_event(run.run_id, lease.epoch, "next") == 2
    assert [type_ for _, type_, _ in await _log(dsn, run.run_id)] == ["cancelled", "next"]


async def test_an_append_over_the_append_timeout_fails_and_the_writer_recovers(
    dsn: str, config: StoreConfig
) -> None:
    # A partition under the writer's statement: the append fails at its deadline
    # (outcome unknown), without waiting for psycopg's own cancellation, and the writer
    # goes on with a fresh connection once the network is back.
    quick = config.model_copy(update={"append_timeout": 1.0, "append_lock_timeout": 0.5})
    async with FaultProxy(dsn) as proxy, Store(proxy.dsn, quick) as store:
        run, lease = await leased_run(store)
        assert await store.append_event(run.run_id, lease.epoch, "a") == 1
        proxy.black_hole()
        with anyio.fail_after(quick.append_timeout + 2), pytest.raises(StoreTimeout) as caught:
            await store.append_event(run.run_id, lease.epoch, "lost in the partition")
        assert caught.value.operation == "append"
        assert caught.value.host == "127.0.0.1"
        await proxy.cut()
        proxy.heal()
        with anyio.fail_after(30):
            assert await store.append_event(run.run_id, lease.epoch, "b") == 2
        stats = store.statistics().writer
        assert stats.failed_batches == 1
        assert stats.connects == 2  # the timed-out connection was replaced
        assert [type_ for _, type_, _ in await _log(dsn, run.run_id)] == ["a", "b"]


async def test_a_run_locked_by_another_session_fails_alone(dsn: str, config: StoreConfig) -> None:
    # One run's row stays locked past the lock timeout: its append fails on its own
    # (TransactionConflict, 55P03), while the unrelated runs of the same batch commit.
    quick = config.model_copy(update={"append_timeout": 5.0, "append_lock_timeout": 1.0})
    async with Store(dsn, quick) as store:
        gate_run, gate_lease = await leased_run(store)
        blocked, blocked_lease = await leased_run(store)
        others = [await leased_run(store) for _ in range(3)]
        for run, lease in ((blocked, blocked_lease), *others):
            assert await store.append_event(run.run_id, lease.epoch, "warm") == 1
        outcomes: dict[uuid.UUID, object] = {}

        async def append(run_id: uuid.UUID, epoch: int) -> None:
            try:
                outcomes[run_id] = await store.append_event(run_id, epoch, "contended")
            except TransactionConflict as exc:
                outcomes[run_id] = exc

        async with (
            _row_lock(dsn, gate_run.run_id) as gate,
            _row_lock(dsn, blocked.run_id) as holder,
        ):
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    # The gate keeps the writer busy until all four are queued: one batch.
                    tg.start_soon(append, gate_run.run_id, gate_lease.epoch)
                    await wait_blocked_by(dsn, gate.info.backend_pid)
                    tg.start_soon(append, blocked.run_id, blocked_lease.epoch)
                    for run, lease in others:
                        tg.start_soon(append, run.run_id, lease.epoch)
                    await anyio.wait_all_tasks_blocked()
                    await gate.rollback()
            await holder.rollback()
        error = outcomes[blocked.run_id]
        assert isinstance(error, TransactionConflict), outcomes
        assert (error.run_ids, error.sqlstate) == ((blocked.run_id,), "55P03")
        assert "stayed locked by another session" in str(error)
        assert [outcomes[run.run_id] for run, _ in others] == [2, 2, 2]
        assert store.statistics().writer.locked_runs == 1
        assert [seq for seq, _, _ in await _log(dsn, blocked.run_id)] == [1]
        # The lock is gone: the run takes appends again.
        assert await store.append_event(blocked.run_id, blocked_lease.epoch, "after") == 2


async def test_the_writer_reconnects_after_losing_its_connection(store: Store, dsn: str) -> None:
    run, lease = await leased_run(store)
    assert await store.append_event(run.run_id, lease.epoch, "a") == 1
    killed = await query(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        (WRITER_APPLICATION_NAME,),
    )
    assert killed == [(True,)]
    landed = ["a"]
    try:
        await store.append_event(run.run_id, lease.epoch, "b")
        landed.append("b")  # the loss was noticed before sending
    except DatabaseUnavailable:
        pass  # noticed while sending: the append failed, and nothing was written
    assert await store.append_event(run.run_id, lease.epoch, "c") == len(landed) + 1
    assert store.statistics().writer.connects == 2
    assert [type_ for _, type_, _ in await _log(dsn, run.run_id)] == [*landed, "c"]
    assert (await store.verify_chain(run.run_id)).ok


class _Deadlock(NamedTuple):
    """Two runs, X < Y in key order, each leased and holding one event."""

    low: uuid.UUID
    high: uuid.UUID
    epochs: dict[uuid.UUID, int]


async def _two_warm_runs(store: Store) -> _Deadlock:
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    epochs = {}
    for run_id in (low, high):  # created in key order: any plan locks X before Y
        run, _ = await store.create_run(owner="a", session_id="s", run_type="t", run_id=run_id)
        epochs[run_id] = (await store.acquire_lease(run.run_id, owner_node="node-a")).epoch
        assert await store.append_event(run_id, epochs[run_id], "warm") == 1
    return _Deadlock(low, high, epochs)


async def _deadlock_a_batch(
    store: Store,
    dsn: str,
    runs: _Deadlock,
    append: Callable[[uuid.UUID], Coroutine[Any, Any, None]],
) -> bool:
    """Make the writer's batch of ``append(X)`` and ``append(Y)`` deadlock; return
    whether the holder, not the writer, was the victim.

    The batch locks X's row, then waits for Y's, which a holder has locked; the holder
    then asks for X. A gate on a third run keeps the writer busy until both appends are
    queued, so they form one batch.
    """
    blocker, blocker_lease = await leased_run(store)
    async with (
        _row_lock(dsn, blocker.run_id) as gate,
        _row_lock(dsn, runs.high) as holder,
    ):
        # The holder checks for deadlocks later than the writer, so the writer, which
        # waits first, is the one that finds the cycle. PostgreSQL checks once per wait:
        # if a stall delays the holder's request past the writer's check, the holder
        # finds the cycle instead, well inside the time limit.
        await holder.execute("SET deadlock_timeout = '5s'")
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.append_event, blocker.run_id, blocker_lease.epoch, "gate")
                await wait_blocked_by(dsn, gate.info.backend_pid)
                tg.start_soon(append, runs.low)
                tg.start_soon(append, runs.high)
                await anyio.wait_all_tasks_blocked()
                await gate.rollback()  # the writer takes X and Y as one batch
                await wait_blocked_by(dsn, holder.info.backend_pid)
                try:
                    await holder.execute(
                        "SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (runs.low,)
                    )
                except psycopg.errors.DeadlockDetected:
                    return True  # only if the machine stalled past the writer's check
                finally:
                    await holder.rollback()
    return False


async def test_a_batch_chosen_as_deadlock_victim_is_retried(store: Store, dsn: str) -> None:
    runs = await _two_warm_runs(store)
    outcomes: dict[uuid.UUID, object] = {}

    async def append(run_id: uuid.UUID) -> None:
        outcomes[run_id] = await store.append_event(run_id, runs.epochs[run_id], "contended")

    holder_was_victim = await _deadlock_a_batch(store, dsn, runs, append)

    assert outcomes == {runs.low: 2, runs.high: 2}
    retries = store.statistics().writer.retries
    if holder_was_victim:
        assert retries == 0
    else:
        # Usually one. The writer's retry (after a short random pause) can still lock X
        # again before the woken holder does, which closes the same cycle once more:
        # then the writer is the victim again and retries again, within its budget.
        assert 1 <= retries < _db.TX_ATTEMPTS
    for run_id in (runs.low, runs.high):
        assert [seq for seq, _, _ in await _log(dsn, run_id)] == [1, 2]
        assert (await store.verify_chain(run_id)).ok


async def test_a_batch_out_of_deadlock_retries_fails_with_its_run_ids(
    store: Store, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deadlock of the test above, with a retry budget of one try: the callers get a
    # TransactionConflict naming their runs (never psycopg's DeadlockDetected), nothing
    # is written, and the writer carries on.
    monkeypatch.setattr(_db, "TX_ATTEMPTS", 1)
    runs = await _two_warm_runs(store)
    outcomes: dict[uuid.UUID, object] = {}

    async def append(run_id: uuid.UUID) -> None:
        try:
            outcomes[run_id] = await store.append_event(run_id, runs.epochs[run_id], "contended")
        except TransactionConflict as exc:
            outcomes[run_id] = exc

    for _ in range(3):  # a stall may make the holder the victim instead: then again
        outcomes.clear()
        if not await _deadlock_a_batch(store, dsn, runs, append):
            break

    assert set(outcomes) == {runs.low, runs.high}
    for run_id in (runs.low, runs.high):
        error = outcomes[run_id]
        assert isinstance(error, TransactionConflict), error
        assert error.run_ids == (runs.low, runs.high)
        assert (error.sqlstate, error.attempts) == ("40P01", 1)
        assert str(run_id) in str(error)
        assert [seq for seq, _, _ in await _log(dsn, run_id)] == [1]
    # The writer dropped the failed runs' heads and goes on.
    assert await store.append_event(runs.low, runs.epochs[runs.low], "after") == 2
    assert (await store.verify_chain(runs.low)).ok


async def test_non_ascii_types_and_payloads_chain_on_both_statements(store: Store) -> None:
    run, lease = await leased_run(store)
    # One event alone (the scalar statement), then a batch (the array statement).
    assert await store.append_event(run.run_id, lease.epoch, "étape.✓", {"clé": "värde"}) == 1
    assert await store.append_events(
        run.run_id, lease.epoch, [NewEvent("étape.✓", ["ü", 1.5]), NewEvent('quote".\\', None)]
    ) == [2, 3]
    events = await store.read_events(run.run_id)
    assert [e.type for e in events] == ["étape.✓", "étape.✓", 'quote".\\']
    assert (await store.verify_chain(run.run_id)).ok
