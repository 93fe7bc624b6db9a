"""A run's hub: one tail of the log per run per node, shared by the run's streams."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import uuid
from typing import TYPE_CHECKING, cast

import anyio
import anyio.lowlevel
import orjson
import psycopg
import pytest

import transport._hub
from runtime.store import StoreError
from tests.runtime.node._helpers import log_of
from tests.transport._helpers import events_of, frame, parse_sse, start
from tests.transport.conftest import gateway_settings, serving
from transport._hub import Hub, Hubs, HubsClosed, Subscriber
from transport._metrics import GatewayMetrics
from transport._sse import EncodedEvent
from transport._state import READER
from transport._stream import HUBS

if TYPE_CHECKING:
    import aiohttp

    from runtime.config import NodeConfig
    from tests.transport.conftest import Gateway
    from transport._sse import SseStream

pytestmark = pytest.mark.anyio


def sequence(text: str) -> list[tuple[int, str, str]]:
    return [
        (int(b.id or 0), b.event or "", orjson.dumps(b.data["payload"]).decode())
        for b in events_of(parse_sse(text))
    ]


async def expected(gateway: Gateway, run_id: str, after: int = 0) -> list[tuple[int, str, str]]:
    log = await log_of(gateway.node.store, uuid.UUID(run_id))
    return [(e.seq, e.type, orjson.dumps(e.payload).decode()) for e in log if e.seq > after]


async def hub_of(gateway: Gateway, run_id: str) -> Hub:
    """The run's hub, once the first stream has subscribed (woken by the subscription,
    bounded)."""
    hubs = gateway.app[HUBS]
    with anyio.fail_after(20):
        await hubs.wait_for(lambda: hubs.get(uuid.UUID(run_id)) is not None)
    hub = hubs.get(uuid.UUID(run_id))
    assert hub is not None
    return hub


async def no_hubs(gateway: Gateway) -> None:
    """Once every stream has left its hub (woken by each leave, bounded)."""
    hubs = gateway.app[HUBS]
    with anyio.fail_after(20):
        await hubs.wait_for(lambda: len(hubs) == 0)


async def read_until(response: aiohttp.ClientResponse, needle: bytes, seen: bytes) -> bytes:
    with anyio.fail_after(20):
        while needle not in seen:
            chunk = await response.content.readany()
            assert chunk, "the stream ended early"
            seen += chunk
    return seen


@pytest.fixture
def quick_config(node_config: NodeConfig) -> NodeConfig:
    """Heartbeats every 0.2 s: a stream finds its client gone within one."""
    return node_config.with_changes(gateway=gateway_settings(heartbeat_interval=0.2))


async def test_streams_joining_mid_run_get_every_event_once_in_order(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    frames = 6
    run_id = await start(gateway, http, input={"frames": frames})
    url = f"{gateway.url}/v1/runs/{run_id}/stream"
    auth = gateway.auth("alice", "runs:read")
    async with http.get(url, headers=auth) as first:
        assert first.status == 200
        for i in range(3):
            await frame(gateway, http, run_id, f"f{i}", payload={"i": i})
        seen = await read_until(first, b'"i":2', b"")
        hub = await hub_of(gateway, run_id)
        head = (await expected(gateway, run_id))[-1][0]
        # One joins from the start (its first page read from the log), one at the
        # hub's head.
        async with (
            http.get(url, headers=auth) as behind,
            http.get(f"{url}?cursor={head}", headers=auth) as at_head,
        ):
            assert behind.status == at_head.status == 200
            for i in range(3, frames):
                await frame(gateway, http, run_id, f"f{i}", payload={"i": i})
            with anyio.fail_after(30):
                texts = [
                    seen.decode() + await first.text(),
                    await behind.text(),
                    await at_head.text(),
                ]
    whole = await expected(gateway, run_id)
    assert whole[-1][1] == "run.succeeded"
    assert sequence(texts[0]) == whole
    assert sequence(texts[1]) == whole
    assert sequence(texts[2]) == await expected(gateway, run_id, after=head)
    assert hub.pages > 0
    await no_hubs(gateway)


def page_of(*seqs: int) -> tuple[EncodedEvent, ...]:
    return tuple(EncodedEvent(seq, "echo", 0.0, b"id: %d\n\n" % seq) for seq in seqs)


async def test_a_page_handed_out_across_turns_of_the_loop_skips_joiners_and_leavers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Subscribers with their stream's task awake (not ``direct``) only get pages
    # pending: the hub's bookkeeping, without sockets.
    monkeypatch.setattr(transport._hub, "PUBLISH_SLICE", 1)
    hub = Hub(uuid.uuid4(), 2, GatewayMetrics(), release=lambda: None)
    subscribers = [Subscriber(2, 1 << 20, cast("SseStream", None)) for _ in range(4)]
    for subscriber in subscribers:
        hub.join(subscriber)
    leaver = tuple(hub.subscribers)[-1]  # the last the page goes to
    stayers = [s for s in subscribers if s is not leaver]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hub._publish, page_of(3, 4))
        await anyio.lowlevel.checkpoint()  # the hub handed the page to one subscriber
        joiner = Subscriber(2, 1 << 20, cast("SseStream", None))  # it read up to seq 2
        hub.join(joiner)
        hub.subscribers.discard(leaver)
    assert [s.cursor for s in stayers] == [4, 4, 4]
    assert all(s.pending and s.pending[0].block == b"id: 3\n\nid: 4\n\n" for s in stayers)
    assert (leaver.cursor, leaver.pending) == (2, [])
    # The joiner read only up to seq 2: it must read 3 and 4 from the log itself.
    assert (joiner.cursor, joiner.pending) == (2, [])
    live = [joiner.live]
    hub.catch_up(joiner)
    live.append(joiner.live)
    joiner.cursor = 4  # its own read of the log reached the head
    hub.catch_up(joiner)
    live.append(joiner.live)
    assert live == [False, False, True]
    await hub._publish(page_of(5))
    assert [c.block for c in joiner.pending] == [b"id: 5\n\n"]


async def test_streams_joining_and_leaving_while_a_page_is_handed_out_miss_nothing(
    gateway: Gateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A turn of the event loop after every two streams a page is handed to: streams
    # join (from the start, and at the head) and leave in the middle of pages.
    monkeypatch.setattr(transport._hub, "PUBLISH_SLICE", 2)
    frames, first_wave = 8, 12
    joiners = 3  # pairs of streams that join after each frame
    run_id = await start(gateway, http, input={"frames": frames})
    url = f"{gateway.url}/v1/runs/{run_id}/stream"
    auth = gateway.auth("alice", "runs:read")
    opened = [anyio.Event() for _ in range(first_wave)]
    seen_frame = [anyio.Event() for _ in range(frames)]
    heads: list[int] = [0] * frames
    texts: list[tuple[int, str]] = []  # (cursor, body) of every stream that stayed

    async def stream(
        cursor: int, *, leave_at: int | None = None, opening: anyio.Event | None = None
    ) -> None:
        query = f"?cursor={cursor}" if cursor else ""
        async with http.get(url + query, headers=auth) as response:
            assert response.status == 200
            if opening is not None:
                opening.set()
            if leave_at is not None:
                await read_until(response, b'"i":%d' % leave_at, b"")
                return  # the client goes away mid-run
            texts.append((cursor, await response.text()))

    async def watch() -> None:
        async with http.get(url, headers=auth) as response:
            seen = b""
            for i in range(frames):
                seen = await read_until(response, b'"i":%d' % i, seen)
                heads[i] = max(int(b.id or 0) for b in events_of(parse_sse(seen.decode())))
                seen_frame[i].set()
            texts.append((0, seen.decode() + await response.text()))

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tasks:
            for index, opening in enumerate(opened):
                leave_at = index % frames if index % 2 else None
                tasks.start_soon(functools.partial(stream, 0, leave_at=leave_at, opening=opening))
            tasks.start_soon(watch)
            for event in opened:
                await event.wait()

            async def feed() -> None:
                for i in range(frames):
                    await frame(gateway, http, run_id, f"f{i}", payload={"i": i})

            tasks.start_soon(feed)
            for i in range(frames):
                await seen_frame[i].wait()
                for _ in range(joiners):  # one turn of the loop apart
                    tasks.start_soon(stream, 0)  # from the start, through the log
                    tasks.start_soon(stream, heads[i])  # at (or behind) the hub's head
                    await anyio.lowlevel.checkpoint()
    whole = await expected(gateway, run_id)
    assert whole[-1][1] == "run.succeeded"
    assert len(texts) == first_wave // 2 + 1 + 2 * joiners * frames
    for cursor, text in texts:
        assert sequence(text) == [e for e in whole if e[0] > cursor], cursor
    await no_hubs(gateway)


async def test_a_stream_behind_the_hubs_window_reads_its_gap_from_the_log(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    """A client that stops reading fills its 4 KiB bound; the hub stops feeding it and,
    once it reads again, it catches up from the log: every event once, in order, like a
    client that kept up."""
    config = node_config.with_changes(
        gateway=gateway_settings(stream_buffer=4096, send_timeout=60.0)
    )
    async with serving(config) as gateway:
        frames = 40
        run_id = await start(gateway, http, input={"frames": frames})
        url = f"{gateway.url}/v1/runs/{run_id}/stream"
        host, port = gateway.node.address or ("", 0)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, port))
        token = gateway.token("alice", "runs:read")
        request = (  # HTTP/1.0: the body is not chunked and ends with the connection
            f"GET /v1/runs/{run_id}/stream HTTP/1.0\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        try:
            await loop.sock_sendall(sock, request.encode())
            assert (await loop.sock_recv(sock, 12)).startswith(b"HTTP/1.")
            async with http.get(url, headers=gateway.auth("alice", "runs:read")) as fast:
                big = "x" * 100_000
                for i in range(frames):
                    await frame(gateway, http, run_id, f"f{i}", payload=big)
                with anyio.fail_after(60):
                    fast_text = await fast.text()
            received = bytearray()
            with anyio.fail_after(60):
                while chunk := await loop.sock_recv(sock, 1 << 16):
                    received += chunk
        finally:
            sock.close()
        _, _, body = bytes(received).partition(b"\r\n\r\n")
        whole = await expected(gateway, run_id)
        assert whole[-1][1] == "run.succeeded"
        assert sequence(fast_text) == whole
        assert sequence(body.decode()) == whole
        await no_hubs(gateway)
        assert gateway.app[HUBS].fell_behind > 0


async def test_the_last_stream_leaving_ends_the_runs_tail(
    quick_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    async with serving(quick_config) as gateway:
        run_id = await start(gateway, http, input={"frames": 3})
        url = f"{gateway.url}/v1/runs/{run_id}/stream"
        auth = gateway.auth("alice", "runs:read")
        first = await http.get(url, headers=auth)
        second = await http.get(url, headers=auth)
        assert first.status == second.status == 200
        hub = await hub_of(gateway, run_id)
        first.close()
        await frame(gateway, http, run_id, "f0", payload={"i": 0})
        await read_until(second, b'"i":0', b"")
        assert not hub.done.is_set()  # one stream is still there
        second.close()
        await no_hubs(gateway)
        with anyio.fail_after(20):
            await hub.done.wait()
        assert hub.scope.cancelled_caught
        assert hub.error is None
        # A new stream of the run starts a new tail, from its cursor.
        async with http.get(url, headers=auth) as third:
            await frame(gateway, http, run_id, "f1", payload={"i": 1})
            await frame(gateway, http, run_id, "f2", payload={"i": 2})
            with anyio.fail_after(30):
                text = await third.text()
        assert sequence(text) == await expected(gateway, run_id)
        await no_hubs(gateway)


async def test_cancelling_one_stream_does_not_disturb_the_others(
    quick_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    async with serving(quick_config) as gateway:
        frames = 4
        run_id = await start(gateway, http, input={"frames": frames})
        url = f"{gateway.url}/v1/runs/{run_id}/stream"
        auth = gateway.auth("alice", "runs:read")
        texts: dict[int, str] = {}
        reached = [anyio.Event() for _ in range(3)]

        async def client(index: int) -> None:
            async with http.get(url, headers=auth) as response:
                seen = await read_until(response, b'"i":1', b"")
                reached[index].set()
                texts[index] = seen.decode() + await response.text()

        async with anyio.create_task_group() as tasks:
            scopes = []
            for index in range(3):
                scope = anyio.CancelScope()
                scopes.append(scope)

                async def run(index: int = index, scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await client(index)

                tasks.start_soon(run)
            await hub_of(gateway, run_id)
            for i in range(2):
                await frame(gateway, http, run_id, f"f{i}", payload={"i": i})
            with anyio.fail_after(20):
                for event in reached:
                    await event.wait()
            scopes[0].cancel()  # the client goes away mid-run
            # Its stream ends at its next write (a heartbeat within 0.2 s) and leaves.
            hub = await hub_of(gateway, run_id)
            with anyio.fail_after(20):
                await gateway.app[HUBS].wait_for(lambda: len(hub.subscribers) <= 2)
            for i in range(2, frames):
                await frame(gateway, http, run_id, f"f{i}", payload={"i": i})
        whole = await expected(gateway, run_id)
        assert whole[-1][1] == "run.succeeded"
        assert 0 not in texts
        assert sequence(texts[1]) == sequence(texts[2]) == whole
        await no_hubs(gateway)


def hub_tasks() -> list[asyncio.Task[object]]:
    """The hubs' tasks still running in this loop (named ``hub-<run id>``)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("hub-") and not t.done()]


