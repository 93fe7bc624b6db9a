"""Cancel and the egress fence (DESIGN §8).

Whenever it comes (while tokens stream, during a tool call, before the run started, twice
at once, after the run finished), a cancel leaves the log with nothing but cancellation
bookkeeping after ``run.cancel_requested``: ``task.canceled`` for the tasks it stopped and
exactly one ``run.canceled``; a finished run is left as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from runtime.run import CancelRun, run_spec
from supervisors import start_child
from tests.runtime._helpers import query
from tests.runtime.run.conftest import Node, assert_gap_free, payload, terminal

if TYPE_CHECKING:
    from runtime.run import RunContext, TaskContext
    from runtime.store import JSON, Event, Store

pytestmark = pytest.mark.anyio

BOOKKEEPING = {"task.canceled", "run.canceled"}


def assert_cancelled_cleanly(events: list[Event]) -> Event:
    """Only bookkeeping after the cancel request; one ``run.canceled``, last. Returns it."""
    assert_gap_free(events)
    (request,) = [event for event in events if event.type == "run.cancel_requested"]
    after = [event.type for event in events if event.seq > request.seq]
    assert set(after) <= BOOKKEEPING, after
    end = terminal(events)
    assert end is not None
    assert end.type == "run.canceled"
    assert end.seq == events[-1].seq
    assert payload(end)["cancel_seq"] == request.seq
    return end


async def test_cancel_during_a_tool_call_cancels_the_task(
    node: Node, store: Store, dsn: str
) -> None:
    await query(dsn, "CREATE TABLE effects (tool_call_id text PRIMARY KEY)")
    started = anyio.Event()

    async def slow_tool(task: TaskContext) -> JSON:
        started.set()
        await anyio.sleep(30)
        task.fence.check()
        await query(dsn, "INSERT INTO effects VALUES (%s)", (task.tool_call_id,))
        return "sent"

    async def agent(ctx: RunContext) -> JSON:
        await ctx.emit("thinking")
        return await ctx.spawn_task(slow_tool)

    node.handlers.register("agent", agent)
    run_id = await node.start("agent")
    with anyio.fail_after(10):
        await started.wait()
    await store.request_cancel(run_id)
    events = await node.wait_terminal(run_id)
    end = assert_cancelled_cleanly(events)
    assert [event.type for event in events] == [
        "thinking",
        "task.started",
        "run.cancel_requested",
        "task.canceled",
        "run.canceled",
    ]
    canceled = payload(events[3])
    assert canceled["tool_call_id"] == payload(events[1])["tool_call_id"]
    assert canceled["cut_off"] is False
    assert payload(end)["tasks_canceled"] == 1
    assert await query(dsn, "SELECT count(*) FROM effects") == [(0,)]


async def test_a_task_ignoring_cancellation_is_cut_off_after_the_grace(
    node: Node, store: Store, dsn: str
) -> None:
    await query(dsn, "CREATE TABLE effects (tool_call_id text PRIMARY KEY)")
    started = anyio.Event()
    finished = anyio.Event()
    refused: list[str] = []

    async def stubborn(task: TaskContext) -> JSON:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            # Ignores its cancellation for longer than the grace, then tries its effect.
            with anyio.CancelScope(shield=True):
                await anyio.sleep(4 * node.settings.task_cancel_grace)
                try:
                    task.fence.check()
                    await query(dsn, "INSERT INTO effects VALUES (%s)", (task.tool_call_id,))
                except Exception as error:
                    refused.append(type(error).__name__)
                finished.set()
        return "sent"

    async def agent(ctx: RunContext) -> JSON:
        return await ctx.spawn_task(stubborn)

    node.handlers.register("agent", agent)
    run_id = await node.start("agent")
    with anyio.fail_after(10):
        await started.wait()
    await store.request_cancel(run_id)
    events = await node.wait_terminal(run_id)
    # The run did not wait for the stubborn task to finish.
    assert not finished.is_set()
    end = assert_cancelled_cleanly(events)
    assert payload(end)["tasks_cut_off"] == 1
    assert payload(events[-2])["cut_off"] is True
    assert node.host.counters.tasks_cut_off == 1
    with anyio.fail_after(10):
        await finished.wait()
    assert refused == ["EgressFenced"]
    assert await query(dsn, "SELECT count(*) FROM effects") == [(0,)]


async def test_cancel_before_the_run_started_runs_nothing(node: Node, store: Store) -> None:
    calls = 0

    async def never(ctx: RunContext) -> JSON:
        nonlocal calls
        calls += 1
        return None

    node.handlers.register("never", never)
    run, _ = await store.create_run(owner="alice", session_id="s", run_type="never")
    request = await store.request_cancel(run.run_id, reason="changed my mind")
    assert request.seq == 1
    await start_child(node.runs, run_spec(run.run_id, node.host))
    events = await node.wait_terminal(run.run_id)
    assert [event.type for event in events] == ["run.cancel_requested", "run.canceled"]
    assert payload(events[1])["reason"] == "changed my mind"
    assert calls == 0
    await node.wait_idle(run.run_id)
    assert [a.outcome for a in await store.list_attempts(run.run_id)] == ["canceled"]


async def test_cancelling_a_finished_run_changes_nothing(node: Node, store: Store) -> None:
    run_id = await node.start("chat", {"prompt": "p", "tokens": 2, "tools": 1})
    before = await node.wait_terminal(run_id)
    await node.wait_idle(run_id)
    request = await store.request_cancel(run_id, reason="too late")
    assert not request.requested
    assert await node.events(run_id) == before
    assert (await store.get_run(run_id)).status == "succeeded"


async def test_cancel_while_tokens_stream(node: Node, store: Store) -> None:
    run_id = await node.start("chat", {"prompt": "p", "tokens": 500, "rate": 200, "tools": 1})
    await node.wait_for(run_id, lambda events: sum(e.type == "token" for e in events) >= 5)
    request = await store.request_cancel(run_id, reason="user pressed stop")
    assert request.requested
    events = await node.wait_terminal(run_id)
    end = assert_cancelled_cleanly(events)
    assert payload(end) == {
        "reason": "user pressed stop",
        "cancel_seq": request.seq,
        "tasks_canceled": 0,
        "tasks_cut_off": 0,
    }
    assert sum(event.type == "token" for event in events) < 500
    assert (await store.get_run(run_id)).status == "canceled"
    await node.wait_idle(run_id)
    attempts = await store.list_attempts(run_id)
    assert [attempt.outcome for attempt in attempts] == ["canceled"]
    assert node.host.counters.cancels == 1


async def test_two_concurrent_cancels_cancel_once(node: Node, store: Store) -> None:
    run_id = await node.start("chat", {"prompt": "p", "tokens": 500, "rate": 200, "tools": 1})
    await node.wait_for(run_id, lambda events: any(e.type == "token" for e in events))
    requests = []

    async def cancel(reason: str) -> None:
        requests.append(await store.request_cancel(run_id, reason=reason))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(cancel, "first")
        task_group.start_soon(cancel, "second")
    assert sorted(request.requested for request in requests) == [False, True]
    events = await node.wait_terminal(run_id)
    assert_cancelled_cleanly(events)
    assert sum(event.type == "run.canceled" for event in events) == 1


async def test_a_cancel_message_to_the_actor_is_recorded_durably(node: Node, store: Store) -> None:
    # The node may tell a local run actor directly; the actor records the request itself.
    run_id = await node.start("chat", {"prompt": "p", "tokens": 500, "rate": 200, "tools": 1})
    await node.wait_for(run_id, lambda events: any(e.type == "token" for e in events))
    ref = node.actor(run_id)
    assert ref is not None
    await ref.tell(CancelRun("from the node"))
    events = await node.wait_terminal(run_id)
    end = assert_cancelled_cleanly(events)
    assert payload(end)["reason"] == "from the node"
    assert (await store.get_run(run_id)).cancel_requested_at is not None
