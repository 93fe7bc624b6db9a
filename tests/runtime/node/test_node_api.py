"""The Python API: ``async with Node(config) as node`` and what it offers."""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

import aiohttp
import anyio
import pytest
from aiohttp import web
from pydantic import SecretStr

from runtime.node import GATEWAY_LIFESPANS, Node, NodeClosed, NodeStartFailed
from runtime.run import UnknownRunType
from runtime.store import RunNotFound, RunTerminal
from tests.runtime._helpers import query
from tests.runtime.node._helpers import assert_a_clean_log, log_of, payload, wait_for_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from runtime.config import NodeConfig

pytestmark = pytest.mark.anyio


async def test_a_run_started_on_the_node_executes_and_wait_returns_it_finished(
    node: Node,
) -> None:
    run, created = await node.start_run(owner="alice", run_type="echo")
    assert created
    assert run.status == "pending"
    await node.append_frame(run.run_id, frame_id="f1", kind="message", payload={"text": "hi"})
    await node.append_frame(run.run_id, frame_id="f2", kind="end")
    with anyio.fail_after(20):
        done = await node.wait(run.run_id)
    assert done.status == "succeeded"
    events = await log_of(node.store, run.run_id)
    assert_a_clean_log(events)
    assert [payload(e)["frame_id"] for e in events if e.type == "echo"] == ["f1"]
    snapshot = await node.snapshot(run.run_id)
    assert snapshot.run == done
    assert snapshot.lease is not None
    assert snapshot.lease.owner_node == node.node_id
    assert snapshot.terminal_event is not None
    assert snapshot.terminal_event.type == "run.succeeded"
    assert snapshot.terminal_event.seq == done.last_seq


async def test_starting_the_same_request_twice_returns_the_same_run(node: Node) -> None:
    first, created = await node.start_run(
        owner="alice", run_type="echo", input={"frames": 1}, idempotency_key="k-1"
    )
    again, created_again = await node.start_run(
        owner="alice", run_type="echo", input={"frames": 1}, idempotency_key="k-1"
    )
    assert (created, created_again) == (True, False)
    assert again.run_id == first.run_id
    assert again.session_id == first.session_id  # derived from owner and key
    await node.append_frame(first.run_id, frame_id="only", kind="message")
    with anyio.fail_after(20):
        assert (await node.wait(first.run_id)).status == "succeeded"
    assert node.statistics().runs_started == 1


async def test_an_unknown_run_type_is_refused_listing_the_registered_ones(
    node: Node, node_config: NodeConfig
) -> None:
    with pytest.raises(UnknownRunType) as refused:
        await node.start_run(owner="alice", run_type="no-such-type")
    assert refused.value.run_type == "no-such-type"
    assert {"chat", "echo"} <= set(refused.value.registered)
    assert "chat" in str(refused.value)
    assert await query(node.dsn, "SELECT count(*) FROM runs") == [(0,)]


async def test_a_frame_for_a_finished_run_is_refused(node: Node) -> None:
    run, _ = await node.start_run(owner="alice", run_type="echo", input={"frames": 1})
    await node.append_frame(run.run_id, frame_id="f1", kind="message")
    with anyio.fail_after(20):
        await node.wait(run.run_id)
    with pytest.raises(RunTerminal) as refused:
        await node.append_frame(run.run_id, frame_id="late", kind="message")
    assert refused.value.run_id == run.run_id
    assert refused.value.status == "succeeded"
    frames = await node.store.read_frames(run.run_id)
    assert [f.frame_id for f in frames] == ["f1"]


async def test_an_unknown_run_is_not_found(node: Node) -> None:
    ghost = uuid.uuid4()
    with pytest.raises(RunNotFound):
        await node.snapshot(ghost)
    with pytest.raises(RunNotFound):
        await node.append_frame(ghost, frame_id="f", kind="message")
    with pytest.raises(RunNotFound):
        await node.cancel(ghost)


async def test_a_cancelled_run_ends_canceled_once(node: Node) -> None:
    run, _ = await node.start_run(owner="alice", run_type="echo")
    request = await node.cancel(run.run_id, reason="changed my mind")
    assert request.requested
    assert not (await node.cancel(run.run_id)).requested  # idempotent
    with anyio.fail_after(20):
        done = await node.wait(run.run_id)
    assert done.status == "canceled"
    events = await log_of(node.store, run.run_id)
    assert_a_clean_log(events)
    assert events[-1].type == "run.canceled"


