"""Errors :class:`transport.client.RuntimeClient` raises, mirroring the gateway's codes.

Every answer the gateway refuses carries ``{"error": {"code", "message"}}``; the client
raises the class of that ``code`` (falling back on the HTTP status for a code it does not
know), carrying ``status``, ``code``, ``run_id`` and the server's one-line ``message``::

    WardenError                      actors.errors
    └── ClientError                  the gateway client (transport.client)
        ├── NetworkError           no answer: connect refused, connection cut, bad
        │   │                        framing (the world did this); the outcome of a
        │   │                        non-idempotent call is unknown
        │   ├── RequestTimeout       the call ran out of its timeout (also a TimeoutError)
        │   └── StreamInterrupted    stream() spent its reconnect budget without progress
        ├── InvalidRequest           400 invalid_request (and any other 400)
        │   ├── UnknownRunType       400 unknown_run_type (the message lists the types)
        │   └── InvalidCursor        400 invalid_cursor / cursor_conflict
        ├── Unauthenticated          401 unauthenticated / invalid_token / token_expired /
        │                            token_replayed
        ├── Forbidden                403 forbidden (scope, owner or a token bound elsewhere)
        ├── NotFound                 404 not_found (and any other 404)
        │   └── RunNotFound          404 run_not_found
        ├── Conflict                 409 (any other 409)
        │   ├── RunConflict          409 run_conflict (idempotency key reused)
        │   └── RunTerminal          409 run_terminal (the run has ended)
        ├── StaleCursor              410 stale_cursor (below the retention floor)
        ├── PayloadTooLarge          413 payload_too_large
        ├── AdmissionRejected        429 admission_rejected (the run stays pending)
        ├── Unavailable              503 unavailable (the database is down; retryable)
        └── ServerError              any other answer (5xx, or a body that is not the
                                     gateway's error shape)

Following trio, :class:`NetworkError` is "broken" (the world did this); the others are
answers: the gateway decided, and repeating the same call gets the same answer (but for
``Unavailable``).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, ClassVar, Final

import orjson

from actors import WardenError

__all__ = [
    "AdmissionRejected",
    "ClientError",
    "Conflict",
    "Forbidden",
    "InvalidCursor",
    "InvalidRequest",
    "NetworkError",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "RunConflict",
    "RunNotFound",
    "RunTerminal",
    "ServerError",
    "StaleCursor",
    "StreamInterrupted",
    "Unauthenticated",
    "Unavailable",
    "UnknownRunType",
    "error_from_answer",
]

#: How much of an unexpected body a ServerError quotes.
_QUOTE: Final = 200


class ClientError(WardenError):
    """Root of the client's errors.

    Attributes:
        status: the HTTP status (``None`` when no answer arrived).
        code: the gateway's stable error code (``transport_error`` and the like when no
            answer arrived).
        run_id: the run the call was about, when there was one.
        message: one line saying what went wrong.
    """

    default_code: ClassVar[str] = "client_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        run_id: uuid.UUID | None = None,
    ) -> None:
        self.status = status
        self.code = code or self.default_code
        self.run_id = run_id
        self.message = message
        where = f" (run {run_id})" if run_id is not None else ""
        head = f"{status} {self.code}" if status is not None else self.code
        super().__init__(f"{head}: {message}{where}")


class NetworkError(ClientError):
    """No answer came back: the connection failed, was cut, or spoke no HTTP we read."""

    default_code = "network_error"


class RequestTimeout(NetworkError, TimeoutError):
    """The call ran out of its timeout; its outcome is unknown."""

    default_code = "timeout"


class StreamInterrupted(NetworkError):
    """``stream()`` reconnected its whole budget in a row without receiving an event.

    Attributes:
        cursor: the last seq it delivered (resume from here), or ``None``.
        reconnects: how many reconnections it made in all.
    """

    default_code = "stream_interrupted"

    def __init__(
        self, message: str, *, run_id: uuid.UUID, cursor: int | None, reconnects: int
    ) -> None:
        self.cursor = cursor
        self.reconnects = reconnects
        super().__init__(message, run_id=run_id)


class InvalidRequest(ClientError):
    """400: the gateway refused the request as malformed; nothing was written."""

    default_code = "invalid_request"


class UnknownRunType(InvalidRequest):
    """400 unknown_run_type: no node executes this run type (the message lists them)."""

    default_code = "unknown_run_type"


class InvalidCursor(InvalidRequest):
    """400 invalid_cursor / cursor_conflict: the stream's cursor was refused."""

    default_code = "invalid_cursor"


