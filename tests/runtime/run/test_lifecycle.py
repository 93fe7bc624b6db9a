"""A run actor's life around the handler: how it starts, and how it leaves a run."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from actors import spawn
from runtime.run import RunSettings, TaskLimitReached, run_spec
from runtime.store import MemoryScope
from supervisors import DynamicSupervisor, start_child
from tests.runtime._helpers import expire_lease
from tests.runtime.run.conftest import TEST_SETTINGS, Node, payload, terminal

if TYPE_CHECKING:
    from actors import ActorRef
    from runtime.run import RunContext, TaskContext
    from runtime.store import JSON, Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings() -> RunSettings:
    """The test settings, with room for one tool task per run."""
    return RunSettings(
        lease_ttl=TEST_SETTINGS.lease_ttl,
        heartbeat_interval=TEST_SETTINGS.heartbeat_interval,
        task_cancel_grace=TEST_SETTINGS.task_cancel_grace,
        retry_backoff_base=TEST_SETTINGS.retry_backoff_base,
        retry_backoff_max=TEST_SETTINGS.retry_backoff_max,
        max_tasks=1,
    )


async def waiter(ctx: RunContext) -> JSON:
    """Says it is ready, then returns the first frame's id."""
    await ctx.emit("ready")
    async for frame in ctx.frames():
        return frame.frame_id
    return None


async def _runs_supervisor(task_group: anyio.abc.TaskGroup) -> ActorRef[Any]:
    return await spawn(task_group, DynamicSupervisor(max_children=10))


async def test_a_graceful_stop_releases_the_lease_for_another_node_at_once(
    node: Node, store: Store
) -> None:
    node.handlers.register("waiter", waiter)
    run, _ = await store.create_run(owner="a", session_id="s", run_type="waiter")
    async with anyio.create_task_group() as task_group:
        draining = await _runs_supervisor(task_group)
        await start_child(draining, run_spec(run.run_id, node.host))
        await node.wait_for(run.run_id, lambda events: len(events) == 1)
        await draining.stop(timeout=10)  # the node drains
    lease = await store.get_lease(run.run_id)
    assert lease is not None
    assert lease.expires_at <= lease.renewed_at  # released, not left to expire
    assert [a.outcome for a in await store.list_attempts(run.run_id)] == ["lost"]
    assert terminal(await node.events(run.run_id)) is None
    # Another executor (here: the test's node, with a fresh boot id) resumes it at once.
    await start_child(node.runs, run_spec(run.run_id, node.host))
    await store.append_frame(run.run_id, frame_id="go", kind="text")
    events = await node.wait_terminal(run.run_id)
    assert [event.type for event in events] == ["ready", "frame.consumed", "run.succeeded"]
    assert payload(events[-1]) == {"result": "go"}
    assert events[-1].epoch == lease.epoch + 1


async def test_a_lease_acquired_for_the_actor_is_used_as_is(node: Node, store: Store) -> None:
    node.handlers.register("waiter", waiter)
    run, _ = await store.create_run(owner="a", session_id="s", run_type="waiter")
    lease = await store.acquire_lease(run.run_id, owner_node=node.node_id)
    await start_child(node.runs, run_spec(run.run_id, node.host, lease=lease))
    await store.append_frame(run.run_id, frame_id="go", kind="text")
    events = await node.wait_terminal(run.run_id)
    assert {event.epoch for event in events} == {lease.epoch}


async def test_a_lease_lost_before_the_actor_started_writes_nothing(
    node: Node, store: Store, dsn: str
) -> None:
    node.handlers.register("waiter", waiter)
    run, _ = await store.create_run(owner="a", session_id="s", run_type="waiter")
    lease = await store.acquire_lease(run.run_id, owner_node=node.node_id)
    await expire_lease(dsn, run.run_id)
    await store.acquire_lease(run.run_id, owner_node="other:boot")
    await start_child(node.runs, run_spec(run.run_id, node.host, lease=lease))
    await node.wait_idle(run.run_id)
    assert await node.events(run.run_id) == []


