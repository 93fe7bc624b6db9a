"""``warden node`` as a real process: signals, drain, and bad configuration."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from typing import TYPE_CHECKING

import anyio
import orjson
import pytest
from anyio.streams.text import TextReceiveStream

from runtime.node import Node
from runtime.store import EXECUTOR_LOST_EVENT, Listener, Store
from tests.runtime._helpers import cli_env, query, run_cli
from tests.runtime.node._helpers import assert_a_clean_log, log_of, wait_for_event

if TYPE_CHECKING:
    import subprocess
    from collections.abc import AsyncIterator
    from uuid import UUID

    from anyio.abc import Process

    from runtime.config import NodeConfig
    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio

#: A turn that streams for several seconds.
LONG_CHAT = {"prompt": "hello", "tokens": 100, "rate": 20, "tools": 1, "tool_delay": 0.01}


class NodeProcess:
    """A ``python -m runtime node`` subprocess and what it printed."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.logged = ""

    async def wait_ready(self) -> str:
        assert self.process.stdout is not None
        async for chunk in TextReceiveStream(self.process.stdout):
            self.lines += chunk.splitlines()
            ready = [line for line in self.lines if " ready: " in line]
            if ready:
                return ready[0]
        raise AssertionError(f"the node exited before it was ready: {self.lines}")

    async def wait_logged(self, event: str) -> None:
        """Read the node's log (stderr) until ``event`` shows up in it."""
        assert self.process.stderr is not None
        async for chunk in TextReceiveStream(self.process.stderr):
            self.logged += chunk
            if event in self.logged:
                return
        raise AssertionError(f"the node exited without logging {event}")

    async def wait_exit(self) -> int:
        assert self.process.stdout is not None
        async for chunk in TextReceiveStream(self.process.stdout):
            self.lines += chunk.splitlines()
        return await self.process.wait()

    async def read_log(self) -> str:
        """The node's whole log (stderr), once it has exited."""
        assert self.process.stderr is not None
        async for chunk in TextReceiveStream(self.process.stderr):
            self.logged += chunk
        return self.logged


@contextlib.asynccontextmanager
async def node_process(*args: str, env: dict[str, str]) -> AsyncIterator[NodeProcess]:
    process = await anyio.open_process([sys.executable, "-m", "runtime", "node", *args], env=env)
    try:
        yield NodeProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await process.wait()
        await process.aclose()


def node_env(dsn: str, **extra: str) -> dict[str, str]:
    return cli_env(
        WARDEN_DSN=dsn,
        WARDEN_PORT="0",
        WARDEN_JANITOR_INTERVAL="0.1",
        WARDEN_LOG_FORMAT="json",
        **extra,
    )


async def pending_chats(store: Store, count: int) -> list[UUID]:
    runs = []
    for index in range(count):
        run, _ = await store.create_run(
            owner="alice", session_id=f"s-{index}", run_type="chat", input=LONG_CHAT
        )
        runs.append(run.run_id)
    return runs


async def lease_states(dsn: str, run_ids: list[UUID]) -> dict[UUID, str]:
    rows = await query(
        dsn,
        "SELECT r.run_id, CASE WHEN r.status IN ('succeeded', 'failed', 'canceled',"
        " 'timed_out') THEN 'finished' WHEN l.expires_at = l.renewed_at THEN 'released'"
        " ELSE 'held' END FROM runs r LEFT JOIN run_leases l USING (run_id)"
        " WHERE r.run_id = ANY(%s)",
        (run_ids,),
    )
    return {row[0]: row[1] for row in rows}


async def test_sigterm_drains_releases_and_a_second_node_resumes_at_once(
    dsn: str, config: StoreConfig, store: Store, node_config: NodeConfig
) -> None:
    runs = await pending_chats(store, 3)
    env = node_env(dsn, WARDEN_LEASE_TTL="1.5", WARDEN_DRAIN_TIMEOUT="0.3")
    async with Listener(dsn, config) as listener, node_process(env=env) as node:
        with anyio.fail_after(30):
            await node.wait_ready()
            # Its janitor adopts the pending runs after one lease TTL; they stream.
            for run_id in runs:
                await wait_for_event(store, listener, run_id, "token")
        node.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await node.wait_exit() == 0, node.lines
    assert any(" stopped (" in line for line in node.lines)
    states = await lease_states(dsn, runs)
    assert set(states.values()) <= {"finished", "released"}, states
    handed_over = [run_id for run_id, state in states.items() if state == "released"]
    assert handed_over, "the runs stream for seconds: the drain must have handed some over"

    # A second node with a lease TTL far beyond the test resumes them at once.
    later = node_config.with_changes(node_name="later", lease_ttl=120.0)
    async with Node(later) as second:
        with anyio.fail_after(30):
            for run_id in runs:
                assert (await second.wait(run_id)).status == "succeeded"
        for run_id in runs:
            events = await log_of(second.store, run_id)
            assert_a_clean_log(events)
            assert EXECUTOR_LOST_EVENT not in {e.type for e in events}
        assert second.statistics().janitor.resumed == len(handed_over)