async def test_stopping_the_gateway_ends_every_hubs_task(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    async with serving(node_config) as gateway:
        run_id = await start(gateway, http, input={"frames": 1})
        response = await http.get(
            f"{gateway.url}/v1/runs/{run_id}/stream", headers=gateway.auth("alice", "runs:read")
        )
        assert response.status == 200
        hub = await hub_of(gateway, run_id)
        assert [t.get_name() for t in hub_tasks()] == [f"hub-{run_id}"]
    # The node has stopped with the stream still open: its hub's task was cancelled and
    # awaited while the gateway stopped, not left behind.
    assert hub.done.is_set()
    assert hub.error is None
    assert hub_tasks() == []
    with anyio.fail_after(10):
        assert (await response.read()).startswith(b"retry: ")  # then a clean end
    response.release()


async def test_leaving_the_hubs_task_group_cancels_a_hub_still_joined(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """The hubs' task group is the owner of last resort: a hub that still has a
    subscriber when the group closes is cancelled and awaited all the same, and its
    watch of the run released."""
    store = gateway.node.store
    run, _ = await store.create_run(owner="alice", session_id="s-1", run_type="echo")
    run_id = run.run_id
    # Executed elsewhere: no run actor of this node registers a waiter meanwhile.
    lease = await store.acquire_lease(run_id, owner_node="elsewhere:1", ttl=600)
    listener = gateway.node.listener
    assert listener.statistics().waiters == 0
    hubs = Hubs(gateway.app[READER], lambda: listener, 0.2, gateway.metrics)
    # The hub writes only to a parked stream (``direct``): never to this subscriber.
    subscriber = Subscriber(0, 4096, cast("SseStream", None))
    with pytest.raises(HubsClosed), hubs.subscribe(run_id, subscriber):
        pass  # no task group yet
    with contextlib.ExitStack() as joined:  # left after the group, as a late stream would
        async with hubs.running():
            hub = joined.enter_context(hubs.subscribe(run_id, subscriber))
            assert listener.statistics().waiters == 1
            await store.append_event(run_id, lease.epoch, "note", {"i": 0})
            with anyio.fail_after(20):
                await subscriber.wake.wait()  # the hub's task read the run's new page
            assert subscriber.pending
            assert [t.get_name() for t in hub_tasks()] == [f"hub-{run_id}"]
        assert hub.done.is_set()
        assert not hub.scope.cancelled_caught  # the group's cancellation, not the hub's
        assert hub.error is None
        assert hub_tasks() == []
        assert listener.statistics().waiters == 0
    with pytest.raises(HubsClosed), hubs.subscribe(run_id, subscriber):
        pass


async def test_a_failing_hub_ends_its_streams_and_the_clients_resume(
    node_config: NodeConfig, http: aiohttp.ClientSession
) -> None:
    """The database holds the log's table past the statement timeout: the hub's read
    fails, its error ends both streams of the run (cleanly: the clients resume by
    cursor), and a new stream starts a new hub."""
    config = node_config.with_changes(
        statement_timeout=2.0, gateway=gateway_settings(poll_interval=0.2)
    )
    async with serving(config) as gateway:
        run_id = await start(gateway, http, input={"frames": 1})
        url = f"{gateway.url}/v1/runs/{run_id}/stream"
        auth = gateway.auth("alice", "runs:read")
        async with http.get(url, headers=auth) as first, http.get(url, headers=auth) as second:
            assert first.status == second.status == 200
            hub = await hub_of(gateway, run_id)
            hubs = gateway.app[HUBS]
            with anyio.fail_after(20):
                await hubs.wait_for(lambda: len(hub.subscribers) == 2)
            async with await psycopg.AsyncConnection.connect(gateway.node.dsn) as lock:
                await lock.execute("LOCK TABLE run_events IN ACCESS EXCLUSIVE MODE")
                with anyio.fail_after(30):
                    texts = [await first.text(), await second.text()]
                    await hub.done.wait()
        assert isinstance(hub.error, StoreError)
        assert not hub.scope.cancelled_caught
        for text in texts:
            assert text.startswith("retry: ")
            assert "run.succeeded" not in text
        await no_hubs(gateway)
        async with http.get(url, headers=auth) as third:
            assert third.status == 200
            await frame(gateway, http, run_id, "f0", payload={"i": 0})
            with anyio.fail_after(30):
                text = await third.text()
        assert sequence(text) == await expected(gateway, run_id)
        assert gateway.app[HUBS].get(uuid.UUID(run_id)) is None
