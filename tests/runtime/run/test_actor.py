"""The run actor end to end: lease, handler, one terminal event, lease released."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.runtime.run.conftest import Node, assert_gap_free, terminal

if TYPE_CHECKING:
    from runtime.store import Store

pytestmark = pytest.mark.anyio


async def test_a_chat_run_streams_its_turn_and_succeeds(node: Node, store: Store) -> None:
    run_id = await node.start("chat", {"prompt": "hi", "tokens": 5, "tools": 2})
    events = await node.wait_terminal(run_id)
    assert_gap_free(events)
    types = [event.type for event in events]
    assert types == [
        "task.started",
        "task.succeeded",
        "task.started",
        "task.succeeded",
        *["token"] * 5,
        "memory.written",
        "message",
        "run.succeeded",
    ]
    end = terminal(events)
    assert end is not None
    assert end.payload == {"result": {"tokens": 5, "tool_calls": 2}}
    run = await store.get_run(run_id)
    assert run.status == "succeeded"
    await node.wait_idle(run_id)
    lease = await store.get_lease(run_id)
    assert lease is not None
    assert lease.expires_at <= lease.renewed_at  # released
    (attempt,) = await store.list_attempts(run_id)
    assert attempt.outcome == "succeeded"
    assert (await store.verify_chain(run_id)).ok


async def test_echo_consumes_each_frame_once_in_order(node: Node, store: Store) -> None:
    run_id = await node.start("echo")
    for index in range(3):
        await store.append_frame(run_id, frame_id=f"f{index}", kind="text", payload={"n": index})
    # A repeated frame_id is the same frame: echoed once.
    await store.append_frame(run_id, frame_id="f1", kind="text", payload={"n": 1})
    await store.append_frame(run_id, frame_id="done", kind="end")
    events = await node.wait_terminal(run_id)
    assert_gap_free(events)
    consumed = [event.payload for event in events if event.type == "frame.consumed"]
    assert consumed == [
        {"frame_seq": 1, "frame_id": "f0"},
        {"frame_seq": 2, "frame_id": "f1"},
        {"frame_seq": 3, "frame_id": "f2"},
        {"frame_seq": 4, "frame_id": "done"},
    ]
    echoed = [event.payload for event in events if event.type == "echo"]
    assert echoed == [
        {"frame_id": f"f{index}", "kind": "text", "payload": {"n": index}} for index in range(3)
    ]
    end = terminal(events)
    assert end is not None
    assert end.type == "run.succeeded"
    assert end.payload == {"result": {"echoed": 3}}
