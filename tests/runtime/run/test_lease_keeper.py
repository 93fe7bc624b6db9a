"""The node's lease keeper: many leases per statement, each fenced as strictly as alone.

The keeper is driven here with real leases on the real store and real actors as the
holders (recording what they are told), then through run actors: a run whose renewals
fail fences itself before its lease can expire, and a stolen lease in a shared batch is
noticed while the other leases go on.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pytest

from actors import Actor, spawn
from runtime.run import EgressFence, FenceReason, LeaseKeeper, LeaseLost, RunSettings
from runtime.run.lease_keeper import _EARLIEST, _QUANTUM, _SPREAD
from runtime.run.messages import FramesAvailable
from tests.runtime._helpers import expire_lease, query
from tests.runtime.run.conftest import Node, assert_gap_free, heartbeat_settings, terminal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors import ActorRef
    from runtime.run import HeldLease, RunContext, RunMessage
    from runtime.store import JSON, Lease, Store

pytestmark = pytest.mark.anyio

# Long enough for "within one heartbeat" and "half a heartbeat before the database's
# expiry" to be measured on a busy machine.
HEARTBEAT = 0.8
SETTINGS = RunSettings(lease_ttl=4 * HEARTBEAT, heartbeat_interval=HEARTBEAT)


class Recorder(Actor[Any]):
    """Stands in for a run actor: records what it is told."""

    def __init__(self) -> None:
        self.messages: list[RunMessage] = []
        self.lost = anyio.Event()

    async def handle(self, message: Any) -> None:
        self.messages.append(message)
        if isinstance(message, LeaseLost):
            self.lost.set()


@pytest.fixture
async def keeper(store: Store) -> AsyncIterator[LeaseKeeper]:
    async with LeaseKeeper(store, SETTINGS, owner_node="keeper-node:boot", seed=7) as opened:
        yield opened


async def hold_leases(
    store: Store, keeper: LeaseKeeper, task_group: anyio.abc.TaskGroup, count: int
) -> list[tuple[Lease, HeldLease, Recorder]]:
    """``count`` runs leased by the keeper's node, all handed to the keeper at once."""
    leased = []
    for _ in range(count):
        run, _ = await store.create_run(owner="a", session_id="s", run_type="t")
        sent = anyio.current_time()
        lease = await store.acquire_lease(
            run.run_id, owner_node="keeper-node:boot", ttl=SETTINGS.lease_ttl
        )
        recorder = Recorder()
        ref: ActorRef[Any] = await spawn(task_group, recorder)
        leased.append((lease, ref, recorder, sent + SETTINGS.renewal_window))
    held = []
    for lease, ref, recorder, valid_until in leased:  # no await in between: one instant
        fence = EgressFence(lease.run_id)
        handle = keeper.hold(
            lease, fence=fence, actor=ref, progress=lambda: 0, frames=lambda: 0,
            valid_until=valid_until,
        )  # fmt: skip
        held.append((lease, handle, recorder))
    return held


def test_renewals_are_jittered_within_one_heartbeat() -> None:
    # Renewed between 3/4 and 15/16 of a heartbeat after the last, plus at most one
    # quantum of batching: never more than one heartbeat apart.
    assert _EARLIEST + _SPREAD + _QUANTUM == 1.0
    assert _SPREAD >= 3 * _QUANTUM  # runs started together drift over several statements


async def test_leases_held_together_are_renewed_many_per_statement(
    store: Store, keeper: LeaseKeeper, dsn: str
) -> None:
    count = 30
    async with anyio.create_task_group() as task_group:
        held = await hold_leases(store, keeper, task_group, count)
        with anyio.fail_after(10 * HEARTBEAT):
            while keeper.statistics().renewed < count:
                await keeper.wait_batches(keeper.statistics().batches + 1)
        stats = keeper.statistics()
        # Due within 3/16 of a heartbeat of each other, one statement per 1/16: at most
        # 4 statements for the 30 first renewals, so some renewed several leases.
        assert stats.largest_batch >= 8
        assert stats.lost == stats.overdue == stats.failed_batches == 0
        assert stats.held == count
        rows = await query(
            dsn,
            "SELECT count(*) FROM run_leases WHERE run_id = ANY(%s) AND renewed_at > acquired_at",
            ([lease.run_id for lease, _, _ in held],),
        )
        assert rows == [(count,)]
        for _, handle, recorder in held:
            assert handle.fence.is_open
            assert recorder.messages == []
        task_group.cancel_scope.cancel()


