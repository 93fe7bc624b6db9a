"""The ``/v1/runs`` routes: start, frames, cancel, snapshot, events page (DESIGN §10).

Each handler authenticates, validates its input, checks ownership against the run row,
and only then spends the token and acts: a refused request writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

import pydantic
from aiohttp import web
from pydantic import Field

from transport._auth import authorize, check_owner, spend_token
from transport._errors import ApiError, stale_cursor
from transport._observe import bind, event_traceparent
from transport._state import NODE
from transport._validation import Body, Query, parse_body, parse_query, parse_run_id
from transport._wire import dumps, event_json, run_json, snapshot_json

if TYPE_CHECKING:
    import uuid

    from runtime.store import Run
    from transport._auth import Principal

__all__ = ["add_run_routes"]

_JSON: Final = "application/json"
_ID_LENGTH: Final = 200
_IDEMPOTENCY_HEADER: Final = "Idempotency-Key"


#: No NUL (PostgreSQL text cannot hold it): refused here, before anything is spent.
_NO_NUL: Final = r"^[^\x00]*$"
Identifier = Annotated[str, Field(min_length=1, max_length=_ID_LENGTH, pattern=_NO_NUL)]


class StartRun(Body):
    run_type: Identifier
    input: pydantic.JsonValue = None
    session_id: Identifier | None = None
    idempotency_key: Identifier | None = None


class AppendFrame(Body):
    frame_id: Identifier
    kind: Identifier
    payload: pydantic.JsonValue = None


class Cancel(Body):
    reason: Annotated[str, Field(max_length=1000, pattern=_NO_NUL)] | None = None


class EventsPage(Query):
    after: int = Field(default=0, ge=0, le=2**63 - 1)
    limit: int = Field(default=100, ge=1, le=1000)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(body), content_type=_JSON)


async def _owned_run(request: web.Request, run_id: uuid.UUID, principal: Principal) -> Run:
    run = await request.app[NODE].store.get_run(run_id)
    check_owner(principal, run)
    bind(session_id=run.session_id)
    return run


async def start_run(request: web.Request) -> web.Response:
    principal = await authorize(request, "runs:write", spend=False)
    body = await parse_body(request, StartRun)
    key = body.idempotency_key
    header = request.headers.get(_IDEMPOTENCY_HEADER)
    if header is not None:
        if not 1 <= len(header) <= _ID_LENGTH or "\x00" in header:
            raise ApiError(
                400, "invalid_request", f"{_IDEMPOTENCY_HEADER} must be 1 to 200 characters"
            )
        if key is not None and key != header:
            raise ApiError(
                400,
                "invalid_request",
                f"the {_IDEMPOTENCY_HEADER} header and the body's idempotency_key differ",
            )
        key = header
    if principal.run_id is not None:
        raise ApiError(403, "forbidden", "a token bound to a run cannot start runs")
    session_id = body.session_id
    if principal.session_id is not None:
        if session_id is not None and session_id != principal.session_id:
            raise ApiError(403, "forbidden", "the token is bound to another session")
        session_id = principal.session_id
    node = request.app[NODE]
    node.handlers.get(body.run_type)  # unknown_run_type before the token is spent
    await spend_token(request, principal)
    run, created = await node.start_run(
        owner=principal.subject,
        run_type=body.run_type,
        input=body.input,
        session_id=session_id,
        idempotency_key=key,
        traceparent=event_traceparent(request),
    )
    bind(run_id=run.run_id, session_id=run.session_id)
    return _json({"run": run_json(run), "created": created}, 201 if created else 200)


async def append_frame(request: web.Request) -> web.Response:
    principal = await authorize(request, "runs:write", spend=False)
    run_id = parse_run_id(request)
    bind(run_id=run_id)
    body = await parse_body(request, AppendFrame)
    run = await _owned_run(request, run_id, principal)
    if run.terminal:
        raise ApiError(409, "run_terminal", f"run {run_id} is already {run.status}")
    await spend_token(request, principal)
    appended = await request.app[NODE].append_frame(
        run_id,
        frame_id=body.frame_id,
        kind=body.kind,
        payload=body.payload,
        traceparent=event_traceparent(request),
    )
    frame = appended.frame
    answer = {
        "run_id": frame.run_id,
        "frame_seq": frame.frame_seq,
        "frame_id": frame.frame_id,
        "created": appended.created,
    }
    return _json(answer, 201 if appended.created else 200)


async def cancel_run(request: web.Request) -> web.Response:
    principal = await authorize(request, "runs:write", spend=False)
    run_id = parse_run_id(request)
    bind(run_id=run_id)
    body = await parse_body(request, Cancel, optional=True)
    await _owned_run(request, run_id, principal)
    await spend_token(request, principal)
    outcome = await request.app[NODE].cancel(
        run_id, reason=body.reason, traceparent=event_traceparent(request)
    )
    answer = {"run": run_json(outcome.run), "requested": outcome.requested, "seq": outcome.seq}
    return _json(answer, 202)


async def get_run(request: web.Request) -> web.Response:
    principal = await authorize(request, "runs:read")
    run_id = parse_run_id(request)
    bind(run_id=run_id)
    await _owned_run(request, run_id, principal)
    snapshot = await request.app[NODE].snapshot(run_id)
    return _json(snapshot_json(snapshot))


async def list_events(request: web.Request) -> web.Response:
    principal = await authorize(request, "runs:read")
    run_id = parse_run_id(request)
    bind(run_id=run_id)
    query = parse_query(request, EventsPage)
    run = await _owned_run(request, run_id, principal)
    floor = run.retention_floor
    if query.after < floor:
        raise stale_cursor(query.after, floor)
    events = await request.app[NODE].store.read_events(run_id, after=query.after, limit=query.limit)
    # More now when the page is full, or stopped short of the run's head (read_limit).
    more = bool(events) and (len(events) == query.limit or events[-1].seq < run.last_seq)
    next_after = events[-1].seq if more else None
    return _json({"events": [event_json(e) for e in events], "next_after": next_after})


def add_run_routes(app: web.Application) -> None:
    """Register the ``/v1/runs`` routes (the stream's is in ``transport/_stream.py``)."""
    app.router.add_post("/v1/runs", start_run)
    app.router.add_post("/v1/runs/{run_id}/frames", append_frame)
    app.router.add_post("/v1/runs/{run_id}/cancel", cancel_run)
    app.router.add_get("/v1/runs/{run_id}", get_run, allow_head=False)
    app.router.add_get("/v1/runs/{run_id}/events", list_events, allow_head=False)
