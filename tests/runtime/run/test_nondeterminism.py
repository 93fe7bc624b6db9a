"""A handler that does something else on replay fails with ``nondeterministic_handler``,
naming the seq where it diverged: a replay never diverges silently."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.runtime.run.conftest import Node, payload, terminal

if TYPE_CHECKING:
    from runtime.run import RunContext, TaskContext
    from runtime.store import JSON, Store

pytestmark = pytest.mark.anyio


async def _failed_on_replay(node: Node, run_id: object) -> dict[str, JSON]:
    events = await node.wait_terminal(run_id)  # type: ignore[arg-type]
    end = terminal(events)
    assert end is not None
    assert end.type == "run.failed"
    return payload(end)


async def test_another_event_on_retry_fails_the_run_naming_the_seq(node: Node) -> None:
    attempts = 0

    async def fickle(ctx: RunContext) -> JSON:
        nonlocal attempts
        attempts += 1
        await ctx.emit("greeting", {"text": "hello"})
        await ctx.emit("answer" if attempts == 1 else "reply", {"n": 42})
        if attempts == 1:
            raise RuntimeError("try again")
        return None

    node.handlers.register("fickle", fickle)
    run_id = await node.start("fickle")
    failed = await _failed_on_replay(node, run_id)
    assert failed["reason"] == "nondeterministic_handler"
    assert failed["error_class"] == "permanent"
    assert failed["seq"] == 2
    assert "event 'answer'" in str(failed["message"])
    assert "event 'reply'" in str(failed["message"])
    assert attempts == 2  # permanent: no third attempt
    await node.wait_idle(run_id)
    assert node.host.counters.nondeterministic == 1


async def test_another_payload_after_a_kill_fails_the_run(node: Node, store: Store) -> None:
    incarnations = 0
    waiting = anyio.Event()

    async def clock_reader(ctx: RunContext) -> JSON:
        nonlocal incarnations
        incarnations += 1
        # Wrong: the value differs between executions (it should come from ctx.random).
        await ctx.emit("stamp", {"value": incarnations})
        waiting.set()
        async for _ in ctx.frames():
            break
        return None

    node.handlers.register("clock_reader", clock_reader)
    run_id = await node.start("clock_reader")
    with anyio.fail_after(10):
        await waiting.wait()
    ref = node.actor(run_id)
    assert ref is not None
    ref.kill()
    failed = await _failed_on_replay(node, run_id)
    assert failed["reason"] == "nondeterministic_handler"
    assert failed["seq"] == 1
    assert incarnations == 2


async def test_another_task_on_replay_fails_the_run(node: Node) -> None:
    attempts = 0

    async def search(task: TaskContext, query: str) -> JSON:
        return [query]

    async def planner(ctx: RunContext) -> JSON:
        nonlocal attempts
        attempts += 1
        await ctx.spawn_task(search, "cats" if attempts == 1 else "dogs")
        if attempts == 1:
            raise RuntimeError("try again")
        return None

    node.handlers.register("planner", planner)
    failed = await _failed_on_replay(node, await node.start("planner"))
    assert failed["reason"] == "nondeterministic_handler"
    assert failed["seq"] == 1
    assert "task" in str(failed["message"])


async def test_a_handler_that_returns_early_on_replay_fails(node: Node) -> None:
    attempts = 0

    async def shrinking(ctx: RunContext) -> JSON:
        nonlocal attempts
        attempts += 1
        await ctx.emit("one")
        if attempts == 1:
            await ctx.emit("two")
            raise RuntimeError("try again")
        return "done"

    node.handlers.register("shrinking", shrinking)
    failed = await _failed_on_replay(node, await node.start("shrinking"))
    assert failed["reason"] == "nondeterministic_handler"
    assert failed["seq"] == 2
    assert "the handler returned" in str(failed["message"])