@pytest.mark.parametrize("situation", ["terminal", "leased elsewhere"])
async def test_a_run_that_is_not_ours_to_run_ends_the_subtree_quietly(
    node: Node, store: Store, situation: str
) -> None:
    run, _ = await store.create_run(owner="a", session_id="s", run_type="chat")
    lease = await store.acquire_lease(run.run_id, owner_node="other:boot", ttl=60)
    if situation == "terminal":
        await store.append_event(run.run_id, lease.epoch, "run.failed", {"reason": "test"})
    before = await node.events(run.run_id)
    with anyio.fail_after(10):
        ref = await start_child(node.runs, run_spec(run.run_id, node.host))
        assert ref is not None
        await ref.wait_stopped()
    assert await node.events(run.run_id) == before
    assert await store.list_attempts(run.run_id) == []


async def test_memory_reads_and_writes_are_not_repeated_by_a_replay(
    node: Node, store: Store
) -> None:
    async def counter(ctx: RunContext) -> JSON:
        seen = await ctx.memory.session.get("count")
        count = (seen.value if seen is not None else 0) + 1  # type: ignore[operator]
        await ctx.memory.session.put("count", count)
        await ctx.emit("counted", {"count": count})
        async for _ in ctx.frames():
            break
        return count

    node.handlers.register("counter", counter)
    run_id = await node.start("counter", session_id="shared")
    await node.wait_for(run_id, lambda events: any(e.type == "counted" for e in events))
    ref = node.actor(run_id)
    assert ref is not None
    ref.kill()  # the replay reads "count" again: it must see what the first execution saw
    await store.append_frame(run_id, frame_id="go", kind="text")
    events = await node.wait_terminal(run_id)
    assert [event.type for event in events] == [
        "memory.read",
        "memory.written",
        "counted",
        "frame.consumed",
        "run.succeeded",
    ]
    assert payload(events[-1]) == {"result": 1}
    item = await store.get_memory(MemoryScope("session", "shared"), "count")
    assert item is not None
    assert (item.value, item.version) == (1, 1)


async def test_memory_events_carry_the_trace_of_the_request_the_run_serves(
    node: Node, store: Store
) -> None:
    """Before any frame, the run creator's trace; then the consumed frame's, also after
    a replay went over the frame's consumption."""
    start, f1, f2 = (f"00-{n:032x}-{n:016x}-01" for n in (1, 2, 3))

    async def remember(ctx: RunContext) -> JSON:
        await ctx.memory.run.put("k", 1)
        async for frame in ctx.frames():
            if frame.frame_id == "f1":
                await ctx.memory.run.get("k")
            else:
                await ctx.memory.run.delete("k")
                break
        return None

    node.handlers.register("remember", remember)
    run_id = await node.start("remember", traceparent=start)
    await store.append_frame(run_id, frame_id="f1", kind="text", traceparent=f1)
    await node.wait_for(run_id, lambda events: any(e.type == "memory.read" for e in events))
    ref = node.actor(run_id)
    assert ref is not None
    ref.kill()  # the next executor replays up to the read, then goes on live
    await store.append_frame(run_id, frame_id="f2", kind="text", traceparent=f2)
    events = await node.wait_terminal(run_id)
    assert [(event.type, event.traceparent) for event in events] == [
        ("memory.written", start),
        ("frame.consumed", f1),
        ("memory.read", f1),
        ("frame.consumed", f2),
        ("memory.deleted", f2),
        ("run.succeeded", f2),
    ]
    assert (await store.verify_chain(run_id)).ok


async def test_more_tasks_than_max_tasks_is_refused_and_logs_nothing(node: Node) -> None:
    release = asyncio.Event()

    async def hold(task: TaskContext) -> JSON:
        await release.wait()
        return "held"

    refused: list[int] = []

    async def greedy(ctx: RunContext) -> JSON:
        async def second() -> None:
            try:
                await ctx.spawn_task(hold, name="second")
            except TaskLimitReached as error:
                refused.append(error.limit)
            release.set()

        first = asyncio.ensure_future(ctx.spawn_task(hold, name="first"))
        await anyio.lowlevel.checkpoint()  # let the first one log its start
        await second()
        return await first

    node.handlers.register("greedy", greedy)
    run_id = await node.start("greedy")
    events = await node.wait_terminal(run_id)
    assert refused == [1]
    assert [event.type for event in events] == ["task.started", "task.succeeded", "run.succeeded"]
