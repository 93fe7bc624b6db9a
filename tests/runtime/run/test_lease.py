"""The lease keeper and the fence: a stolen lease, and an event loop that stalls.

Both are checked in the database: the executor that lost its lease writes nothing more.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import pytest
from structlog.testing import capture_logs

from runtime.run import EgressFenced, RunContext, RunSettings
from tests.runtime._helpers import expire_lease, query
from tests.runtime.run.conftest import Node, heartbeat_settings, payload, terminal

if TYPE_CHECKING:
    from blockbuster import BlockBuster

    from runtime.store import JSON, Store

pytestmark = pytest.mark.anyio

HEARTBEAT = 0.5


@pytest.fixture
def settings() -> RunSettings:
    return heartbeat_settings(HEARTBEAT)


async def ticker(ctx: RunContext) -> JSON:
    """Emits a tick every 20 ms until cancelled or fenced."""
    tick = 0
    while True:
        await ctx.emit("tick", {"n": tick})
        tick += 1
        await ctx.sleep(0.02)


async def waiter(ctx: RunContext) -> JSON:
    """Says it is ready, then waits for frames, writing nothing."""
    await ctx.emit("ready")
    async for frame in ctx.frames():
        return frame.frame_id
    return None


@pytest.mark.parametrize("run_type", ["ticker", "waiter"])
async def test_a_stolen_lease_fences_the_old_actor_within_one_heartbeat(
    node: Node, store: Store, dsn: str, run_type: str
) -> None:
    # "ticker" keeps writing (its next append is refused for its stale epoch); "waiter"
    # waits for frames and writes nothing (only the keeper's renewal can notice).
    node.handlers.register("ticker", ticker)
    node.handlers.register("waiter", waiter)
    run_id = await node.start(run_type)
    minimum = 3 if run_type == "ticker" else 1
    await node.wait_for(run_id, lambda events: len(events) >= minimum)
    ref = node.actor(run_id)
    assert ref is not None
    old = await store.get_lease(run_id)
    assert old is not None
    with capture_logs() as logs:
        await expire_lease(dsn, run_id)
        stolen = await store.acquire_lease(run_id, owner_node="thief:boot", ttl=60)
        stolen_at = anyio.current_time()
        head_at_steal = (await store.get_run(run_id)).last_seq  # at least the head then
        with anyio.fail_after(10 * HEARTBEAT):
            await ref.wait_stopped()
        fenced_after = anyio.current_time() - stolen_at
    assert stolen.epoch == old.epoch + 1
    assert fenced_after <= 1.5 * HEARTBEAT, fenced_after
    assert node.host.counters.fenced == 1
    if run_type == "waiter":
        assert any(log["event"] == "run_lease_lost" for log in logs)
    # Nothing from the old epoch after the takeover (seqs are allocated in commit order,
    # under the run row's lock), and the new owner's writes land.
    late = await query(
        dsn,
        "SELECT count(*) FROM run_events WHERE run_id = %s AND epoch = %s AND seq > %s",
        (run_id, old.epoch, head_at_steal),
    )
    assert late == [(0,)]
    seq = await store.append_event(run_id, stolen.epoch, "thief.was.here")
    events = await node.events(run_id)
    assert events[-1].seq == seq
    assert terminal(events) is None
    lease = await store.get_lease(run_id)
    assert lease is not None
    assert (lease.owner_node, lease.epoch) == ("thief:boot", stolen.epoch)  # not released


async def test_an_event_loop_stall_fences_the_actor_before_its_lease_expires(
    node: Node, store: Store, dsn: str, blockbuster: BlockBuster
) -> None:
    blockbuster.functions["time.sleep"].deactivate()  # the stall is the point of this test
    stall = 4.5 * HEARTBEAT  # past the renewal window and past the lease itself
    refused: list[str] = []

    async def stalls_once(ctx: RunContext) -> JSON:
        await ctx.emit("before")
        if not refused:
            time.sleep(stall)  # noqa: ASYNC251 - blocks the event loop: no renewal can run
            try:
                await ctx.emit("after")
            except EgressFenced as error:
                refused.append(error.reason)
                raise
        else:
            await ctx.emit("after")
        return "done"

    node.handlers.register("stalls", stalls_once)
    with capture_logs() as logs:
        run_id = await node.start("stalls")
        events = await node.wait_terminal(run_id)
    # The first emit after the stall was refused by the fence itself, before any task
    # (the keeper included) could run: nothing was written from the stalled executor.
    assert refused == ["lease_overdue"]
    assert [event.type for event in events] == ["before", "after", "run.succeeded"]
    before, after, _ = events
    assert after.epoch == before.epoch + 1  # written by the next incarnation, re-leased
    assert before.writer is not None
    assert after.writer is not None
    assert (before.writer.attempt, after.writer.attempt) == (1, 2)
    stalls = [log for log in logs if log["event"] == "event_loop_stalled"]
    assert stalls
    assert stalls[0]["seconds"] >= stall - 2 * HEARTBEAT
    assert stalls[0]["fenced"] is True
    restarted = [log for log in logs if log["event"] == "child_exited" and log["abnormal"]]
    assert "LeaseOverdue" in restarted[0]["reason"]
    assert payload(events[-1]) == {"result": "done"}
    assert (await store.get_run(run_id)).status == "succeeded"