async def test_the_tree_is_the_design_tree(node: Node) -> None:
    tree = node.tree()
    assert [child.id for child in tree.children] == [
        "store",
        "listener",
        "membership",
        "janitor",
        "sessions",
        "runs",
        "gateway",
    ]
    assert all(child.state == "running" for child in tree.children)
    assert tree.strategy == "rest_for_one"


async def test_a_run_shows_in_the_tree_and_the_statistics_while_active(node: Node) -> None:
    run, _ = await node.start_run(owner="alice", run_type="echo")
    runs = next(c for c in node.tree().children if c.id == "runs")
    assert runs.subtree is not None
    assert [c.id for c in runs.subtree.children] == [f"run:{run.run_id}"]
    stats = node.statistics()
    assert (stats.active_runs, stats.runs_started, stats.node_id) == (1, 1, node.node_id)
    await node.append_frame(run.run_id, frame_id="end", kind="end")
    with anyio.fail_after(20):
        await node.wait(run.run_id)
        await node.wait_idle()
    assert node.statistics().active_runs == 0


async def test_an_attempt_is_recorded_once_the_runs_executor_has_let_go(node: Node) -> None:
    # The outcome of an attempt is written when the run actor releases the lease, one
    # round trip after the terminal event: readers wait for the node to be idle (the
    # demo once read "lost, None" between the two).
    run, _ = await node.start_run(owner="alice", run_type="echo", input={"frames": 1})
    await node.append_frame(run.run_id, frame_id="only", kind="message")
    with anyio.fail_after(20):
        assert (await node.wait(run.run_id)).status == "succeeded"
        await node.wait_idle()
    attempts = await node.store.list_attempts(run.run_id)
    assert [attempt.outcome for attempt in attempts] == ["succeeded"]


async def test_the_node_registers_itself_and_marks_its_clean_stop(
    node_config: NodeConfig,
) -> None:
    async with Node(node_config) as node:
        [row] = await node.store.list_nodes()
        assert row.node_id == node.node_id
        assert row.boot_id == node.boot_id
        assert isinstance(row.metadata, dict)
        assert row.metadata["max_active_runs"] == node_config.max_active_runs
        dsn = node.dsn
    rows = await query(dsn, "SELECT node_id, stopped_at IS NOT NULL FROM nodes")
    assert rows == [(node.node_id, True)]


async def test_the_gateway_slot_answers_healthz(node: Node) -> None:
    assert node.address is not None
    host, port = node.address
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body == {"status": "ok", "node_id": node.node_id, "state": "open"}


NODE_KEY = web.AppKey("node", Node)


async def test_the_gateway_slot_serves_the_given_application(node_config: NodeConfig) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {request.app[NODE_KEY].node_id}")

    def gateway(node: Node) -> web.Application:
        app = web.Application()
        app[NODE_KEY] = node
        app.router.add_get("/hello", hello)
        return app

    async with Node(node_config, gateway=gateway) as node:
        assert node.address is not None
        host, port = node.address
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/hello") as response,
        ):
            assert await response.text() == f"hello from {node.node_id}"


async def test_the_gateway_holds_the_applications_lifespans_around_its_serving(
    node_config: NodeConfig,
) -> None:
    """A lifespan is entered before the application starts and left after its cleanup,
    in the gateway actor's task: a task group there owns its tasks for exactly the time
    the application is served."""
    steps: list[str] = []
    running = anyio.Event()

    async def background() -> None:
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            steps.append("task ended")

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        steps.append("entered")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(background)
            yield
            steps.append("leaving")
            tasks.cancel_scope.cancel()
        steps.append("left")

    async def started(app: web.Application) -> None:
        steps.append("app started")

    async def cleaned_up(app: web.Application) -> None:
        steps.append("app cleaned up")

    def gateway(node: Node) -> web.Application:
        app = web.Application()
        app[GATEWAY_LIFESPANS] = [lifespan]
        app.on_startup.append(started)
        app.on_cleanup.append(cleaned_up)
        return app

    async with Node(node_config, gateway=gateway):
        with anyio.fail_after(10):
            await running.wait()
        assert steps == ["entered", "app started"]
    assert steps == ["entered", "app started", "app cleaned up", "leaving", "task ended", "left"]