class Unauthenticated(ClientError):
    """401: the token is missing, forged, expired or replayed."""

    default_code = "unauthenticated"


class Forbidden(ClientError):
    """403: the token's scope, owner or binding does not allow this call."""

    default_code = "forbidden"


class NotFound(ClientError):
    """404: no such route or resource."""

    default_code = "not_found"


class RunNotFound(NotFound):
    """404 run_not_found: no run with this id (or a malformed id)."""

    default_code = "run_not_found"


class Conflict(ClientError):
    """409: the request conflicts with what the gateway holds."""

    default_code = "conflict"


class RunConflict(Conflict):
    """409 run_conflict: the idempotency key belongs to a different request."""

    default_code = "run_conflict"


class RunTerminal(Conflict):
    """409 run_terminal: the run has ended; the frame was not stored."""

    default_code = "run_terminal"


class StaleCursor(ClientError):
    """410 stale_cursor: the cursor is below the run's retention floor (events pruned)."""

    default_code = "stale_cursor"


class PayloadTooLarge(ClientError):
    """413 payload_too_large: the body is over the gateway's limit."""

    default_code = "payload_too_large"


class AdmissionRejected(ClientError):
    """429 admission_rejected: the node runs as many runs as it may; the run was
    created and stays pending (its id is ``run_id``)."""

    default_code = "admission_rejected"


class Unavailable(ClientError):
    """503 unavailable: the gateway cannot reach its database; retry later."""

    default_code = "unavailable"


class ServerError(ClientError):
    """Any other answer: a 5xx, or a body that is not the gateway's error shape."""

    default_code = "server_error"


_BY_CODE: Final[dict[str, type[ClientError]]] = {
    "invalid_request": InvalidRequest,
    "unknown_run_type": UnknownRunType,
    "invalid_cursor": InvalidCursor,
    "cursor_conflict": InvalidCursor,
    "unauthenticated": Unauthenticated,
    "invalid_token": Unauthenticated,
    "token_expired": Unauthenticated,
    "token_replayed": Unauthenticated,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "run_not_found": RunNotFound,
    "run_conflict": RunConflict,
    "run_terminal": RunTerminal,
    "stale_cursor": StaleCursor,
    "payload_too_large": PayloadTooLarge,
    "admission_rejected": AdmissionRejected,
    "unavailable": Unavailable,
}

_BY_STATUS: Final[dict[int, type[ClientError]]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: StaleCursor,
    413: PayloadTooLarge,
    429: AdmissionRejected,
    503: Unavailable,
}


def error_from_answer(status: int, body: bytes, run_id: uuid.UUID | None = None) -> ClientError:
    """The error for a refused answer: by the body's ``code``, else by ``status``.

    A ``run_id`` in the body (an admission refusal names the pending run) wins over the
    one the call was about.
    """
    code: str | None = None
    message: str | None = None
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            if isinstance(error.get("code"), str):
                code = error["code"]
            if isinstance(error.get("message"), str):
                message = error["message"]
        named = document.get("run_id")
        if isinstance(named, str):
            with contextlib.suppress(ValueError):  # not an id: keep the call's
                run_id = uuid.UUID(named)
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status, ServerError)
    if message is None:
        quoted = body[:_QUOTE].decode("utf-8", "replace")
        message = f"unexpected answer: {quoted!r}" if quoted else "unexpected empty answer"
    return cls(" ".join(message.split()), status=status, code=code, run_id=run_id)


def _public_module() -> None:
    """Tracebacks read ``transport.client.RunNotFound``, where users import it from."""
    for name in __all__:
        value = globals()[name]
        if isinstance(value, type):
            value.__module__ = "transport.client"


_public_module()
