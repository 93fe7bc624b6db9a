"""The operators' routes under ``/v1/admin`` (scope ``admin``; DESIGN §10).

* ``GET /v1/admin/runs``: runs filtered by status, run type, session, owner and a created
  time range, sorted by ``created_at`` either way, keyset-paginated behind an opaque
  ``next`` cursor (never an offset).
* ``GET /v1/admin/runs/{run_id}``: one run with its attempts and its lease.
* ``GET /v1/admin/dead-letters``: dead letters, oldest first, paginated the same way.
* ``POST /v1/admin/dead-letters/{dead_letter_id}/replay``: a new run with the dead run's
  owner, run type, input and session, started on this node when it can; the dead letter
  is marked replayed by it, and a second replay is 409 ``dead_letter_replayed``.
* ``GET /v1/admin/events``: the node-wide lifecycle stream as SSE (``run.created``,
  ``run.started``, ``run.recovered``, ``run.succeeded``, ...), read from the store's
  lifecycle feed, so any node serves it and a client resuming with ``Last-Event-ID``
  misses nothing; it starts at the feed's end without a cursor and never ends by itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import anyio
import structlog
from aiohttp import web
from pydantic import AwareDatetime, Field

from runtime.node.errors import NodeError
from runtime.store import (
    LIFECYCLE_CHANNEL,
    LIFECYCLE_WATCH_ID,
    DeadLetterNotFound,
    DeadLetterReplayed,
    InvalidCursor,
    StoreError,
)
from runtime.store.lifecycle import parse_cursor
from transport._auth import authorize
from transport._errors import ApiError
from transport._observe import TRACEPARENT, bind, event_traceparent, trace_of
from transport._sse import EncodedEvent, SseStream, StreamGone, sse_frame
from transport._state import CONFIG, METRICS, NODE, RNG
from transport._stream import LAST_EVENT_ID, STREAMS
from transport._validation import Query, parse_query, parse_run_id
from transport._wire import dumps, lease_json, run_json

if TYPE_CHECKING:
    from runtime.config import GatewayConfig
    from runtime.store import Attempt, DeadLetter, LifecycleEntry, LifecyclePage, Store, Watch

__all__ = ["add_admin_routes"]

_logger = structlog.get_logger("transport.admin")

_JSON: Final = "application/json"
_NO_NUL: Final = r"^[^\x00]*$"
_CURSOR_LENGTH: Final = 1024
_HELD_BACK_POLL: Final = 0.05
"""Seconds between reads while the feed waits for a transaction elsewhere to end (no
notification comes for that)."""

Identifier = Annotated[str, Field(min_length=1, max_length=256, pattern=_NO_NUL)]
Cursor = Annotated[str, Field(min_length=1, max_length=_CURSOR_LENGTH)]


class RunsQuery(Query):
    status: Literal["pending", "running", "succeeded", "failed", "canceled", "timed_out"] | None = (
        None
    )
    run_type: Identifier | None = None
    session_id: Identifier | None = None
    owner: Identifier | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    sort: Literal["created_at", "-created_at"] = "-created_at"
    limit: int = Field(default=50, ge=1, le=500)
    next: Cursor | None = None


class PageQuery(Query):
    limit: int = Field(default=50, ge=1, le=500)
    next: Cursor | None = None


class StreamQuery(Query):
    cursor: Cursor | None = None


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(body), content_type=_JSON)


def _invalid_cursor(error: InvalidCursor) -> ApiError:
    return ApiError(400, "invalid_cursor", f"{error.reason}: start again without it")


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "node_id": attempt.node_id,
        "epoch": attempt.epoch,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "outcome": attempt.outcome,
        "error_class": attempt.error_class,
        "error_type": attempt.error_type,
        "error_message": attempt.error_message,
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "dead_letter_id": letter.dead_letter_id,
        "run_id": letter.run_id,
        "reason": letter.reason,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "attempts": letter.attempts,
        "created_at": letter.created_at,
        "replayed_at": letter.replayed_at,
        "replayed_by": letter.replayed_by,
        "replay_run_id": letter.replay_run_id,
    }


def lifecycle_json(entry: LifecycleEntry) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cursor": entry.cursor,
        "run_id": entry.run_id,
        "type": entry.type,
        "status": entry.status,
        "seq": entry.seq,
        "run_type": entry.run_type,
        "owner": entry.owner,
        "session_id": entry.session_id,
        "created_at": entry.created_at,
    }
    if entry.traceparent is not None:
        body["traceparent"] = entry.traceparent
    return body


def _encoded(entry: LifecycleEntry) -> EncodedEvent:
    """The entry's SSE frame: ``id:`` its feed cursor, ``event:`` its type."""
    frame = sse_frame(entry.cursor, entry.type, dumps(lifecycle_json(entry)))
    return EncodedEvent(entry.seq or 0, entry.type, entry.created_at.timestamp(), frame)


async def list_runs(request: web.Request) -> web.Response:
    await authorize(request, "admin")
    query = parse_query(request, RunsQuery)
    try:
        page = await request.app[NODE].store.list_runs_page(
            status=query.status,
            run_type=query.run_type,
            session_id=query.session_id,
            owner=query.owner,
            created_after=query.created_after,
            created_before=query.created_before,
            descending=query.sort == "-created_at",
            limit=query.limit,
            cursor=query.next,
        )
    except InvalidCursor as error:
        raise _invalid_cursor(error) from None
    return _json({"runs": [run_json(run) for run in page.runs], "next": page.next})


