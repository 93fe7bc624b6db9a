"""``RuntimeClient`` against a scripted aiohttp server on loopback: the client's own
rules (dedupe, gaps, budgets, retries, timeouts) at exact, seeded points.

The server here is a real aiohttp server on a real socket that plays the gateway's wire
format from a script, so each rule is hit deterministically; ``test_client.py`` runs the
same client against the real gateway, node and database.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from transport import client
from transport._backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.anyio

RUN = uuid.UUID("0f8c7d7e-3b7a-4a51-9d35-6a1e2b4c5d6f")
NOW = datetime(2026, 12, 7, tzinfo=UTC).isoformat()
LAST = 20


def event(seq: int) -> dict[str, object]:
    kind = "run.succeeded" if seq == LAST else "echo"
    return {"run_id": str(RUN), "seq": seq, "type": kind, "payload": {"n": seq}, "created_at": NOW}


def frame(seq: int, *, retry: int | None = None) -> bytes:
    head = f"retry: {retry}\n" if retry is not None else ""
    data = orjson.dumps(event(seq)).decode()
    return f"{head}id: {seq}\nevent: {event(seq)['type']}\ndata: {data}\n\n".encode()


def run_json() -> dict[str, object]:
    return {
        "run_id": str(RUN),
        "owner": "alice",
        "session_id": "s",
        "run_type": "echo",
        "status": "running",
        "last_seq": 3,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": None,
        "cancel_requested_at": None,
    }


def fast(
    base: str, *, timeout: float = 5.0, retries: int = 3, reconnect_budget: int = 10
) -> client.RuntimeClient:
    """A client with millisecond backoff (seeded), so reconnections cost no real time."""
    return client.RuntimeClient(
        base,
        backoff=Backoff(initial=0.001, cap=0.01, rng=random.Random(5)),
        timeout=timeout,
        stream_read_timeout=5.0,
        retries=retries,
        reconnect_budget=reconnect_budget,
    )


async def serve(routes: list[web.RouteDef]) -> TestServer:
    app = web.Application()
    app.add_routes(routes)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[list[web.RouteDef]], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(routes: list[web.RouteDef]) -> str:
        server = await serve(routes)
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


async def test_cuts_at_seeded_points_yield_every_event_once_and_in_order(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    rng = random.Random(10)
    cuts = sorted(rng.sample(range(2, LAST), 5))
    seen_ids: list[str | None] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        seen_ids.append(last)
        start = int(last) + 1 if last else 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        # Re-send up to two events the client already has: it must drop them.
        for seq in range(max(1, start - 2), start):
            await response.write(frame(seq))
        for seq in range(start, LAST + 1):
            await response.write(frame(seq, retry=3) if seq == start else frame(seq))
            if seq in cuts and len(seen_ids) <= len(cuts):
                # Cut mid-frame, as a dying proxy would: half of the next one is sent.
                await response.write(frame(seq + 1)[:17])
                assert request.transport is not None
                request.transport.abort()
                return response
        return response

    base = await scripted([web.get(f"/v1/runs/{RUN}/stream", stream)])
    async with fast(base) as runtime:
        async with runtime.stream(RUN) as events:
            seqs = [item.seq async for item in events]
        assert seqs == list(range(1, LAST + 1))
        assert events.reconnects == 5
        assert events.duplicates == sum(min(2, cut) for cut in cuts)
        assert events.retry == 0.003
        assert seen_ids == [None, *(str(cut) for cut in cuts)]


async def test_a_gap_resumes_from_the_cursor_instead_of_skipping(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    connections: list[str | None] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        connections.append(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(connections) == 1:
            await response.write(frame(1) + frame(2) + frame(4))  # 3 is missing
            return response
        for seq in range(3, LAST + 1):
            await response.write(frame(seq))
        return response

    base = await scripted([web.get(f"/v1/runs/{RUN}/stream", stream)])
    async with fast(base) as runtime:
        seqs = [item.seq async for item in runtime.stream(RUN)]
    assert seqs == list(range(1, LAST + 1))
    assert connections == [None, "2"]


async def test_a_cursor_is_sent_and_204_ends_the_stream(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.headers["Last-Event-ID"] == str(LAST)
        return web.Response(status=204)

    base = await scripted([web.get(f"/v1/runs/{RUN}/stream", stream)])
    async with fast(base) as runtime:
        assert [item async for item in runtime.stream(RUN, cursor=LAST)] == []


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (410, "stale_cursor", client.StaleCursor),
        (404, "run_not_found", client.RunNotFound),
        (400, "cursor_conflict", client.InvalidCursor),
        (403, "forbidden", client.Forbidden),
    ],
)
async def test_answers_a_reconnection_cannot_mend_raise_typed(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
    status: int,
    code: str,
    cls: type[client.ClientError],
) -> None:
    calls = 0

    async def stream(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        body = orjson.dumps({"error": {"code": code, "message": "refused"}})
        return web.Response(status=status, body=body, content_type="application/json")

    base = await scripted([web.get(f"/v1/runs/{RUN}/stream", stream)])
    async with fast(base) as runtime:
        with pytest.raises(cls) as raised:
            await anext(runtime.stream(RUN, cursor=2))
    assert (raised.value.status, raised.value.code, raised.value.run_id) == (status, code, RUN)
    assert calls == 1


async def test_the_reconnect_budget_bounds_a_stream_that_never_progresses(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    calls = 0

    async def stream(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(frame(1))
            return response
        if calls % 2:
            return web.Response(status=503, body=b'{"error": {"code": "unavailable"}}')
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": hb\n\n")
        return response

    base = await scripted([web.get(f"/v1/runs/{RUN}/stream", stream)])
    async with fast(base, reconnect_budget=4) as runtime:
        events = runtime.stream(RUN)
        with pytest.raises(client.StreamInterrupted) as raised:
            async for _ in events:
                pass
    assert raised.value.cursor == 1
    assert raised.value.reconnects == 4
    assert calls == 1 + 4  # the one that delivered, then the budget's four in a row


async def test_idempotent_calls_retry_within_their_budget_and_others_do_not(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    counts = {"get": 0, "post": 0}

    async def snapshot(request: web.Request) -> web.StreamResponse:
        counts["get"] += 1
        if counts["get"] < 3:
            assert request.transport is not None
            request.transport.abort()  # the connection is cut before any answer
            return web.Response()
        return web.json_response({"run": run_json(), "lease": None, "terminal": None})

    async def start(request: web.Request) -> web.StreamResponse:
        counts["post"] += 1
        return web.Response(status=503, body=b'{"error": {"code": "unavailable", "message": "db"}}')

    base = await scripted([web.get(f"/v1/runs/{RUN}", snapshot), web.post("/v1/runs", start)])
    async with fast(base, retries=2) as runtime:
        got = await runtime.snapshot(RUN)
        assert got.run.run_id == RUN
        assert got.retention_floor == 0
        assert counts["get"] == 3
        with pytest.raises(client.Unavailable):
            await runtime.start_run("echo")
        assert counts["post"] == 1
        with pytest.raises(client.Unavailable):
            await runtime.start_run("echo", idempotency_key="k1")
        assert counts["post"] == 1 + 3


async def test_a_call_past_its_timeout_raises_request_timeout(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    release = asyncio.Event()

    async def snapshot(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    base = await scripted([web.get(f"/v1/runs/{RUN}", snapshot)])
    try:
        async with fast(base, timeout=0.2, retries=0) as runtime:
            with pytest.raises(client.RequestTimeout) as raised:
                await runtime.snapshot(RUN)
        assert raised.value.run_id == RUN
    finally:
        release.set()


async def test_an_answer_of_the_wrong_shape_is_a_server_error(
    scripted: Callable[[list[web.RouteDef]], Awaitable[str]],
) -> None:
    async def snapshot(request: web.Request) -> web.StreamResponse:
        return web.json_response({"run": {"run_id": "nope"}})

    base = await scripted([web.get(f"/v1/runs/{RUN}", snapshot)])
    async with fast(base) as runtime:
        with pytest.raises(client.ServerError, match="cannot read as Snapshot"):
            await runtime.snapshot(RUN)


async def test_a_malformed_run_id_is_refused_before_any_request() -> None:
    async with client.RuntimeClient("http://127.0.0.1:9") as runtime:
        with pytest.raises(client.RunNotFound, match="not a run id"):
            await runtime.snapshot("not-a-uuid")


async def test_a_client_is_single_use() -> None:
    runtime = client.RuntimeClient("http://127.0.0.1:9")
    async with runtime:
        pass
    with pytest.raises(RuntimeError, match="single-use"):
        await runtime.__aenter__()
