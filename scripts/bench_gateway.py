"""Benchmark the gateway's SSE streams against a raw aiohttp streaming endpoint, one run.

Two servers, each measured by the same client code in this process, one after the other:

* **gateway** — a node process, run as ``warden node`` runs it (``runtime.node.serve``:
  a real ``Node`` on a scratch database, serving the gateway application on loopback,
  stopped by SIGTERM): an ``echo`` run; a frame appended with
  ``POST /v1/runs/{id}/frames`` becomes an ``echo`` event in the log, which every client
  of ``GET /v1/runs/{id}/stream`` receives.
* **raw** — the baseline, a server process with one plain aiohttp route per direction
  and no database: ``POST /raw/{channel}/frames`` turns the frame into the same event
  JSON at once, encodes the SSE frame once and puts it on every subscriber's bounded
  queue; each ``GET /raw/{channel}/stream`` writes its queue to its socket.

The servers run in their own process and the clients in this one, so on a 2-core
machine the server side and the client side each get a core, as they would across
machines (clients in the server's process would bill their parsing to the server).

For ``--clients`` 1 and then N (default 1,000) concurrent stream clients on one run:

a. ``append_to_sse_p50_ms_<n>`` / ``_p99_ms_<n>`` — ``--samples`` frames appended one at a
   time, each after every client received the previous one: from the ``POST`` call to
   each client's receipt of the event (all clients' receipts pooled). Baseline: the raw
   endpoint's, measured the same way.
b. ``fanout_eps_<n>`` (N clients only) — ``--events`` frames appended by 8 concurrent
   appenders as fast as they are answered: events delivered to all clients per second,
   from the first ``POST`` to the last client's receipt of the last event. Baseline: the
   raw endpoint's delivered events per second.

Every client reads with the same code (aiohttp, the client's bounded SSE decoder,
orjson); a client disconnected by a server fails the run rather than skew it. While it
measures, the clients' process holds its garbage collector off (after a full collection,
as ``timeit`` does), so that the load generator's own pauses are billed to neither
server.

Usage::

    python scripts/bench_gateway.py [--dsn DSN] [--json PATH] [--clients 1000]
        [--samples 50] [--events 200] [--seed 1]

The DSN comes from ``--dsn``, else ``WARDEN_DSN``, else the embedded server. The node
works in a scratch database the script creates (and drops).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import anyio
import jwt
import orjson
import yarl
from aiohttp import web

from bench.quiet import quiet_logs
from bench.report import Row, markdown_table, write_json
from bench.stats import percentile
from transport._sse_decoder import SSEDecoder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

SCRIPT: Final = Path(__file__).resolve()
#: Concurrent appenders in (b).
APPENDERS: Final = 8
#: Streams opened at once while connecting the clients.
CONNECTING: Final = 64
#: Seconds any one phase may take before the benchmark gives up.
PHASE_TIMEOUT: Final = 300.0
#: A raw subscriber's queue (frames); a subscriber that falls this far behind is dropped.
RAW_QUEUE: Final = 4096
KEY_ID: Final = "bench"
SUBJECT: Final = "bench"


# -- the raw baseline server ----------------------------------------------------------------


@dataclass
class _Channel:
    seq: int = 0
    subscribers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    dropped: int = 0


def raw_app() -> web.Application:
    """The baseline: POST a frame, every subscriber of the channel gets it as SSE."""
    channels: dict[str, _Channel] = {}
    run_id = str(uuid.uuid4())

    async def frames(request: web.Request) -> web.Response:
        channel = channels.setdefault(request.match_info["channel"], _Channel())
        body = orjson.loads(await request.read())
        channel.seq += 1
        terminal = body["kind"] == "end"
        kind = "run.succeeded" if terminal else "echo"
        event = {
            "run_id": run_id,
            "seq": channel.seq,
            "type": kind,
            "payload": {"result": None}
            if terminal
            else {"frame_id": body["frame_id"], "kind": body["kind"], "payload": body["payload"]},
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        data = orjson.dumps(event)
        block = b"id: %d\nevent: %s\ndata: %s\n\n" % (channel.seq, kind.encode(), data)
        for queue in list(channel.subscribers):
            try:
                queue.put_nowait(block)
            except asyncio.QueueFull:
                channel.dropped += 1
                channel.subscribers.discard(queue)
        return web.json_response({"seq": channel.seq, "created": True}, status=201)

    async def stream(request: web.Request) -> web.StreamResponse:
        channel = channels.setdefault(request.match_info["channel"], _Channel())
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=RAW_QUEUE)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        channel.subscribers.add(queue)
        try:
            await response.write(b"retry: 1000\n\n")
            while True:
                block = await queue.get()
                if block is None:
                    break
                await response.write(block)
                if b"event: run.succeeded\n" in block:
                    break
        finally:
            channel.subscribers.discard(queue)
        return response

    app = web.Application()
    app.router.add_post("/raw/{channel}/frames", frames)
    app.router.add_get("/raw/{channel}/stream", stream)
    return app


async def serve_raw() -> None:
    runner = web.AppRunner(raw_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await _announce_and_wait({"port": port})
    finally:
        await runner.cleanup()


# -- the gateway server (a node) ------------------------------------------------------------


async def serve_gateway(dsn: str, secret: str, clients: int) -> int:
    """``warden node``'s own loop (``serve``): it prints its ready line with the port,
    and drains on SIGTERM."""
    from pydantic import SecretStr

    from runtime.config import GatewayConfig, NodeConfig
    from runtime.node import serve
    from runtime.store import StoreConfig
    from transport import gateway_factory

    store = StoreConfig(dsn=SecretStr(dsn), pool_min_size=2, pool_max_size=20)
    gateway = GatewayConfig(
        keys={KEY_ID: SecretStr(secret)},
        # A client is never left behind on purpose here: a disconnection would skew
        # the figures, so the send timeout is generous (a dropped client fails the run).
        send_timeout=120.0,
    )
    config = NodeConfig(
        store=store,
        node_name="bench-gateway",
        host="127.0.0.1",
        port=0,
        max_active_runs=max(16, clients),
        gateway=gateway,
    )
    return await serve(config, gateway=gateway_factory)


async def _announce_and_wait(ready: dict[str, Any]) -> None:
    """Print ``ready`` for the parent, then serve until the parent closes stdin."""
    print(json.dumps(ready), flush=True)
    await anyio.to_thread.run_sync(sys.stdin.read)


# -- the clients (this process) -------------------------------------------------------------


class Tally:
    """Receipts by frame index, shared by every client of one measurement."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.sent: dict[int, float] = {}
        self.received: dict[int, int] = {}
        self.latencies: list[float] = []
        self.complete: dict[int, asyncio.Event] = {}
        self.delivered = 0
        self.last_receipt = 0.0
        self.connected = 0
        self.all_connected = asyncio.Event()

    def connect(self) -> None:
        self.connected += 1
        if self.connected == self.clients:
            self.all_connected.set()

    def expect(self, index: int) -> asyncio.Event:
        return self.complete.setdefault(index, asyncio.Event())

    def receive(self, index: int, at: float) -> None:
        sent = self.sent.get(index)
        if sent is not None:
            self.latencies.append((at - sent) * 1000)
        count = self.received.get(index, 0) + 1
        self.received[index] = count
        self.delivered += 1
        self.last_receipt = at
        if count == self.clients:
            self.expect(index).set()


