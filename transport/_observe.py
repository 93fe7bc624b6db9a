"""Per-request context: trace id, structured logs, the access log and request metrics.

Every request gets ``node_id``, ``trace_id`` (from a valid W3C ``traceparent`` header,
else a fresh one) and, once a handler knows them, ``run_id`` and ``session_id`` bound
in structlog's contextvars, so every line the request causes carries them. An invalid
``traceparent`` is ignored, never refused. The access line (``request_handled``) names
the route template and the path without its query string, so a ``?token=`` is never
logged.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from transport._state import METRICS, NODE

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

__all__ = [
    "TRACEPARENT",
    "bind",
    "event_traceparent",
    "observe_middleware",
    "parse_traceparent",
    "trace_of",
]

_logger = structlog.get_logger("transport.access")

TRACEPARENT: Final = "traceparent"
_PATTERN: Final = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

_TRACEPARENT_KEY: Final = web.RequestKey("traceparent", str)
_TRACE_ID_KEY: Final = web.RequestKey("trace_id", str)


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a valid W3C ``traceparent`` (version 00 layout, ids not all
    zero, version not ``ff``); ``None`` for anything else."""
    if value is None:
        return None
    match = _PATTERN.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if version == "00" and rest:
        return None  # version 00 has exactly four fields
    return trace_id


def trace_of(request: web.Request) -> tuple[str, str | None]:
    """The request's trace id and its valid ``traceparent`` header (``None`` if it had
    none, or an invalid one)."""
    return request[_TRACE_ID_KEY], request.get(_TRACEPARENT_KEY)


def event_traceparent(request: web.Request) -> str | None:
    """The trace context to record with what ``request`` writes: its valid
    ``traceparent``'s four fields (a later version's extra fields are left out, as W3C
    asks of a parser of version 00), or ``None``."""
    _, traceparent = trace_of(request)
    return None if traceparent is None else traceparent[:55]


def bind(**values: object) -> None:
    """Bind ids (``run_id``, ``session_id``) to every log line of the current request."""
    structlog.contextvars.bind_contextvars(
        **{key: str(value) for key, value in values.items() if value is not None}
    )


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get(TRACEPARENT)
    trace_id = parse_traceparent(header)
    if trace_id is not None and header is not None:
        request[_TRACEPARENT_KEY] = header.strip()
    request[_TRACE_ID_KEY] = trace_id = trace_id or secrets.token_hex(16)
    route = _route(request)
    started = time.perf_counter()
    saved = structlog.contextvars.get_contextvars()
    structlog.contextvars.bind_contextvars(node_id=request.app[NODE].node_id, trace_id=trace_id)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        seconds = time.perf_counter() - started
        request.app[METRICS].observe_request(route, request.method, status, seconds)
        _logger.info(
            "request_handled",
            method=request.method,
            route=route,
            path=request.path,  # never the query string: it may hold a token
            status=status,
            duration_ms=round(seconds * 1000, 3),
        )
        # Keep-alive requests share their connection's task: leave nothing bound.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**saved)


def _route(request: web.Request) -> str:
    """The route template (``/v1/runs/{run_id}``), never the concrete path."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical
