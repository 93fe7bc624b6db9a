"""``RuntimeClient``: the aiohttp client internal services use to drive runs over the gateway.

One client holds one ``aiohttp.ClientSession`` (its own, or one passed in that it then
leaves open) and is single-use: ``async with RuntimeClient(url, token=...) as client``.

Calls and their retries:

========================  ==========================  ===================================
call                      route                       retried after a cut or a 5xx
========================  ==========================  ===================================
``start_run``             ``POST /v1/runs``           only with an ``idempotency_key``
``append_frame``          ``POST .../frames``         yes (idempotent by ``frame_id``)
``cancel``                ``POST .../cancel``         yes (a repeat requests nothing new)
``snapshot``              ``GET /v1/runs/{id}``       yes
``events``                ``GET .../events``          yes
``stream``                ``GET .../stream`` (SSE)    reconnects from its cursor
========================  ==========================  ===================================

Every call has a timeout (``timeout`` seconds for the whole call, ``connect_timeout`` for
the connection); a retried call makes at most ``retries`` more attempts, waiting a
jittered, growing delay (:class:`Backoff`) between them. Refused answers raise the
:class:`ClientError` subclass of the gateway's error code (the tree is in
``transport._client_errors``); no answer at all raises :class:`NetworkError`.

``stream(run_id, cursor=None)`` yields the run's events from ``cursor`` (exclusive) to
the terminal event, each once and in order: after a disconnect it reconnects with
``Last-Event-ID`` set to the last seq it delivered, waiting the server's ``retry:`` (then
backing off), and drops any event at or below that seq. It gives up with
:class:`StreamInterrupted` after ``reconnect_budget`` reconnections in a row that
delivered nothing; a ``204`` ends it (the run had ended at or before the cursor); a
``410`` raises :class:`StaleCursor`.

Mutating calls and token replay: the gateway refuses a token id (``jti``) it has seen on
an earlier mutating request, so a retried ``POST`` needs a fresh token. Pass ``token`` as
a callable (it is called for every attempt) when the client retries mutating calls.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import aiohttp
import anyio
import orjson
import pydantic
import structlog

from transport._backoff import Backoff
from transport._client_errors import (
    AdmissionRejected,
    ClientError,
    Conflict,
    Forbidden,
    InvalidCursor,
    InvalidRequest,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    RunConflict,
    RunNotFound,
    RunTerminal,
    ServerError,
    StaleCursor,
    StreamInterrupted,
    Unauthenticated,
    Unavailable,
    UnknownRunType,
    error_from_answer,
)
from transport._client_models import (
    TERMINAL_EVENT_TYPES,
    CancelRequested,
    Event,
    EventPage,
    FrameAppended,
    Lease,
    Run,
    RunStarted,
    Snapshot,
)
from transport._sse_decoder import MAX_LINE, SSEDecoder, SSEProtocolError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
    from types import TracebackType

__all__ = [
    "AdmissionRejected",
    "Backoff",
    "CancelRequested",
    "ClientError",
    "Conflict",
    "Event",
    "EventPage",
    "EventStream",
    "Forbidden",
    "FrameAppended",
    "InvalidCursor",
    "InvalidRequest",
    "Lease",
    "NetworkError",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "Run",
    "RunConflict",
    "RunNotFound",
    "RunStarted",
    "RunTerminal",
    "RuntimeClient",
    "ServerError",
    "Snapshot",
    "StaleCursor",
    "StreamInterrupted",
    "TERMINAL_EVENT_TYPES",
    "Unauthenticated",
    "Unavailable",
    "UnknownRunType",
]

_logger = structlog.get_logger("transport.client")

_M = TypeVar("_M", bound=pydantic.BaseModel)

#: The most an answer body (not a stream) may hold; a page of events is far below it.
MAX_ANSWER: Final = 32 << 20
#: Read chunk for answers.
_CHUNK: Final = 65536


class _Gap(Exception):
    """The stream skipped a seq: reconnect from the cursor (never deliver out of order)."""


class RuntimeClient:
    """A client of the gateway's ``/v1`` run routes; see the module docstring.

    Args:
        base_url: the gateway's root, such as ``http://127.0.0.1:8080``.
        token: a bearer token, or a callable returning one (called for every attempt, so
            a retried mutating call presents a fresh token id); ``None`` sends none.
        session: an ``aiohttp.ClientSession`` to use and leave open; by default the
            client opens its own (with ``max_connections``) and closes it on exit.
        timeout: seconds a whole call (every attempt's) may take, but a stream.
        connect_timeout: seconds to connect, for calls and streams alike.
        retries: further attempts for idempotent calls after a cut, a timeout or a 5xx.
        backoff: the delays between attempts and reconnections (seed its ``rng`` to fix
            them).
        stream_read_timeout: seconds a stream may stay silent (the gateway sends a
            heartbeat every 15 s by default) before the client reconnects.
        reconnect_budget: reconnections in a row without a new event before ``stream``
            gives up with :class:`StreamInterrupted`.
        max_connections: the owned session's connection limit (each open stream holds
            one).
        max_line: the longest event-stream line accepted (bytes).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | Callable[[], str] | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        stream_read_timeout: float = 45.0,
        reconnect_budget: int = 10,
        max_connections: int = 100,
        max_line: int = MAX_LINE,
    ) -> None:
        if retries < 0 or reconnect_budget < 0:
            raise ValueError("retries and reconnect_budget must be >= 0")
        if min(timeout, connect_timeout, stream_read_timeout) <= 0:
            raise ValueError("timeouts must be > 0")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._given_session = session
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._call_timeout = aiohttp.ClientTimeout(
            total=timeout, connect=connect_timeout, sock_connect=connect_timeout
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=stream_read_timeout,
        )
        self._timeout = timeout
        self.retries = retries
        self.backoff = backoff or Backoff(rng=random.Random())
        self.reconnect_budget = reconnect_budget
        self._max_connections = max_connections
        self._max_line = max_line

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._session else "not open yet"
        return f"<RuntimeClient {self.base_url} {state}>"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed or self._session is not None:
            raise RuntimeError("a RuntimeClient is single-use: open a new one")
        if self._given_session is not None:
            self._session = self._given_session
        else:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                raise_for_status=False,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (and its session, when it opened it). Idempotent."""
        session, self._session = self._session, None
        self._closed = True
        if session is not None and session is not self._given_session:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session in use."""
        if self._session is None:
            raise RuntimeError(f"{self!r}: use it inside 'async with'")
        return self._session

    # -- the calls ---------------------------------------------------------------------

    async def start_run(
        self,
        run_type: str,
        input: Any = None,  # the API's own word (DESIGN §10)
        *,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> RunStarted:
        """Create a run (``POST /v1/runs``); ``created`` is false for a repeat.

        Retried only with an ``idempotency_key`` (a repeat then returns the same run).

        Raises:
            UnknownRunType, RunConflict, AdmissionRejected (its ``run_id`` is the
            pending run's), InvalidRequest, Unauthenticated, Forbidden, ...
        """
        body: dict[str, Any] = {"run_type": run_type}
        if input is not None:
            body["input"] = input
        if session_id is not None:
            body["session_id"] = session_id
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        answer = await self._call(
            "POST",
            "/v1/runs",
            body=body,
            idempotent=idempotency_key is not None,
            traceparent=traceparent,
        )
        return _model(RunStarted, answer, None)

    async def append_frame(
        self,
        run_id: uuid.UUID | str,
        frame_id: str,
        kind: str,
        payload: Any = None,
        *,
        traceparent: str | None = None,
    ) -> FrameAppended:
        """Store a frame for the run (``POST /v1/runs/{id}/frames``); a repeat of
        ``frame_id`` returns the original with ``created`` false. Retried.

        Raises:
            RunNotFound, RunTerminal, PayloadTooLarge, InvalidRequest, ...
        """
        run = _run_id(run_id)
        body: dict[str, Any] = {"frame_id": frame_id, "kind": kind}
        if payload is not None:
            body["payload"] = payload
        answer = await self._call(
            "POST",
            f"/v1/runs/{run}/frames",
            body=body,
            run_id=run,
            idempotent=True,
            traceparent=traceparent,
        )
        return _model(FrameAppended, answer, run)

    async def cancel(
        self,
        run_id: uuid.UUID | str,
        *,
        reason: str | None = None,
        traceparent: str | None = None,
    ) -> CancelRequested:
        """Request the run's cancellation (``POST /v1/runs/{id}/cancel``). Retried: a
        repeat requests nothing new (``requested`` false).

        Raises:
            RunNotFound, ...
        """
        run = _run_id(run_id)
        answer = await self._call(
            "POST",
            f"/v1/runs/{run}/cancel",
            body={} if reason is None else {"reason": reason},
            run_id=run,
            idempotent=True,
            traceparent=traceparent,
        )
        return _model(CancelRequested, answer, run)

    async def snapshot(self, run_id: uuid.UUID | str) -> Snapshot:
        """The run, its lease and its terminal event (``GET /v1/runs/{id}``).

        Raises:
            RunNotFound, ...
        """
        run = _run_id(run_id)
        answer = await self._call("GET", f"/v1/runs/{run}", run_id=run, idempotent=True)
        return _model(Snapshot, answer, run)

    async def events(
        self, run_id: uuid.UUID | str, *, after: int = 0, limit: int = 100
    ) -> EventPage:
        """One page of the run's events with ``seq > after`` (``GET .../events``).

        Raises:
            RunNotFound, StaleCursor (``after`` below the retention floor),
            InvalidRequest (``after`` < 0, ``limit`` outside 1..1000), ...
        """
        run = _run_id(run_id)
        answer = await self._call(
            "GET",
            f"/v1/runs/{run}/events",
            params={"after": str(after), "limit": str(limit)},
            run_id=run,
            idempotent=True,
        )
        return _model(EventPage, answer, run)

    async def iter_events(
        self, run_id: uuid.UUID | str, *, after: int = 0, limit: int = 100
    ) -> AsyncIterator[Event]:
        """Every event with ``seq > after`` stored now, page by page, in order.

        Ends when the gateway has nothing more (``next_after`` null); events appended
        later are for :meth:`stream`.
        """
        cursor: int | None = after
        while cursor is not None:
            page = await self.events(run_id, after=cursor, limit=limit)
            for event in page.events:
                yield event
            cursor = page.next_after

    def stream(self, run_id: uuid.UUID | str, cursor: int | None = None) -> EventStream:
        """The run's events after ``cursor`` (from the first when ``None``) up to and
        including the terminal event, each once and in order, across disconnects.

        Close it when leaving early: ``async with client.stream(run_id) as events:``.
        """
        return EventStream(self, _run_id(run_id), cursor)

    # -- plumbing ----------------------------------------------------------------------

    def _headers(self, traceparent: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._token() if callable(self._token) else self._token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if traceparent is not None:
            headers["traceparent"] = traceparent
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        run_id: uuid.UUID | None = None,
        idempotent: bool,
        traceparent: str | None = None,
    ) -> bytes:
        """One call, retried when ``idempotent``: the answer's body (a 2xx)."""
        attempts = 1 + (self.retries if idempotent else 0)
        data = None if body is None else orjson.dumps(body)
        for attempt in range(attempts):
            try:
                return await self._attempt(method, path, data, params, run_id, traceparent)
            except ClientError as error:
                retryable = isinstance(error, NetworkError) or (
                    error.status is not None and error.status >= 500
                )
                if not retryable or attempt + 1 == attempts:
                    raise
                delay = self.backoff.delay(attempt)
                _logger.info(
                    "client_call_retried",
                    method=method,
                    path=path,
                    attempt=attempt + 1,
                    delay=round(delay, 3),
                    error=str(error),
                )
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        path: str,
        data: bytes | None,
        params: Mapping[str, str] | None,
        run_id: uuid.UUID | None,
        traceparent: str | None,
    ) -> bytes:
        headers = self._headers(traceparent)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method,
                self.base_url + path,
                data=data,
                params=params,
                headers=headers,
                timeout=self._call_timeout,
                allow_redirects=False,
            ) as response:
                answer = await _read_bounded(response, run_id)
                status = response.status
        except TimeoutError as error:
            raise RequestTimeout(
                f"{method} {path} got no answer within {self._timeout} s", run_id=run_id
            ) from error
        except aiohttp.ClientError as error:
            raise NetworkError(
                f"{method} {path} failed: {_describe(error)}", run_id=run_id
            ) from error
        if 200 <= status < 300:
            return answer
        raise error_from_answer(status, answer, run_id)


