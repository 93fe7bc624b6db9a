"""``GET /v1/runs/{id}/stream``: SSE read from the log, resume rules, fan-out, slow clients."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import TYPE_CHECKING

import anyio
import orjson
import pytest

from tests.runtime._helpers import query
from tests.runtime.node._helpers import log_of
from tests.transport._helpers import error_of, events_of, frame, parse_sse, start
from tests.transport.conftest import gateway_settings, serving
from transport._state import READER
from transport._stream import HUBS

if TYPE_CHECKING:
    import aiohttp

    from runtime.config import NodeConfig
    from tests.transport.conftest import Gateway

pytestmark = pytest.mark.anyio

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def finished_run(gateway: Gateway, http: aiohttp.ClientSession, frames: int = 2) -> str:
    run_id = await start(gateway, http, input={"frames": frames})
    for i in range(frames):
        await frame(gateway, http, run_id, f"f{i}", payload={"i": i})
    with anyio.fail_after(30):
        await gateway.node.wait(uuid.UUID(run_id))
    return run_id


async def stream_text(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    run_id: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    async with http.get(
        f"{gateway.url}/v1/runs/{run_id}/stream{query}",
        headers={**gateway.auth("alice", "runs:read"), **(headers or {})},
    ) as response:
        return response.status, await response.text()


async def test_a_stream_sends_the_whole_log_in_order_and_ends_after_the_terminal_event(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await finished_run(gateway, http)
    status, text = await stream_text(gateway, http, run_id, headers={"traceparent": TRACEPARENT})
    assert status == 200
    blocks = parse_sse(text)
    log = await log_of(gateway.node.store, uuid.UUID(run_id))
    events = events_of(blocks)
    assert [(int(b.id or 0), b.event) for b in events] == [(e.seq, e.type) for e in log]
    assert [b.data["seq"] for b in events] == [e.seq for e in log]
    assert events[-1].event == "run.succeeded"
    assert events[0].data["run_id"] == run_id
    assert set(events[0].data) >= {"run_id", "seq", "type", "payload", "created_at"}
    # The first block carries retry: with jitter within the configured window.
    config = gateway.node.config.gateway
    assert blocks[0].retry is not None
    assert config.retry_base <= blocks[0].retry <= config.retry_base + config.retry_jitter
    assert all(b.retry is None for b in blocks[1:])


async def test_the_stream_echoes_the_traceparent(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await finished_run(gateway, http, frames=1)
    async with http.get(
        f"{gateway.url}/v1/runs/{run_id}/stream",
        headers={**gateway.auth("alice", "runs:read"), "traceparent": TRACEPARENT},
    ) as response:
        assert response.status == 200
        assert response.headers["traceparent"] == TRACEPARENT
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await response.read()


async def test_resume_from_a_cursor_or_last_event_id(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    run_id = await finished_run(gateway, http, frames=3)
    log = await log_of(gateway.node.store, uuid.UUID(run_id))
    seqs = [e.seq for e in log]

    async def seqs_from(query: str = "", headers: dict[str, str] | None = None) -> list[int]:
        status, text = await stream_text(gateway, http, run_id, query=query, headers=headers)
        assert status == 200, text
        return [int(b.id or 0) for b in events_of(parse_sse(text))]

    assert await seqs_from("?cursor=2") == seqs[2:]
    assert await seqs_from(headers={"Last-Event-ID": "4"}) == seqs[4:]
    # A browser reconnects to the URL it opened and adds the header: the header wins
    # when it is at or past the cursor.
    assert await seqs_from("?cursor=2", {"Last-Event-ID": "5"}) == seqs[5:]
    assert await seqs_from("?cursor=3", {"Last-Event-ID": "3"}) == seqs[3:]


async def test_stream_refusals(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    run_id = await finished_run(gateway, http, frames=1)
    last = (await gateway.node.store.get_run(uuid.UUID(run_id))).last_seq

    async def refusal(run: str, query: str = "", headers: dict[str, str] | None = None) -> object:
        async with http.get(
            f"{gateway.url}/v1/runs/{run}/stream{query}",
            headers={**gateway.auth("alice", "runs:read"), **(headers or {})},
        ) as response:
            if response.status == 204:
                assert await response.read() == b""
                return 204
            return await error_of(response)

    # Finished, and the cursor at or past its last seq: 204 (EventSource stops).
    assert await refusal(run_id, f"?cursor={last}") == 204
    assert await refusal(run_id, headers={"Last-Event-ID": str(last + 5)}) == 204
    assert await refusal(str(uuid.uuid4())) == (404, "run_not_found")
    assert await refusal("not-a-uuid") == (404, "run_not_found")
    assert await refusal(run_id, "?cursor=abc") == (400, "invalid_cursor")
    assert await refusal(run_id, "?cursor=-1") == (400, "invalid_cursor")
    assert await refusal(run_id, headers={"Last-Event-ID": "x1"}) == (400, "invalid_cursor")
    assert await refusal(run_id, "?cursor=3", {"Last-Event-ID": "2"}) == (
        400,
        "cursor_conflict",
    )
    assert await refusal(run_id, "?cursor=1&cursor=2") == (400, "invalid_cursor")
    assert await refusal(run_id, "?limit=3") == (400, "invalid_request")


async def test_200_concurrent_clients_receive_the_identical_sequence(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    frames = 5
    run_id = await start(gateway, http, input={"frames": frames})
    clients = 200
    connected = anyio.Event()
    opened = 0
    texts: list[str] = []

    async def client() -> None:
        nonlocal opened
        async with http.get(
            f"{gateway.url}/v1/runs/{run_id}/stream", headers=gateway.auth("alice", "runs:read")
        ) as response:
            assert response.status == 200
            opened += 1
            if opened == clients:
                connected.set()
            texts.append(await response.text())

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tasks:
            for _ in range(clients):
                tasks.start_soon(client)
            await connected.wait()  # every stream is open before the run moves
            for i in range(frames):
                await frame(gateway, http, run_id, f"f{i}", payload={"i": i})
    log = await log_of(gateway.node.store, uuid.UUID(run_id))
    expected = [(e.seq, e.type, orjson.dumps(e.payload).decode()) for e in log]
    assert expected[-1][1] == "run.succeeded"
    sequences = {
        tuple(
            (int(b.id or 0), b.event, orjson.dumps(b.data["payload"]).decode())
            for b in events_of(parse_sse(t))
        )
        for t in texts
    }
    assert len(texts) == clients
    assert sequences == {tuple(expected)}
    assert gateway.app[READER].shared > 0  # the fan-out shared its reads of the log


@pytest.fixture
def quick_config(node_config: NodeConfig) -> NodeConfig:
    """Heartbeats every 0.2 s, a 4 KiB per-connection buffer and a 1 s send timeout."""
    gateway = gateway_settings(heartbeat_interval=0.2, stream_buffer=4096, send_timeout=1.0)
    return node_config.with_changes(gateway=gateway)


async def test_an_idle_stream_sends_heartbeats(
    quick_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    async with serving(quick_config) as gateway:
        run_id = await start(gateway, http, input={"frames": 1})
        async with http.get(
            f"{gateway.url}/v1/runs/{run_id}/stream", headers=gateway.auth("alice", "runs:read")
        ) as response:
            assert response.status == 200
            seen = b""
            with anyio.fail_after(20):
                while b"\n: hb\n" not in b"\n" + seen:
                    seen += await response.content.readany()
            await frame(gateway, http, run_id, "only")
            rest = await response.text()
        assert "event: run.succeeded" in (seen.decode() + rest)


async def test_a_client_that_reads_nothing_is_bounded_then_disconnected(
    quick_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    async with serving(quick_config) as gateway:
        frames = 200
        run_id = await start(gateway, http, input={"frames": frames})
        host, port = gateway.node.address or ("", 0)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, port))
        token = gateway.token("alice", "runs:read")
        request = (
            f"GET /v1/runs/{run_id}/stream HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        metrics = gateway.metrics

        def disconnected() -> bool:
            return bool(
                metrics.registry.get_sample_value(
                    "warden_sse_disconnects_total", {"reason": "send_timeout"}
                )
            )

        try:
            # The stalled client's first bytes arrive (headers and retry:), then it reads
            # nothing more while the run writes events of ~100 KB, until the kernel's
            # buffers are full and the server gives up on it.
            assert (await loop.sock_recv(sock, 12)).startswith(b"HTTP/1.1 200")
            big = "x" * 100_000
            for i in range(frames):
                if disconnected():
                    break
                await frame(gateway, http, run_id, f"f{i}", payload=big)
            # Wait for the server to give up on the client. The client cannot find out
            # without reading (which would unblock the server); the server's stream
            # counts the disconnect, then leaves the run's hub, which wakes the wait.
            with anyio.fail_after(30):
                await gateway.app[HUBS].wait_for(disconnected)
        finally:
            sock.close()
        frame_size = 100_000 + 1_000  # one event's frame and its JSON around the payload
        assert 0 < metrics.peak_buffered <= quick_config.gateway.stream_buffer + frame_size


async def test_the_gateways_shutdown_ends_open_streams_cleanly(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    async with serving(node_config) as gateway:
        run_id = await start(gateway, http, input={"frames": 1})
        response = await http.get(
            f"{gateway.url}/v1/runs/{run_id}/stream", headers=gateway.auth("alice", "runs:read")
        )
        assert response.status == 200
        assert (await response.content.readuntil(b"\n\n")).startswith(b"retry: ")
    # The node has stopped: the open stream was ended, not cut (a clean end of body).
    with anyio.fail_after(10):
        assert await response.read() == b""
    response.release()
    assert gateway.metrics.registry.get_sample_value("warden_sse_connections") == 0


async def test_an_event_whose_notify_was_lost_still_arrives_by_the_fallback_poll(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    """Events committed without any NOTIFY (written here by plain SQL, as if the
    notification was lost) reach the stream by its poll; it still ends after the
    terminal event."""
    config = node_config.with_changes(gateway=gateway_settings(poll_interval=0.2))
    async with serving(config) as gateway:
        store = gateway.node.store
        run, _ = await store.create_run(owner="alice", session_id="s-1", run_type="echo")
        # Executed elsewhere: a live lease keeps this node's janitor away from it.
        lease = await store.acquire_lease(run.run_id, owner_node="elsewhere:1", ttl=600)
        async with http.get(
            f"{gateway.url}/v1/runs/{run.run_id}/stream",
            headers=gateway.auth("alice", "runs:read"),
        ) as response:
            assert response.status == 200
            assert (await response.content.readuntil(b"\n\n")).startswith(b"retry: ")
            for seq, kind in ((1, "note"), (2, "run.succeeded")):
                await query(
                    gateway.node.dsn,
                    "WITH event AS (INSERT INTO run_events (run_id, seq, type, payload, epoch,"
                    " terminal, prev_hash, hash) VALUES (%s, %s, %s, '{}', %s, %s, '\\x00',"
                    " '\\x01')) UPDATE runs SET last_seq = %s WHERE run_id = %s",
                    (run.run_id, seq, kind, lease.epoch, kind == "run.succeeded", seq, run.run_id),
                )
                with anyio.fail_after(20):
                    block = await response.content.readuntil(b"\n\n")
                assert block.startswith(b"id: %d\nevent: %s\n" % (seq, kind.encode()))
            with anyio.fail_after(20):
                assert await response.content.read() == b""  # ended after the terminal event


async def test_a_stream_the_listener_cannot_watch_is_refused_before_it_opens(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    """The node's LISTEN connection at ``listener_max_waiters``: a stream that would need
    a new watch (its run has no hub yet) is a 503 ``unavailable`` answer, not a stream
    that opens and ends at once; a stream joining a run's hub needs no new watch."""
    async with serving(node_config.with_changes(listener_max_waiters=1)) as gateway:
        store = gateway.node.store
        runs = []
        for session in ("s-1", "s-2"):
            run, _ = await store.create_run(owner="alice", session_id=session, run_type="echo")
            # Executed elsewhere: no run actor of this node registers a waiter.
            await store.acquire_lease(run.run_id, owner_node="elsewhere:1", ttl=600)
            runs.append(f"{gateway.url}/v1/runs/{run.run_id}/stream")
        listener = gateway.node.listener
        assert listener.statistics().waiters == 0
        auth = gateway.auth("alice", "runs:read")
        connections = "warden_sse_connections"
        async with http.get(runs[0], headers=auth) as first:
            assert first.status == 200
            assert (await first.content.readuntil(b"\n\n")).startswith(b"retry: ")
            assert listener.statistics().waiters == 1  # the run's hub watches it
            async with http.get(runs[1], headers=auth) as refused:
                assert await error_of(refused) == (503, "unavailable")
                assert refused.headers["Retry-After"] == "1"
                assert not refused.headers["Content-Type"].startswith("text/event-stream")
            assert gateway.metrics.registry.get_sample_value(connections) == 1
            assert listener.statistics().waiters == 1
            async with http.get(runs[0], headers=auth) as joined:
                assert joined.status == 200
                assert (await joined.content.readuntil(b"\n\n")).startswith(b"retry: ")
                assert listener.statistics().waiters == 1
                assert gateway.metrics.registry.get_sample_value(connections) == 2