async def get_run(request: web.Request) -> web.Response:
    await authorize(request, "admin")
    run_id = parse_run_id(request)
    bind(run_id=run_id)
    store = request.app[NODE].store
    run = await store.get_run(run_id)
    attempts = await store.list_attempts(run_id)
    lease = await store.get_lease(run_id)
    return _json(
        {
            "run": run_json(run),
            "attempts": [attempt_json(a) for a in attempts],
            "lease": lease_json(lease),
            "retention_floor": run.retention_floor,
        }
    )


async def list_dead_letters(request: web.Request) -> web.Response:
    await authorize(request, "admin")
    query = parse_query(request, PageQuery)
    try:
        page = await request.app[NODE].store.list_dead_letters_page(
            limit=query.limit, cursor=query.next
        )
    except InvalidCursor as error:
        raise _invalid_cursor(error) from None
    return _json(
        {"dead_letters": [dead_letter_json(d) for d in page.dead_letters], "next": page.next}
    )


def _dead_letter_id(request: web.Request) -> int:
    text = request.match_info["dead_letter_id"]
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise ApiError(404, "dead_letter_not_found", f"dead letter {text[:64]!r} not found")
    return int(text)


async def replay_dead_letter(request: web.Request) -> web.Response:
    principal = await authorize(request, "admin")
    dead_letter_id = _dead_letter_id(request)
    try:
        letter, run = await request.app[NODE].replay_dead_letter(
            dead_letter_id,
            replayed_by=principal.subject,
            traceparent=event_traceparent(request),
        )
    except DeadLetterNotFound as error:
        raise ApiError(404, "dead_letter_not_found", str(error)) from None
    except DeadLetterReplayed as error:
        raise ApiError(
            409,
            "dead_letter_replayed",
            str(error),
            extra={"run_id": str(error.replay_run_id)} if error.replay_run_id else None,
        ) from None
    bind(run_id=run.run_id, session_id=run.session_id)
    _logger.info("dead_letter_replayed", dead_letter_id=dead_letter_id, dead_run=letter.run_id)
    return _json({"dead_letter_id": letter.dead_letter_id, "run": run_json(run)}, 202)


def _stream_cursor(request: web.Request) -> str | None:
    """``Last-Event-ID`` (a reconnect: it wins) or ``?cursor=``; ``None``: from now."""
    query = parse_query(request, StreamQuery)
    cursor = request.headers.get(LAST_EVENT_ID, query.cursor)
    if cursor is not None:
        try:
            parse_cursor(cursor)
        except InvalidCursor as error:
            raise _invalid_cursor(error) from None
    return cursor


async def lifecycle_stream(request: web.Request) -> web.StreamResponse:
    await authorize(request, "admin")
    cursor = _stream_cursor(request)
    app = request.app
    node = app[NODE]
    config = app[CONFIG]
    _, traceparent = trace_of(request)
    headers = {TRACEPARENT: traceparent} if traceparent else None
    stream = SseStream(request, config, app[METRICS], app[RNG], headers=headers)
    store = node.store
    # Watch before the first read: a commit between the read and the wait still wakes us.
    with node.listener.watch(LIFECYCLE_WATCH_ID, channel=LIFECYCLE_CHANNEL) as watch:
        if cursor is None:
            cursor = await store.lifecycle_head()
        page = await store.read_lifecycle(cursor, limit=config.page_size)
        await stream.open()
        _logger.info("lifecycle_stream_opened", cursor=cursor)
        scope = anyio.CancelScope()
        app[STREAMS].add(scope)
        try:
            with scope:
                await _pump(stream, store, watch, page, config)
        except StreamGone as gone:
            _logger.info("lifecycle_stream_disconnected", reason=gone.reason)
        except (StoreError, NodeError) as error:
            # The headers are sent: end the stream; the client resumes by Last-Event-ID.
            _logger.warning("lifecycle_stream_store_failed", error=str(error))
        finally:
            app[STREAMS].discard(scope)
            with anyio.CancelScope(shield=True):
                await stream.close()
    return stream.response


async def _pump(
    stream: SseStream, store: Store, watch: Watch, page: LifecyclePage, config: GatewayConfig
) -> None:
    """Write lifecycle entries from ``page`` on, for as long as the client stays; a
    heartbeat after each ``heartbeat_interval`` of silence."""
    clock = asyncio.get_running_loop().time
    if not page.entries:
        await stream.send(b"\n")  # the retry: line at once, on its own
    quiet_since = clock()
    while True:
        if page.entries:
            encoded = [_encoded(entry) for entry in page.entries]
            await stream.send(b"".join(e.frame for e in encoded), events=encoded)
            quiet_since = clock()
        if len(page.entries) < config.page_size:
            if not stream.connected:
                raise StreamGone("client_gone")
            beat_at = quiet_since + config.heartbeat_interval
            # Held back behind a transaction still running elsewhere: nothing will
            # notify its end, so read again soon; else wait for a wake-up or the poll.
            wait = _HELD_BACK_POLL if page.held_back else config.poll_interval
            with anyio.move_on_after(min(wait, max(0.0, beat_at - clock()))):
                await watch.wait()
            if clock() >= beat_at:
                await stream.heartbeat()
                quiet_since = clock()
        page = await store.read_lifecycle(page.cursor, limit=config.page_size)


def add_admin_routes(app: web.Application) -> None:
    """Register the ``/v1/admin`` routes (after the stream route: they share its
    shutdown)."""
    app.router.add_get("/v1/admin/runs", list_runs, allow_head=False)
    app.router.add_get("/v1/admin/runs/{run_id}", get_run, allow_head=False)
    app.router.add_get("/v1/admin/dead-letters", list_dead_letters, allow_head=False)
    app.router.add_post("/v1/admin/dead-letters/{dead_letter_id}/replay", replay_dead_letter)
    app.router.add_get("/v1/admin/events", lifecycle_stream, allow_head=False)