class EventStream:
    """The async iterator :meth:`RuntimeClient.stream` returns; see its docstring.

    Attributes:
        run_id: the run streamed.
        cursor: the seq of the last event delivered (``None`` before the first, when
            the stream started from the beginning).
        reconnects: reconnections made so far.
        duplicates: events dropped because a reconnection re-sent them.
        retry: the server's ``retry:`` in seconds, once it sent one.
    """

    def __init__(self, client: RuntimeClient, run_id: uuid.UUID, cursor: int | None) -> None:
        if cursor is not None and cursor < 0:
            raise ValueError(f"cursor must be >= 0, got {cursor}")
        self.run_id = run_id
        self.cursor = cursor
        self.reconnects = 0
        self.duplicates = 0
        self.retry: float | None = None
        self._client = client
        self._events = self._run()

    def __repr__(self) -> str:
        return f"<EventStream run {self.run_id} cursor {self.cursor}>"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Close the connection (if one is open) and end the iteration."""
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[Event]:
        client = self._client
        idle = 0  # reconnections in a row that delivered nothing new
        while True:
            delivered = False
            try:
                async with contextlib.aclosing(self._connection()) as events:
                    async for event in events:
                        delivered = True
                        yield event
                        if event.terminal:
                            return
                return  # 204: nothing more to deliver
            except _Disconnected as disconnect:
                reason = disconnect.reason
            if delivered:
                idle = 0
            if idle >= client.reconnect_budget:
                raise StreamInterrupted(
                    f"the stream broke {idle + 1} times in a row without a new event "
                    f"(last: {reason})",
                    run_id=self.run_id,
                    cursor=self.cursor,
                    reconnects=self.reconnects,
                )
            delay = client.backoff.delay(idle, self.retry)
            idle += 1
            self.reconnects += 1
            _logger.info(
                "stream_reconnecting",
                run_id=str(self.run_id),
                cursor=self.cursor,
                delay=round(delay, 3),
                reason=reason,
            )
            await anyio.sleep(delay)

    async def _connection(self) -> AsyncGenerator[Event]:
        """One connection's new events, in order. Ends quietly on 204; raises
        :class:`_Disconnected` for what a reconnection may mend, the typed error for
        answers that would not change (404, 410, 401, ...)."""
        client = self._client
        headers = client._headers(None)
        headers["Accept"] = "text/event-stream"
        if self.cursor is not None:
            headers["Last-Event-ID"] = str(self.cursor)
        url = f"{client.base_url}/v1/runs/{self.run_id}/stream"
        try:
            async with client.session.get(
                url, headers=headers, timeout=client._stream_timeout, allow_redirects=False
            ) as response:
                if response.status == 204:
                    return
                if response.status != 200:
                    answer = await _read_bounded(response, self.run_id)
                    error = error_from_answer(response.status, answer, self.run_id)
                    if response.status >= 500:
                        raise _Disconnected(str(error))
                    raise error
                decoder = SSEDecoder(max_line=client._max_line)
                async for chunk in response.content.iter_any():
                    for message in decoder.feed(chunk):
                        if message.retry is not None:
                            self.retry = message.retry / 1000
                        if message.data is None:
                            continue
                        event = self._event(message.data)
                        if self.cursor is not None and event.seq <= self.cursor:
                            self.duplicates += 1
                            continue
                        if self.cursor is not None and event.seq != self.cursor + 1:
                            raise _Disconnected(
                                f"seq {event.seq} arrived after {self.cursor}: resuming"
                            )
                        self.cursor = event.seq
                        yield event
                raise _Disconnected("the server ended the stream before the terminal event")
        except TimeoutError as error:
            raise _Disconnected(f"timed out: {_describe(error)}") from error
        except aiohttp.ClientError as error:
            raise _Disconnected(_describe(error)) from error
        except SSEProtocolError as error:
            raise ServerError(str(error), run_id=self.run_id) from error

    def _event(self, data: str) -> Event:
        try:
            return Event.model_validate_json(data)
        except pydantic.ValidationError as error:
            raise ServerError(
                f"an event the client cannot read: {_first_error(error)}", run_id=self.run_id
            ) from error


class _Disconnected(Exception):
    """The connection ended or failed in a way a reconnection may mend."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def _read_bounded(response: aiohttp.ClientResponse, run_id: uuid.UUID | None) -> bytes:
    """The whole answer body, refusing one larger than :data:`MAX_ANSWER`."""
    if response.content_length is not None and response.content_length > MAX_ANSWER:
        raise ServerError(
            f"an answer of {response.content_length} bytes is over {MAX_ANSWER}",
            status=response.status,
            run_id=run_id,
        )
    body = bytearray()
    while chunk := await response.content.read(_CHUNK):
        body += chunk
        if len(body) > MAX_ANSWER:
            raise ServerError(
                f"an answer is over {MAX_ANSWER} bytes", status=response.status, run_id=run_id
            )
    return bytes(body)


def _model(model: type[_M], answer: bytes, run_id: uuid.UUID | None) -> _M:
    try:
        return model.model_validate_json(answer)
    except pydantic.ValidationError as error:
        raise ServerError(
            f"an answer the client cannot read as {model.__name__}: {_first_error(error)}",
            run_id=run_id,
        ) from error


def _first_error(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _run_id(run_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(run_id, uuid.UUID):
        return run_id
    try:
        return uuid.UUID(run_id)
    except ValueError:
        raise RunNotFound(f"{run_id!r} is not a run id", code="run_not_found") from None


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