@dataclass(frozen=True, slots=True)
class Target:
    """Where one measurement appends frames and opens streams, with which headers."""

    name: str
    frames_url: str
    stream_url: str
    append_headers: Callable[[], dict[str, str]]
    stream_headers: Callable[[], dict[str, str]]


class _ChunkedDecoder:
    """``Transfer-Encoding: chunked`` bodies, incrementally."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._left = 0  # bytes of the current chunk still to come; -1: its CRLF
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        self._buffer += data
        while self._buffer and not self.ended:
            if self._left > 0:
                take = min(self._left, len(self._buffer))
                out += self._buffer[:take]
                del self._buffer[:take]
                self._left -= take
                if self._left == 0:
                    self._left = -1
            elif self._left < 0:
                if len(self._buffer) < 2:
                    break
                del self._buffer[:2]
                self._left = 0
            else:
                line_end = self._buffer.find(b"\r\n")
                if line_end < 0:
                    if len(self._buffer) > 64:
                        raise RuntimeError("a chunk size line is too long")
                    break
                size = int(bytes(self._buffer[:line_end]).split(b";")[0], 16)
                del self._buffer[: line_end + 2]
                self.ended = size == 0
                self._left = size
        return bytes(out)


class StreamClient(asyncio.Protocol):
    """One stream client, on asyncio's protocol layer.

    A thousand clients in one process must cost that process little, or the figures
    measure the clients: no task and no stream reader per client; each socket's bytes
    go straight through an HTTP/1.1 response parse (status line, chunked body) and the
    client library's SSE decoder (``transport._sse_decoder``), the same for both servers.
    """

    def __init__(self, request: bytes, tally: Tally, name: str) -> None:
        self._request = request
        self._tally = tally
        self._name = name
        self._head = bytearray()
        self._body: _ChunkedDecoder | None = None
        self._sse = SSEDecoder()
        self._transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        at = time.perf_counter()
        if self._body is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._head[:end]).decode("latin-1")
            if head.split(" ", 2)[1] != "200" or "chunked" not in head.lower():
                self._fail(f"{self._name} stream answered {head.splitlines()[0]!r}")
                return
            data = bytes(self._head[end + 4 :])
            self._body = _ChunkedDecoder()
            self._tally.connect()
        for message in self._sse.feed(self._body.feed(data)):
            if message.data is None:
                continue
            event = orjson.loads(message.data)
            if event["type"] == "echo":
                self._tally.receive(int(event["payload"]["frame_id"]), at)
            elif event["type"] == "run.succeeded":
                if not self.done.done():
                    self.done.set_result(None)
                self.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"a {self._name} stream ended before the terminal event ({exc})")

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(reason))
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_streams(target: Target, tally: Tally, clients: int) -> list[StreamClient]:
    """Open ``clients`` streams, ``CONNECTING`` at a time; return once all answered."""
    url = yarl.URL(target.stream_url)
    host, port = url.host, url.port
    assert host is not None
    assert port is not None
    loop = asyncio.get_running_loop()
    opened: list[StreamClient] = []

    def request() -> bytes:
        lines = [
            f"GET {url.raw_path_qs} HTTP/1.1",
            f"Host: {host}:{port}",
            "Accept: text/event-stream",
            *(f"{name}: {value}" for name, value in target.stream_headers().items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def connect(count: int) -> None:
        for _ in range(count):
            _, client = await loop.create_connection(
                lambda: StreamClient(request(), tally, target.name), host, port
            )
            opened.append(client)

    try:
        async with anyio.create_task_group() as tg:
            for index in range(min(CONNECTING, clients)):
                tg.start_soon(connect, clients // CONNECTING + (index < clients % CONNECTING))
        with anyio.fail_after(PHASE_TIMEOUT):
            await tally.all_connected.wait()
    except BaseException:
        for client in opened:
            client.close()
        raise
    return opened


async def append(session: aiohttp.ClientSession, target: Target, index: int, kind: str) -> None:
    body = orjson.dumps({"frame_id": str(index), "kind": kind, "payload": {"i": index}})
    headers = {**target.append_headers(), "Content-Type": "application/json"}
    async with session.post(target.frames_url, data=body, headers=headers) as response:
        if response.status not in (200, 201):
            text = await response.text()
            raise RuntimeError(f"{target.name} append answered {response.status}: {text[:200]}")
        await response.read()


@contextlib.contextmanager
def collector_held_off() -> Iterator[None]:
    """This process's garbage collector off for the block, after a full collection (as
    ``timeit`` times): the clients' own pauses would be billed to the server measured."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def measure(
    target: Target, clients: int, samples: int, events: int
) -> tuple[list[float], float | None]:
    """Latencies (ms) of ``samples`` paced appends to ``clients`` clients, and the
    delivered events/s of ``events`` appends as fast as possible (``None`` when
    ``events`` is 0)."""
    tally = Tally(clients)
    connector = aiohttp.TCPConnector(limit=APPENDERS + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        streams = await open_streams(target, tally, clients)
        try:
            with anyio.fail_after(PHASE_TIMEOUT), collector_held_off():
                for index in range(samples):
                    done = tally.expect(index)
                    tally.sent[index] = time.perf_counter()
                    await append(session, target, index, "message")
                    await done.wait()
            latencies = list(tally.latencies)
            with collector_held_off():
                eps = await fan_out(session, target, tally, samples, events) if events else None
            await append(session, target, -1, "end")
            with anyio.fail_after(PHASE_TIMEOUT):
                await asyncio.gather(*(stream.done for stream in streams))
        finally:
            for stream in streams:
                stream.close()
    return latencies, eps


async def fan_out(
    session: aiohttp.ClientSession, target: Target, tally: Tally, first: int, events: int
) -> float:
    """Append ``events`` frames from ``APPENDERS`` appenders at once; events delivered
    to all clients per second, until the last client received the last event."""
    indexes = iter(range(first, first + events))

    async def appender() -> None:
        for index in indexes:
            await append(session, target, index, "message")

    started = time.perf_counter()
    with anyio.fail_after(PHASE_TIMEOUT):
        async with anyio.create_task_group() as tg:
            for _ in range(APPENDERS):
                tg.start_soon(appender)
        for index in range(first, first + events):
            await tally.expect(index).wait()
    return events * tally.clients / (tally.last_receipt - started)


# -- orchestration --------------------------------------------------------------------------


_READY: Final = re.compile(r" ready: gateway http://[^ ,]+:(\d+)")


def _port_of(line: str) -> int:
    """The port a server announced: the raw server's JSON, or ``warden node``'s ready
    line."""
    if line.startswith("{"):
        return int(json.loads(line)["port"])
    ready = _READY.search(line)
    if ready is None:
        raise RuntimeError(f"not a ready line: {line!r}")
    return int(ready.group(1))


@contextlib.asynccontextmanager
async def server(arguments: list[str], env: dict[str, str]) -> AsyncIterator[tuple[int, int]]:
    """Start this script as a server process; yield its port and pid; stop it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *arguments,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with anyio.fail_after(120):
            line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server {arguments} exited before it was ready")
        yield _port_of(line.decode()), process.pid
    finally:
        process.stdin.close()  # the raw server stops; the node drains on SIGTERM
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(60, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def profiled(pid: int, path: str | None) -> AsyncIterator[None]:
    """Sample the process ``pid`` with py-spy while the block runs (when ``path`` is
    given), write its collapsed stacks to ``path`` and print the top entries."""
    if path is None:
        yield
        return
    spy_path = py_spy()
    assert spy_path is not None  # checked with the arguments
    command = [spy_path, "record", "--pid", str(pid), "--format", "raw", "--output", path]
    spy = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        with anyio.move_on_after(60, shield=True):
            await spy.wait()
        if spy.returncode is None:
            spy.kill()
            await spy.wait()
    print(top_entries(Path(path)), file=sys.stderr)


def py_spy() -> str | None:
    """The py-spy executable: next to this interpreter (a venv not activated), else on
    ``PATH``."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:12)`` → ``function (file.py)``."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})"


