"""``GET /v1/runs/{run_id}/stream``: a run's events as SSE, read from the log (DESIGN §10).

Any node serves any run: the stream reads the run's log after its cursor, writes each
event (``id:`` = seq), then takes the run's next pages from the run's hub on this node
(:mod:`transport._hub`: one tail of the log for all the run's streams, woken by the
node's LISTEN connection or by ``poll_interval`` at most, so a lost NOTIFY delays an
event and never loses it). It ends after the terminal event.

The cursor is ``Last-Event-ID`` or ``?cursor=`` (0 without either). When both are
given the header wins if it is at or past the cursor — a browser reconnects to the URL
it opened, ``?cursor=`` included, adding the header — and a header below the cursor is
400 ``cursor_conflict``. Before any byte is sent: 404 for an unknown run, 410
``stale_cursor`` below the run's retention floor, 204 when the run has finished and
the cursor is at or past its last seq (a browser ``EventSource`` stops reconnecting),
and 503 ``unavailable`` when the stream cannot take its place in the run's hub (the
node's LISTEN connection is at ``listener_max_waiters``, or the gateway is stopping):
a stream that would end at once never opens.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

import anyio
import structlog
from aiohttp import web

from runtime.node import GATEWAY_LIFESPANS
from runtime.node.errors import NodeError
from runtime.store import StoreError
from transport._auth import authorize, check_owner
from transport._errors import ApiError, stale_cursor
from transport._hub import Hub, Hubs, HubsClosed, Subscriber
from transport._observe import TRACEPARENT, bind, trace_of
from transport._sse import SseStream, StreamGone
from transport._state import CONFIG, METRICS, NODE, READER, RNG
from transport._validation import parse_cursor, parse_run_id

if TYPE_CHECKING:
    from runtime.config import GatewayConfig
    from transport._sse import EncodedEvent, LogReader

__all__ = ["HUBS", "STREAMS", "add_stream_route", "resolve_cursor"]

_logger = structlog.get_logger("transport.stream")

LAST_EVENT_ID: Final = "Last-Event-ID"

STREAMS = web.AppKey("streams", set[anyio.CancelScope])
"""The cancel scopes of the streams open now; the gateway's shutdown ends them."""
HUBS = web.AppKey("hubs", Hubs)
"""The node's hubs: one tail of the log per run with open streams."""


def resolve_cursor(request: web.Request) -> int:
    """The stream's start: ``Last-Event-ID`` or ``?cursor=`` by the rules above."""
    header = request.headers.get(LAST_EVENT_ID)
    query = request.query.getall("cursor", [])
    if len(query) > 1:
        raise ApiError(400, "invalid_cursor", "?cursor= is given more than once")
    cursor = parse_cursor(query[0], "?cursor=") if query else None
    last = parse_cursor(header, LAST_EVENT_ID) if header is not None else None
    if last is not None and cursor is not None and last < cursor:
        raise ApiError(
            400,
            "cursor_conflict",
            f"{LAST_EVENT_ID} {last} is below ?cursor={cursor}: reconnect from the cursor or"
            " past it",
        )
    if last is not None:
        return last
    return cursor or 0


_ALLOWED_QUERY: Final = frozenset({"cursor", "token"})


async def stream_run(request: web.Request) -> web.StreamResponse:
    principal = await authorize(request, "runs:read", query_token=True)
    run_id = parse_run_id(request)
    bind(run_id=run_id)
    unknown = set(request.query) - _ALLOWED_QUERY
    if unknown:
        raise ApiError(
            400, "invalid_request", f"unknown query parameters: {', '.join(sorted(unknown))}"
        )
    cursor = resolve_cursor(request)
    app = request.app
    node = app[NODE]
    run = await node.store.get_run(run_id)
    check_owner(principal, run)
    bind(session_id=run.session_id)
    floor = run.retention_floor
    if cursor < floor:
        raise stale_cursor(cursor, floor)
    if run.terminal and cursor >= run.last_seq:
        return web.Response(status=204)
    reader = app[READER]
    config = app[CONFIG]
    _, traceparent = trace_of(request)
    headers = {TRACEPARENT: traceparent} if traceparent else None
    stream = SseStream(request, config, app[METRICS], app[RNG], headers=headers)
    # The first page is the stream's own read (its errors are still HTTP answers); the
    # run's hub then reads on from the stream's cursor at the latest, watching before it
    # reads, so a commit after this read still reaches the stream.
    page = await reader.page(run_id, cursor)
    with contextlib.ExitStack() as subscription:
        joined: tuple[Hub, Subscriber] | None = None
        if not (page and page[-1].terminal):
            # Joined before the headers: a refusal (the listener is at its bound, the
            # gateway stops) is still an answer (503), not a stream that opens and ends.
            # Its cursor is past the first page: the hub's pages go on from there.
            last = page[-1].seq if page else cursor
            subscriber = Subscriber(last, config.stream_buffer, stream)
            try:
                hub = subscription.enter_context(app[HUBS].subscribe(run_id, subscriber))
            except HubsClosed as error:
                raise ApiError(
                    503, "unavailable", f"{error}; retry later", headers={"Retry-After": "1"}
                ) from None
            joined = (hub, subscriber)
        await stream.open()
        _logger.info("stream_opened", cursor=cursor)
        scope = anyio.CancelScope()
        app[STREAMS].add(scope)
        try:
            with scope:
                await _pump(stream, reader, joined, page, config)
        except StreamGone as gone:
            _logger.info("stream_disconnected", reason=gone.reason)
        except (StoreError, NodeError) as error:
            # The headers are sent: end the stream; the client resumes by cursor.
            _logger.warning("stream_store_failed", error=str(error))
        except Exception:
            # The headers are sent, no error answer is possible any more: end the stream.
            _logger.exception("stream_failed")
        finally:
            app[STREAMS].discard(scope)
            subscription.close()  # the hub writes to the stream no more
            with anyio.CancelScope(shield=True):
                await stream.close()
    if scope.cancelled_caught:
        _logger.info("stream_closed_by_shutdown")
    return stream.response


