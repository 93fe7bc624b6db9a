"""Kill and crash a run actor mid-stream at seeded points: the run resumes from its log.

Invariants checked from the database after every run: seqs 1..N without gap or
duplicate, each token once, exactly one terminal event, each task started in the log once,
a task that finished is never started again, and each task's side effect applied once
(a side table keyed by ``tool_call_id``, the idempotency key).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.runtime._helpers import query
from tests.runtime.run.conftest import Node, assert_gap_free, payload, terminal

if TYPE_CHECKING:
    from collections.abc import Callable

    from runtime.run import RunContext, TaskContext
    from runtime.store import JSON, Event

pytestmark = pytest.mark.anyio

TOKENS = 30
SEEDS = [7, 1234, 99]


class _Bug:
    """A message no run actor understands: handling it crashes the actor (a bug)."""


async def _side_tables(dsn: str) -> None:
    await query(
        dsn,
        "CREATE TABLE tool_starts (tool_call_id text NOT NULL,"
        " started_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    await query(
        dsn,
        "CREATE TABLE tool_effects (tool_call_id text PRIMARY KEY, amount int NOT NULL,"
        " requests int NOT NULL DEFAULT 1)",
    )


def _agent(dsn: str) -> Any:
    async def charge(task: TaskContext, amount: int) -> JSON:
        await query(dsn, "INSERT INTO tool_starts (tool_call_id) VALUES (%s)", (task.tool_call_id,))
        await anyio.sleep(0.02)  # a kill here cuts the call off before its effect
        task.fence.check()
        # The effect, idempotent by tool_call_id: a repeated call is applied once.
        await query(
            dsn,
            "INSERT INTO tool_effects (tool_call_id, amount) VALUES (%s, %s)"
            " ON CONFLICT (tool_call_id) DO UPDATE SET requests = tool_effects.requests + 1",
            (task.tool_call_id, amount),
        )
        await anyio.sleep(0.02)  # a kill here cuts it off after its effect
        return {"charged": amount}

    async def agent(ctx: RunContext) -> JSON:
        charged = []
        for amount in (1, 2):
            charged.append(await ctx.spawn_task(charge, amount, name="charge"))
        for index in range(TOKENS):
            await ctx.emit("token", {"index": index, "word": ctx.random.choice("abcdef")})
            await ctx.sleep(0.01)
        charged.append(await ctx.spawn_task(charge, 3, name="charge"))
        await ctx.memory.run.put("done", True)
        return {"charged": charged}

    return agent


def _at_least(count: int) -> Callable[[list[Event]], bool]:
    return lambda events: len(events) >= count


async def _check_invariants(node: Node, dsn: str, events: list[Event]) -> None:
    assert_gap_free(events)
    end = terminal(events)
    assert end is not None
    assert end.type == "run.succeeded", end.payload
    assert end.seq == len(events)
    tokens = [payload(event)["index"] for event in events if event.type == "token"]
    assert tokens == list(range(TOKENS))
    started = [payload(event)["tool_call_id"] for event in events if event.type == "task.started"]
    assert len(started) == len(set(started)) == 3
    finished = {
        payload(event)["tool_call_id"]: event
        for event in events
        if event.type.startswith("task.") and event.type != "task.started"
    }
    assert set(finished) == set(started)
    assert all(event.type == "task.succeeded" for event in finished.values())
    for call_id in started:
        # Never started again once its outcome was logged.
        late = await query(
            dsn,
            "SELECT count(*) FROM tool_starts WHERE tool_call_id = %s AND started_at > %s",
            (call_id, finished[call_id].created_at),
        )
        assert late == [(0,)], call_id
        # Applied exactly once, however many times it was requested.
        effect = await query(
            dsn, "SELECT amount FROM tool_effects WHERE tool_call_id = %s", (call_id,)
        )
        assert len(effect) == 1
    assert (await node.store.verify_chain(events[0].run_id)).ok
    # Every event says who wrote it: this node, and which attempt; attempts only grow.
    writers = [event.writer for event in events]
    assert all(writer is not None and writer.node == node.node_id for writer in writers)
    attempts = [writer.attempt or 0 for writer in writers if writer is not None]
    assert attempts == sorted(attempts)
    assert attempts[0] >= 1


@pytest.mark.parametrize("seed", SEEDS)
async def test_killed_and_crashed_mid_stream_the_run_resumes_and_repeats_nothing(
    node: Node, dsn: str, seed: int
) -> None:
    await _side_tables(dsn)
    node.handlers.register("agent", _agent(dsn))
    rng = random.Random(seed)
    run_id = await node.start("agent")
    # Expected events: 3 tasks (started + succeeded), the tokens, the memory write, the end.
    expected = 3 * 2 + TOKENS + 2
    points = sorted(rng.sample(range(1, expected - 2), 6))
    faults = [rng.choice(["kill", "crash"]) for _ in points]
    for point, fault in zip(points, faults, strict=True):
        events = await node.wait_for(run_id, _at_least(point))
        if terminal(events) is not None:
            break
        ref = node.actor(run_id)
        assert ref is not None
        if fault == "kill":
            ref.kill()
        else:
            await ref.tell(_Bug())
    events = await node.wait_terminal(run_id, seconds=60)
    await _check_invariants(node, dsn, events)
    restarts = await query(dsn, "SELECT count(*) FROM run_attempts WHERE run_id = %s", (run_id,))
    assert restarts[0][0] >= 2  # it really was interrupted and resumed


async def test_frames_are_consumed_exactly_once_across_kills(node: Node, dsn: str) -> None:
    frames = 12
    rng = random.Random(5)
    run_id = await node.start("echo")
    faults = dict.fromkeys(rng.sample(range(1, frames), 3), "kill") | dict.fromkeys(
        rng.sample(range(1, frames), 2), "crash"
    )
    for index in range(frames):
        await node.store.append_frame(run_id, frame_id=f"f{index}", kind="text", payload=index)
        fault = faults.get(index)
        if fault is None:
            continue
        await node.wait_for(run_id, _at_least(2 * index))
        ref = node.actor(run_id)
        assert ref is not None
        if fault == "kill":
            ref.kill()
        else:
            await ref.tell(_Bug())
    await node.store.append_frame(run_id, frame_id="end", kind="end")
    events = await node.wait_terminal(run_id, seconds=60)
    assert_gap_free(events)
    # Checkable from the database alone: each frame_seq consumed once, in order.
    consumed = await query(
        dsn,
        "SELECT (payload->>'frame_seq')::bigint FROM run_events"
        " WHERE run_id = %s AND type = 'frame.consumed' ORDER BY seq",
        (run_id,),
    )
    assert [row[0] for row in consumed] == list(range(1, frames + 2))
    echoed = [payload(event)["payload"] for event in events if event.type == "echo"]
    assert echoed == list(range(frames))
    end = terminal(events)
    assert end is not None
    assert payload(end) == {"result": {"echoed": frames}}


async def test_many_runs_under_random_kills_and_crashes_keep_every_invariant(
    node: Node, dsn: str
) -> None:
    await _side_tables(dsn)
    node.handlers.register("agent", _agent(dsn))
    rng = random.Random(2024)
    run_ids = [await node.start("agent", session_id=f"s-{index}") for index in range(6)]
    for _ in range(10):
        run_id = rng.choice(run_ids)
        events = await node.wait_for(run_id, _at_least(rng.randrange(1, 20)))
        ref = node.actor(run_id)
        if terminal(events) is not None or ref is None:
            continue
        if rng.random() < 0.5:
            ref.kill()
        else:
            await ref.tell(_Bug())
    for run_id in run_ids:
        await _check_invariants(node, dsn, await node.wait_terminal(run_id, seconds=90))