def top_entries(path: Path, count: int = 25) -> str:
    """The functions most often on the stack (inclusive) and on top of it (self) in
    py-spy's collapsed stacks, as percentages of the samples."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        if not stack:
            continue
        samples = int(weight)
        total += samples
        frames = [_frame_name(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    lines = [f"py-spy: {total} samples of the gateway process"]
    for title, table in (("inclusive", inclusive), ("self", own)):
        lines.append(f"top {count} by {title}:")
        ranked = sorted(table.items(), key=lambda item: -item[1])[:count]
        lines += [f"  {100 * n / max(1, total):5.1f}%  {frame}" for frame, n in ranked]
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def scratch_database(dsn: str | None) -> AsyncIterator[str]:
    """A migrated scratch database (dropped afterwards) on the DSN's server."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from runtime.store import EmbeddedPostgres, StoreConfig, apply_migrations

    async with contextlib.AsyncExitStack() as stack:
        if dsn is None:
            embedded = await stack.enter_async_context(EmbeddedPostgres.for_config(StoreConfig()))
            dsn = embedded.dsn
        name = f"gw_client_bench_{uuid.uuid4().hex[:8]}"
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            scratch = make_conninfo(dsn, dbname=name)
            await apply_migrations(scratch)
            yield scratch
        finally:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _token_source(secret: str, scopes: str) -> Callable[[], dict[str, str]]:
    def headers() -> dict[str, str]:
        now = int(time.time())
        claims = {
            "sub": SUBJECT,
            "scope": scopes,
            "iat": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": KEY_ID})
        return {"Authorization": f"Bearer {token}"}

    return headers


async def _start_echo_run(port: int, headers: Callable[[], dict[str, str]]) -> str:
    body = orjson.dumps({"run_type": "echo", "input": None})
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/v1/runs",
            data=body,
            headers={**headers(), "Content-Type": "application/json"},
        ) as response,
    ):
        if response.status != 201:
            raise RuntimeError(f"start_run answered {response.status}: {await response.text()}")
        return str((await response.json())["run"]["run_id"])


