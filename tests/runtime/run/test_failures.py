"""The handler-failure policy: a handler exception is a failed attempt, not a crash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from runtime.run import RunContext, TaskContext, TaskFailed, TaskTimedOut
from tests.runtime.run.conftest import Node, assert_gap_free, payload, terminal

if TYPE_CHECKING:
    from runtime.store import JSON, Store

pytestmark = pytest.mark.anyio


async def test_a_handler_that_always_raises_fails_after_three_attempts(
    node: Node, store: Store
) -> None:
    calls = 0

    async def broken(ctx: RunContext) -> JSON:
        nonlocal calls
        calls += 1
        await ctx.emit("step", {"n": 1})
        raise ValueError("the model said no")

    node.handlers.register("broken", broken)
    run_id = await node.start("broken")
    events = await node.wait_terminal(run_id)
    assert_gap_free(events)
    # Each attempt replays the first one's step instead of emitting it again.
    assert [event.type for event in events] == [
        "step",
        "run.attempt_failed",
        "run.attempt_failed",
        "run.failed",
    ]
    assert calls == 3
    end = terminal(events)
    assert end is not None
    assert end.payload == {
        "reason": "handler_error",
        "error_class": "transient",
        "error_type": "ValueError",
        "message": "the model said no",
        "attempts": 3,
    }
    await node.wait_idle(run_id)
    attempts = await store.list_attempts(run_id)
    assert [(a.attempt, a.outcome, a.error_type) for a in attempts] == [
        (1, "failed", "ValueError"),
        (2, "failed", "ValueError"),
        (3, "failed", "ValueError"),
    ]
    retry = [payload(event) for event in events if event.type == "run.attempt_failed"]
    assert [item["attempt"] for item in retry] == [1, 2]
    assert (await store.get_run(run_id)).status == "failed"
    # The node is unharmed: the next run succeeds.
    other = await node.start("chat", {"prompt": "x", "tokens": 1, "tools": 1})
    other_end = terminal(await node.wait_terminal(other))
    assert other_end is not None
    assert other_end.type == "run.succeeded"


async def test_a_retry_replays_what_the_failed_attempt_did(node: Node, store: Store) -> None:
    attempts = 0

    async def flaky(ctx: RunContext) -> JSON:
        nonlocal attempts
        attempts += 1
        first = await ctx.emit("step", {"n": 1})
        if attempts == 1:
            raise ConnectionError("transient")
        second = await ctx.emit("step", {"n": 2})
        return {"seqs": [first, second]}

    node.handlers.register("flaky", flaky)
    run_id = await node.start("flaky")
    events = await node.wait_terminal(run_id)
    assert [event.type for event in events] == [
        "step",
        "run.attempt_failed",
        "step",
        "run.succeeded",
    ]
    end = terminal(events)
    assert end is not None
    assert end.payload == {"result": {"seqs": [1, 3]}}
    await node.wait_idle(run_id)
    outcomes = [a.outcome for a in await store.list_attempts(run_id)]
    assert outcomes == ["failed", "succeeded"]


async def test_a_result_that_is_not_json_fails_the_run_as_bad_result(node: Node) -> None:
    async def odd(ctx: RunContext) -> JSON:
        return {"when": object()}  # type: ignore[dict-item]

    node.handlers.register("odd", odd)
    run_id = await node.start("odd")
    end = terminal(await node.wait_terminal(run_id))
    assert end is not None
    assert end.type == "run.failed"
    assert isinstance(end.payload, dict)
    assert end.payload["reason"] == "bad_result"
    assert end.payload["error_class"] == "permanent"
    assert end.payload["attempts"] == 1


async def test_an_unknown_run_type_fails_the_run_naming_the_known_ones(node: Node) -> None:
    run_id = await node.start("no-such-type")
    end = terminal(await node.wait_terminal(run_id))
    assert end is not None
    assert end.type == "run.failed"
    assert isinstance(end.payload, dict)
    assert end.payload["reason"] == "unknown_run_type"
    assert "chat, echo" in str(end.payload["message"])


async def test_task_failures_and_timeouts_reach_the_handler_and_the_log(node: Node) -> None:
    async def explode(task: TaskContext) -> JSON:
        raise KeyError("gone")

    async def dawdle(task: TaskContext) -> JSON:
        import anyio

        await anyio.sleep(30)
        return None

    seen: list[str] = []

    async def caller(ctx: RunContext) -> JSON:
        try:
            await ctx.spawn_task(explode)
        except TaskFailed as error:
            seen.append(f"{error.error_type}:{error.message}")
        try:
            await ctx.spawn_task(dawdle, timeout=0.05)
        except TaskTimedOut as error:
            seen.append(f"timed out after {error.timeout}")
        return len(seen)

    node.handlers.register("caller", caller)
    run_id = await node.start("caller")
    events = await node.wait_terminal(run_id)
    assert [event.type for event in events] == [
        "task.started",
        "task.failed",
        "task.started",
        "task.timed_out",
        "run.succeeded",
    ]
    assert seen == ["KeyError:'gone'", "timed out after 0.05"]
    started = events[0].payload
    assert isinstance(started, dict)
    assert (
        started["name"]
        == "test_task_failures_and_timeouts_reach_the_handler_and_the_log.<locals>.explode"
    )
    failed = events[1].payload
    assert isinstance(failed, dict)
    assert failed["tool_call_id"] == started["tool_call_id"]