async def test_a_port_in_use_fails_the_start_naming_the_gateway(
    node: Node, node_config: NodeConfig
) -> None:
    assert node.address is not None
    taken = node_config.with_changes(port=node.address[1])
    second = Node(taken)
    with pytest.raises(NodeStartFailed) as failed:
        await second.__aenter__()
    assert failed.value.part == "gateway"
    assert f"cannot listen on 127.0.0.1:{node.address[1]}" in str(failed.value)
    assert second.state == "closed"
    # Nothing of it is left behind: only the first node is registered and running.
    assert [row.node_id for row in await node.store.list_nodes()] == [node.node_id]


async def test_an_unreachable_database_fails_the_start_naming_the_store(
    node_config: NodeConfig,
) -> None:
    bad = node_config.with_changes(
        dsn=SecretStr("postgresql://nobody:pw@127.0.0.1:1/none"), connect_timeout=1.0
    )
    with pytest.raises(NodeStartFailed) as failed:
        async with Node(bad):
            pass
    assert failed.value.part == "store"
    assert "database unavailable at host '127.0.0.1'" in str(failed.value)
    assert "pw" not in str(failed.value).replace("postgres", "")


async def test_a_node_is_single_use(node_config: NodeConfig) -> None:
    node = Node(node_config)
    with pytest.raises(NodeClosed):
        node.tree()
    with pytest.raises(NodeClosed):
        await node.start_run(owner="alice", run_type="echo")
    async with node:
        pass
    assert node.state == "closed"
    with pytest.raises(NodeClosed):
        await node.start_run(owner="alice", run_type="echo")
    with pytest.raises(NodeClosed):
        await node.__aenter__()


TRACE_START = "00-11111111111111111111111111111111-1111111111111111-01"
TRACE_F1 = "00-22222222222222222222222222222222-2222222222222222-01"
TRACE_F2 = "00-33333333333333333333333333333333-3333333333333333-01"


async def test_events_carry_the_trace_of_the_request_that_caused_them(node: Node) -> None:
    run, _ = await node.start_run(owner="alice", run_type="echo", traceparent=TRACE_START)
    await node.append_frame(
        run.run_id, frame_id="f1", kind="message", payload={}, traceparent=TRACE_F1
    )
    with anyio.fail_after(20):
        await wait_for_event(node.store, node.listener, run.run_id, "echo")
    await node.append_frame(run.run_id, frame_id="f2", kind="end", traceparent=TRACE_F2)
    with anyio.fail_after(20):
        await node.wait(run.run_id)
    events = await log_of(node.store, run.run_id)
    assert [(e.type, e.traceparent) for e in events] == [
        ("frame.consumed", TRACE_F1),
        ("echo", TRACE_F1),
        ("frame.consumed", TRACE_F2),
        ("run.succeeded", TRACE_F2),
    ]
    assert (await node.store.get_run(run.run_id)).traceparent == TRACE_START


async def test_a_cancel_s_events_carry_the_cancel_request_s_trace(node: Node) -> None:
    run, _ = await node.start_run(owner="alice", run_type="echo", traceparent=TRACE_START)
    await node.cancel(run.run_id, reason="enough", traceparent=TRACE_F2)
    with anyio.fail_after(20):
        done = await node.wait(run.run_id)
    assert done.status == "canceled"
    events = await log_of(node.store, run.run_id)
    assert [(e.type, e.traceparent) for e in events] == [
        ("run.cancel_requested", TRACE_F2),
        ("run.canceled", TRACE_F2),
    ]


async def test_the_janitor_prunes_finished_runs_past_their_window(
    node_config: NodeConfig,
) -> None:
    config = node_config.with_changes(retention_window=3600.0, retention_windows={"echo": 0.0})
    async with Node(config) as node:
        run, _ = await node.start_run(owner="alice", run_type="echo", input={"frames": 2})
        for frame_id in ("f1", "f2"):
            await node.append_frame(run.run_id, frame_id=frame_id, kind="message")
        with anyio.fail_after(20):
            done = await node.wait(run.run_id)
        await node.recover_now()  # one scan, then the sweeps
        pruned = await node.store.get_run(run.run_id)
        assert pruned.retention_floor == done.last_seq - 1
        assert node.statistics().janitor.pruned_events == done.last_seq - 1
        assert (await node.store.verify_chain(run.run_id)).ok
        snapshot = await node.snapshot(run.run_id)
        assert snapshot.terminal_event is not None
        assert snapshot.terminal_event.type == "run.succeeded"