async def test_a_stolen_lease_is_fenced_and_its_batch_goes_on(
    store: Store, keeper: LeaseKeeper, dsn: str
) -> None:
    async with anyio.create_task_group() as task_group:
        held = await hold_leases(store, keeper, task_group, 3)
        (stolen, stolen_handle, thief_victim), *others = held
        await expire_lease(dsn, stolen.run_id)
        await store.acquire_lease(stolen.run_id, owner_node="thief:boot", ttl=60)
        stolen_at = anyio.current_time()
        with anyio.fail_after(10 * HEARTBEAT):
            await thief_victim.lost.wait()
        assert anyio.current_time() - stolen_at <= 1.5 * HEARTBEAT
        assert thief_victim.messages == [LeaseLost(stolen.epoch, overdue=False)]
        assert stolen_handle.fence.reason is FenceReason.LEASE_LOST
        # The others are renewed on, in the same statements.
        renewed = keeper.statistics().renewed
        with anyio.fail_after(10 * HEARTBEAT):
            while keeper.statistics().renewed < renewed + 2 * len(others):
                await keeper.wait_batches(keeper.statistics().batches + 1)
        stats = keeper.statistics()
        assert (stats.lost, stats.held) == (1, 2)
        for _, handle, recorder in others:
            assert handle.fence.is_open
            assert recorder.messages == []
        task_group.cancel_scope.cancel()


async def test_renewals_that_fail_fence_every_lease_at_its_deadline(
    store: Store, keeper: LeaseKeeper, dsn: str
) -> None:
    async with (
        anyio.create_task_group() as task_group,
        await psycopg.AsyncConnection.connect(dsn) as blocker,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as checker,
    ):
        held = await hold_leases(store, keeper, task_group, 2)
        ids = [lease.run_id for lease, _, _ in held]
        deadline = max(handle.valid_until for _, handle, _ in held)
        # Another session holds the lease rows: every renewal statement waits for them
        # until the earliest lease's deadline, and fails.
        await blocker.execute("SELECT 1 FROM run_leases WHERE run_id = ANY(%s) FOR UPDATE", (ids,))
        with anyio.fail_after(10 * HEARTBEAT):
            for _, _, recorder in held:
                await recorder.lost.wait()
        # Fenced at the deadline (half a heartbeat before the database's expiry), while
        # the database still says the leases are held.
        assert anyio.current_time() <= deadline + HEARTBEAT
        cur = await checker.execute(
            "SELECT count(*) FROM run_leases WHERE run_id = ANY(%s) AND expires_at > now()",
            (ids,),
        )
        assert await cur.fetchall() == [(2,)]
        await blocker.rollback()
        for lease, handle, recorder in held:
            assert handle.fence.reason is FenceReason.LEASE_OVERDUE
            assert not handle.fence.is_open
            assert recorder.messages == [LeaseLost(lease.epoch, overdue=True)]
        stats = keeper.statistics()
        assert stats.overdue == 2
        assert stats.failed_batches >= 1
        assert stats.held == 0  # told, and forgotten
        task_group.cancel_scope.cancel()


async def test_a_renewal_tells_of_an_unconsumed_frame(store: Store, keeper: LeaseKeeper) -> None:
    async with anyio.create_task_group() as task_group:
        [(lease, _, recorder)] = await hold_leases(store, keeper, task_group, 1)
        await store.append_frame(lease.run_id, frame_id="f1", kind="message", payload=None)
        batches = keeper.statistics().batches
        with anyio.fail_after(10 * HEARTBEAT):
            while not recorder.messages:
                await keeper.wait_batches(batches + 1)
                batches += 1
        assert isinstance(recorder.messages[0], FramesAvailable)
        task_group.cancel_scope.cancel()