async def _write_page(stream: SseStream, page: tuple[EncodedEvent, ...], budget: int) -> bool:
    """Write ``page`` in batches of up to ``budget`` bytes (one write each); whether it
    ended with the run's terminal event."""
    start = 0
    while start < len(page):
        end, size = start, 0
        while end < len(page) and (end == start or size + len(page[end].frame) <= budget):
            size += len(page[end].frame)
            end += 1
        batch = page[start:end]
        await stream.send(b"".join(e.frame for e in batch), events=batch)
        if batch[-1].terminal:
            return True
        start = end
    return False


async def _pump(
    stream: SseStream,
    reader: LogReader,
    joined: tuple[Hub, Subscriber] | None,
    page: tuple[EncodedEvent, ...],
    config: GatewayConfig,
) -> None:
    """Write the run's events from ``page`` on, until its terminal event; a heartbeat
    after each ``heartbeat_interval`` of silence.

    The stream's pages come from the run's hub (one read of the log for every stream of
    the run on this node; ``joined`` is ``None`` when ``page`` ends with the
    terminal event) while it keeps up; behind it, the stream reads its gap from the log
    itself.
    """
    budget = config.stream_buffer
    clock = asyncio.get_running_loop().time
    if not page:
        await stream.send(b"\n")  # the retry: line at once, on its own
    elif await _write_page(stream, page, budget):
        _logger.info("stream_finished", last_seq=page[-1].seq)
        return
    assert joined is not None
    hub, subscriber = joined
    run_id = hub.run_id
    subscriber.last_write = clock()
    while True:
        subscriber.direct = False
        subscriber.wake.clear()
        if subscriber.gone is not None:
            raise StreamGone(subscriber.gone)
        if subscriber.ended:
            _logger.info("stream_finished", last_seq=subscriber.cursor)
            return
        if subscriber.draining:
            subscriber.draining = False
            await stream.drain()
            continue
        chunks = subscriber.take()
        if chunks:
            block = chunks[0].block if len(chunks) == 1 else b"".join(c.block for c in chunks)
            count = sum(c.count for c in chunks)
            await stream.send(block, count=count, oldest=min(c.oldest for c in chunks))
            subscriber.last_write = clock()
            if chunks[-1].terminal:
                _logger.info("stream_finished", last_seq=chunks[-1].last_seq)
                return
            continue
        if hub.error is not None:
            raise hub.error
        if not subscriber.live:
            # Behind the hub: read the gap from the log, then join its pages again.
            page = await reader.page(run_id, subscriber.cursor)
            if page:
                if await _write_page(stream, page, budget):
                    _logger.info("stream_finished", last_seq=page[-1].seq)
                    return
                subscriber.last_write = clock()
                subscriber.cursor = page[-1].seq
                hub.catch_up(subscriber)
            else:
                # Nothing after the cursor though the hub read past it: those events
                # were pruned (retention) meanwhile; go on with the hub's pages.
                subscriber.live = True
            continue
        if hub.finished:
            _logger.info("stream_finished", last_seq=subscriber.cursor)
            return
        if not stream.connected:
            raise StreamGone("client_gone")
        beat_at = subscriber.last_write + config.heartbeat_interval
        if clock() >= beat_at:
            await stream.heartbeat()
            subscriber.last_write = clock()
            continue
        # Parked: the hub writes the run's pages for this stream meanwhile (no
        # wake-up per page), and wakes it for anything it must do itself.
        subscriber.direct = stream.direct
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(beat_at - clock()):
                await subscriber.wake.wait()


def add_stream_route(app: web.Application) -> None:
    """The stream route, the set of open streams and the node's hubs (one tail per run
    with streams). The hubs' tasks belong to the task group of :meth:`Hubs.running`, a
    lifespan of the gateway serving the application: left after the application's
    shutdown has ended the streams, it cancels any hub left and waits for it."""
    scopes: set[anyio.CancelScope] = set()
    app[STREAMS] = scopes
    node = app[NODE]
    hubs = Hubs(app[READER], lambda: node.listener, app[CONFIG].poll_interval, app[METRICS])
    app[HUBS] = hubs
    app[GATEWAY_LIFESPANS] = [*app.get(GATEWAY_LIFESPANS, ()), hubs.running]
    app.router.add_get("/v1/runs/{run_id}/stream", stream_run, allow_head=False)

    async def end_streams(app: web.Application) -> None:
        for scope in tuple(scopes):
            scope.cancel()

    app.on_shutdown.append(end_streams)