async def test_a_second_signal_exits_at_once(dsn: str, config: StoreConfig, store: Store) -> None:
    [run_id] = await pending_chats(store, 1)
    env = node_env(dsn, WARDEN_LEASE_TTL="1.5", WARDEN_DRAIN_TIMEOUT="600")
    async with Listener(dsn, config) as listener, node_process(env=env) as node:
        with anyio.fail_after(30):
            await node.wait_ready()
            await wait_for_event(store, listener, run_id, "token")
        node.process.send_signal(signal.SIGTERM)  # drains: waits up to 600 s for the run
        # Both sent at once, the kernel may deliver SIGINT first (lower numbers go first):
        # the second signal is sent once the node has taken the first one.
        with anyio.fail_after(20):
            await node.wait_logged("node_signal_received")
        node.process.send_signal(signal.SIGINT)
        with anyio.fail_after(20):
            code = await node.wait_exit()
    assert code == 128 + signal.SIGINT
    # No cleanup ran: the lease was not released; it expires for another node's janitor.
    assert (await lease_states(dsn, [run_id]))[run_id] == "held"


async def test_sigint_drains_an_idle_node(dsn: str) -> None:
    async with node_process("--name", "idle", env=node_env(dsn)) as node:
        with anyio.fail_after(30):
            ready = await node.wait_ready()
            assert ready.startswith("warden node idle:")
            assert "gateway http://127.0.0.1:" in ready
            assert "run types chat, echo" in ready
        node.process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            assert await node.wait_exit() == 0
            log = await node.read_log()
    rows = await query(dsn, "SELECT node_id LIKE 'idle:%', stopped_at IS NOT NULL FROM nodes")
    assert rows == [(True, True)]
    # Started, the node froze its heap out of the garbage collector's scans (the default).
    [frozen] = [orjson.loads(line) for line in log.splitlines() if "node_heap_frozen" in line]
    assert frozen["objects"] > 10_000
    # Every line the process logged names the node, the signal watcher's too.
    lines = [orjson.loads(line) for line in log.splitlines()]
    assert {line["event"] for line in lines} >= {"node_heap_frozen", "node_signal_received"}
    assert {line.get("node_id", "").split(":")[0] for line in lines} == {"idle"}


async def test_the_node_runs_on_uvloop_and_may_leave_its_heap_unfrozen(dsn: str) -> None:
    env = node_env(dsn, WARDEN_GC_FREEZE="false")
    async with node_process("--loop", "uvloop", env=env) as node:
        with anyio.fail_after(30):
            await node.wait_ready()
        node.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await node.wait_exit() == 0
            log = await node.read_log()
    assert "node_signal_received" in log
    assert "node_heap_frozen" not in log


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line a failed ``warden node`` ends with; everything before it is logs."""
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    *logs, last = result.stderr.strip().splitlines()
    assert last.startswith("warden: error: "), result.stderr
    assert all(line.startswith("{") for line in logs), logs  # JSON log lines only
    return last


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--port", "70000"], {}, "--port"),
        (["--max-active-runs", "0"], {}, "--max-active-runs"),
        (["--lease-ttl", "6", "--heartbeat-interval", "4"], {}, "heartbeat_interval"),
        ([], {"WARDEN_PORT": "eighty"}, "WARDEN_PORT"),
        (["--name", "bad:name"], {}, "--name"),
        (["--handlers", "no-colon"], {}, "--handlers"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], named: str
) -> None:
    result = run_cli("node", *args, env=cli_env(**env))
    line = one_line_error(result, 2)
    assert "invalid configuration" in line
    assert named in line


def test_an_unknown_handler_module_is_one_line_and_exit_2(dsn: str) -> None:
    result = run_cli("node", "--handlers", "no_such_module:handler", env=node_env(dsn))
    line = one_line_error(result, 2)
    assert "cannot load handler 'no_such_module:handler'" in line
    assert result.stdout == ""


def test_an_unreachable_database_is_one_line_and_exit_1() -> None:
    env = cli_env(
        WARDEN_DSN="postgresql://warden:s3cret-pw@127.0.0.1:1/warden",
        WARDEN_CONNECT_TIMEOUT="2",
        WARDEN_PORT="0",
    )
    result = run_cli("node", env=env)
    line = one_line_error(result, 1)
    assert line.startswith(
        "warden: error: node could not start its store: database unavailable at host '127.0.0.1'"
    )
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_a_port_in_use_is_one_line_and_exit_1(dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("node", "--port", str(port), env=node_env(dsn))
    line = one_line_error(result, 1)
    assert f"node could not start its gateway: cannot listen on 127.0.0.1:{port}" in line