async def test_the_keeper_refuses_another_nodes_lease_and_a_closed_keeper(
    store: Store, keeper: LeaseKeeper
) -> None:
    run, _ = await store.create_run(owner="a", session_id="s", run_type="t")
    lease = await store.acquire_lease(run.run_id, owner_node="other:boot")
    async with anyio.create_task_group() as task_group:
        ref = await spawn(task_group, Recorder())
        fence = EgressFence(run.run_id)
        with pytest.raises(ValueError, match="other:boot"):
            keeper.hold(
                lease, fence=fence, actor=ref, progress=lambda: 0, frames=lambda: 0,
                valid_until=anyio.current_time(),
            )  # fmt: skip
        closed = LeaseKeeper(store, SETTINGS, owner_node="other:boot")
        with pytest.raises(RuntimeError, match="not open"):
            closed.hold(
                lease, fence=fence, actor=ref, progress=lambda: 0, frames=lambda: 0,
                valid_until=anyio.current_time(),
            )  # fmt: skip
        task_group.cancel_scope.cancel()


# -- through run actors --------------------------------------------------------------------


@pytest.fixture
def settings() -> RunSettings:
    return heartbeat_settings(HEARTBEAT)


async def test_a_run_whose_renewals_fail_fences_itself_before_its_lease_expires(
    node: Node, store: Store, dsn: str
) -> None:
    ended = anyio.Event()
    reasons: list[FenceReason | None] = []

    async def ticker(ctx: RunContext) -> JSON:
        """Ticks every 20 ms until its first executor is fenced; the next one replays
        those ticks and finishes."""
        tick = 0
        try:
            while ctx.replaying or not ended.is_set():
                await ctx.emit("tick", {"n": tick})
                tick += 1
                await ctx.sleep(0.02)
        finally:
            if not ended.is_set():
                reasons.append(ctx.fence.reason)
                ended.set()
        return "done"

    node.handlers.register("ticker", ticker)
    run_id = await node.start("ticker")
    await node.wait_for(run_id, lambda events: len(events) >= 3)
    first = await store.get_lease(run_id)
    assert first is not None
    async with (
        await psycopg.AsyncConnection.connect(dsn) as blocker,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as checker,
    ):
        # The renewals wait for the lease row and fail; the ticks go on meanwhile (an
        # append is fenced on the run row) until the fence's deadline stops them.
        await blocker.execute("SELECT 1 FROM run_leases WHERE run_id = %s FOR UPDATE", (run_id,))
        with anyio.fail_after(10 * HEARTBEAT):
            await ended.wait()
        cur = await checker.execute(
            "SELECT expires_at > now() FROM run_leases WHERE run_id = %s", (run_id,)
        )
        assert await cur.fetchall() == [(True,)]  # fenced before the lease expired
        await blocker.rollback()
    assert reasons == [FenceReason.LEASE_OVERDUE]
    # The restarted incarnation takes the run back with a new epoch and finishes it.
    events = await node.wait_terminal(run_id)
    assert_gap_free(events)
    end = terminal(events)
    assert end is not None
    assert end.type == "run.succeeded"
    old = [event.seq for event in events if event.epoch == first.epoch]
    new = [event.seq for event in events if event.epoch > first.epoch]
    assert old
    assert new
    assert max(old) < min(new)  # nothing from the old epoch after the new one began
    assert node.leases.statistics().failed_batches >= 1
    assert node.host.counters.fenced == 1


async def test_a_stolen_lease_is_noticed_while_other_runs_share_its_batches(
    node: Node, store: Store, dsn: str
) -> None:
    async def waiter(ctx: RunContext) -> JSON:
        await ctx.emit("ready")
        async for frame in ctx.frames():
            return frame.frame_id
        return None

    node.handlers.register("waiter", waiter)
    runs = [await node.start("waiter") for _ in range(4)]
    for run_id in runs:
        await node.wait_for(run_id, lambda events: len(events) >= 1)
    stolen, *others = runs
    ref = node.actor(stolen)
    assert ref is not None
    await expire_lease(dsn, stolen)
    await store.acquire_lease(stolen, owner_node="thief:boot", ttl=60)
    stolen_at = anyio.current_time()
    with anyio.fail_after(10 * HEARTBEAT):
        await ref.wait_stopped()
    assert anyio.current_time() - stolen_at <= 1.5 * HEARTBEAT
    # The others were renewed all along and finish on their first lease.
    for run_id in others:
        await store.append_frame(run_id, frame_id=f"f-{uuid.uuid4()}", kind="m", payload=None)
    for run_id in others:
        events = await node.wait_terminal(run_id)
        end = terminal(events)
        assert end is not None
        assert end.type == "run.succeeded"
        assert {event.epoch for event in events} == {1}
    assert node.leases.statistics().lost == 1