async def run(args: argparse.Namespace) -> list[Row]:
    seed: int = args.seed
    print(f"seed: {seed}", file=sys.stderr)
    secret = secrets.token_urlsafe(48)
    sizes = sorted({1, args.clients})
    raw: dict[int, tuple[list[float], float | None]] = {}
    gateway: dict[int, tuple[list[float], float | None]] = {}

    async with server(["--serve", "raw"], {}) as (port, _):
        for clients in sizes:
            channel = f"c{clients}-{random.Random(seed).randrange(1 << 30)}"
            target = Target(
                "raw",
                f"http://127.0.0.1:{port}/raw/{channel}/frames",
                f"http://127.0.0.1:{port}/raw/{channel}/stream",
                dict,
                dict,
            )
            events = args.events if clients == args.clients else 0
            raw[clients] = await measure(target, clients, args.samples, events)

    async with scratch_database(args.dsn) as dsn:
        env = {"BENCH_GATEWAY_DSN": dsn, "BENCH_GATEWAY_SECRET": secret}
        serve = ["--serve", "gateway", "--clients", str(args.clients)]
        async with server(serve, env) as (port, pid):
            writer = _token_source(secret, "runs:write runs:read")
            reader = _token_source(secret, "runs:read")
            for clients in sizes:
                run_id = await _start_echo_run(port, writer)
                target = Target(
                    "gateway",
                    f"http://127.0.0.1:{port}/v1/runs/{run_id}/frames",
                    f"http://127.0.0.1:{port}/v1/runs/{run_id}/stream",
                    writer,
                    reader,
                )
                events = args.events if clients == args.clients else 0
                profiling = args.profile and clients == args.clients
                async with profiled(pid, args.profile if profiling else None):
                    gateway[clients] = await measure(target, clients, args.samples, events)

    def p(samples: list[float], pct: float) -> float:
        return percentile(samples, pct)

    n = args.clients
    raw_eps = raw[n][1]
    gateway_eps = gateway[n][1]
    assert raw_eps is not None
    assert gateway_eps is not None
    return [
        Row(f"fanout_eps_{n}", gateway_eps, "events/s", raw_eps),
        Row("append_to_sse_p50_ms_1", p(gateway[1][0], 50), "ms", p(raw[1][0], 50)),
        Row("append_to_sse_p99_ms_1", p(gateway[1][0], 99), "ms", p(raw[1][0], 99)),
        Row(f"append_to_sse_p50_ms_{n}", p(gateway[n][0], 50), "ms", p(raw[n][0], 50)),
        Row(f"append_to_sse_p99_ms_{n}", p(gateway[n][0], 99), "ms", p(raw[n][0], 99)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("WARDEN_DSN"), help="PostgreSQL DSN")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    parser.add_argument("--clients", type=int, default=1000, help="concurrent stream clients")
    parser.add_argument("--samples", type=int, default=50, help="paced appends in (a)")
    parser.add_argument("--events", type=int, default=200, help="appends fanned out in (b)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the channel names")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="sample the node with py-spy during the N-client phase (collapsed stacks here)",
    )
    parser.add_argument("--serve", choices=("raw", "gateway"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_logs()
    if args.serve == "raw":
        anyio.run(serve_raw)
        return 0
    if args.serve == "gateway":
        dsn = os.environ["BENCH_GATEWAY_DSN"]
        secret = os.environ["BENCH_GATEWAY_SECRET"]
        return anyio.run(serve_gateway, dsn, secret, args.clients)
    if args.clients < 1 or args.samples < 1 or args.events < 1:
        parser.error("--clients, --samples and --events must be >= 1")
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy: pip install py-spy")
    rows = asyncio.run(run(args))
    print(markdown_table(rows))
    if args.json:
        write_json(Path(args.json), rows, digits=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
