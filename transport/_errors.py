"""The gateway's errors: one JSON shape, stable codes, never a 500 (DESIGN §10).

Every refusal is ``{"error": {"code": "<stable code>", "message": "<one line>"}}`` (some
add fields, such as ``run_id`` for ``admission_rejected``). Handlers raise
:class:`ApiError`; :func:`error_middleware` renders it, and translates on the way the
errors of the layers below (:func:`api_error_for`), aiohttp's own refusals (unknown route,
wrong method, oversize body) and anything unforeseen::

    status  code                     cause
    400     invalid_json             the body is not JSON
    400     invalid_request          a field missing, of the wrong type, or unknown
    400     invalid_cursor           a cursor that is not a non-negative integer
    400     cursor_conflict          Last-Event-ID below ?cursor=
    400     unknown_run_type         no handler for the run type (the message lists them)
    400     invalid_payload          an input or payload the store cannot hold as JSON
    401     unauthenticated          no token
    401     invalid_token            a token that is malformed, forged or of an unknown key
    401     token_expired            a token past its ``exp``
    401     token_replayed           a token id already spent by a mutating request
    403     forbidden                wrong scope, another principal's run, another binding
    404     not_found                no such route
    404     run_not_found            no such run (or a malformed run id)
    405     method_not_allowed       the route exists, not with this method
    409     run_conflict             an idempotency key reused for a different request
    409     run_terminal             the run has ended; it takes no more frames
    410     stale_cursor             the cursor is below the run's retention floor
    413     payload_too_large        the body (or a payload) is over the limit
    415     unsupported_media_type   a body that is not application/json
    429     admission_rejected       the node runs its maximum; the run stays pending
    503     unavailable              the database is unreachable or overloaded, the node
                                     is closing: retry later
    500     internal_error           a bug: logged with its traceback, never its details
                                     in the answer

A database that cannot be reached is a 503, never a 500: the store classifies its
failures (``DatabaseUnavailable``, ``StoreOverloaded``, ...) and they map here by type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog
from aiohttp import web

from actors import WardenError
from runtime.node.errors import AdmissionRejected, NodeClosed
from runtime.run.errors import UnknownRunType
from runtime.store import (
    DatabaseError,
    DatabaseUnavailable,
    InvalidArgument,
    PayloadNotSerializable,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
    RunTerminal,
    StaleCursor,
    StoreClosed,
    StoreOverloaded,
    TransactionConflict,
)

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

__all__ = ["ApiError", "api_error_for", "error_middleware", "error_response", "stale_cursor"]

_logger = structlog.get_logger("transport")

JSON_TYPE: Final = "application/json"

#: aiohttp's own refusals (raised before or around a handler) by status.
_HTTP_CODES: Final = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """A refusal with an HTTP ``status``, a stable ``code`` and a one-line ``message``.

    ``extra`` fields are added next to ``code`` and ``message`` (``run_id``, ...);
    ``headers`` go on the response (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = " ".join(message.split())
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(f"{status} {code}: {self.message}")


def error_response(error: ApiError) -> web.Response:
    """The JSON response for ``error``."""
    body = {"error": {"code": error.code, "message": error.message, **error.extra}}
    return web.Response(
        status=error.status,
        body=orjson.dumps(body),
        content_type=JSON_TYPE,
        headers=error.headers,
    )


def api_error_for(error: Exception) -> ApiError | None:
    """The refusal a store, run or node error stands for; ``None`` for anything else.

    Classified by type, never by message text. The messages come from the errors
    themselves, which name ids and limits but never a password or a payload.
    """
    match error:
        case RunNotFound():
            return ApiError(404, "run_not_found", str(error))
        case RunTerminal():
            return ApiError(409, "run_terminal", str(error))
        case RunConflict():
            return ApiError(409, "run_conflict", str(error))
        case UnknownRunType():
            return ApiError(400, "unknown_run_type", str(error))
        case AdmissionRejected():
            return ApiError(
                429,
                "admission_rejected",
                str(error),
                extra={"run_id": str(error.run_id)},
                headers={"Retry-After": "1"},
            )
        case PayloadTooLarge():
            return ApiError(413, "payload_too_large", str(error))
        case PayloadNotSerializable():
            return ApiError(400, "invalid_payload", str(error))
        case InvalidArgument():
            return ApiError(400, "invalid_request", str(error))
        case DatabaseUnavailable() | StoreOverloaded() | StoreClosed() | TransactionConflict():
            return _unavailable(error)
        case DatabaseError() | NodeClosed():
            return _unavailable(error)
        case StaleCursor():
            return stale_cursor(error.cursor, error.floor)
        case WardenError():
            return None
    return None


def stale_cursor(cursor: object, floor: object) -> ApiError:
    """410 for a cursor below the run's retention floor."""
    return ApiError(
        410,
        "stale_cursor",
        f"cursor {cursor} is below the run's retention floor {floor}: its events were"
        " pruned; read the snapshot (GET /v1/runs/{id}) and resume from the floor",
        extra={"retention_floor": floor},
    )


def _unavailable(error: Exception) -> ApiError:
    _logger.warning("request_unavailable", error=str(error), error_type=type(error).__name__)
    return ApiError(
        503,
        "unavailable",
        "the service is temporarily unavailable (database unreachable or overloaded, or"
        " the node is stopping); retry later",
        headers={"Retry-After": "1"},
    )


def error_middleware(body_limit: int) -> Middleware:
    """The middleware rendering :class:`ApiError` and every error below it as the JSON
    error shape (``body_limit`` names the limit in the 413's message)."""

    @web.middleware
    async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error)
        except web.HTTPException as http:
            if http.status < 400:
                raise  # redirects and the like pass through
            return error_response(_from_http(http, body_limit))
        except Exception as error:
            api = api_error_for(error)
            if api is not None:
                return error_response(api)
            _logger.exception("request_failed", error_type=type(error).__name__)
            return error_response(
                ApiError(500, "internal_error", "the gateway failed to answer; this is a bug")
            )

    return render_errors


def _from_http(http: web.HTTPException, body_limit: int) -> ApiError:
    code = _HTTP_CODES.get(http.status, "invalid_request" if http.status < 500 else "unavailable")
    if http.status == 413:
        return ApiError(
            413, code, f"the request body is over the gateway's limit of {body_limit} bytes"
        )
    if http.status == 404:
        return ApiError(404, code, "no such route")
    if http.status == 405 and isinstance(http, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(http.allowed_methods))
        return ApiError(
            405,
            code,
            f"method {http.method} not allowed here; allowed: {allowed}",
            headers={"Allow": allowed},
        )
    return ApiError(http.status, code, http.reason or code)
