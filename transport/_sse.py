"""Server-sent events: bounded per-connection writes, shared log reads (DESIGN §10).

:class:`SseStream` is one SSE response: aiohttp's ``StreamResponse`` with the
``text/event-stream`` headers, never compressed. It writes frames that were
encoded once for every client, and its heartbeats (``: hb`` comments every
``heartbeat_interval`` of silence) are written by the stream itself, so that one task
writes to a connection and every write is bounded and counted. aiohttp-sse's
``EventSourceResponse`` is not used: its ``send()`` re-encodes each frame per client
(0.36x the throughput of a fan-out) and it runs a ping task per connection, which with
1,000 streams lengthens every full pass of the garbage collector (see
``docs/benchmarks.md``). A stream writes (in batches of at most ``stream_buffer`` bytes,
or one frame if larger) while its connection holds less than ``stream_buffer`` bytes
unsent, so it never holds more than twice that (or the bound plus one frame): past the
bound a write waits for the client to read, at most ``send_timeout`` seconds, after
which the client is disconnected, counted, and resumes by cursor. The kernel-level
dead-peer timeout (``TCP_USER_TIMEOUT``) is a backstop well past the send timeout, for
a peer that vanished while the stream was idle. The first frame carries ``retry:`` with
jitter so that reconnecting browsers do not stampede.

:class:`LogReader` reads pages of a run's log for every stream of the node: streams of
one run that ask for the same page at once (streams joining together, or catching up
behind their run's hub) share one query, and each event is encoded as an SSE frame once.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web
from aiohttp.http import StreamWriter

from runtime.store import TERMINAL_EVENTS, Run
from transport._wire import dumps, event_json

if TYPE_CHECKING:
    import random
    import uuid
    from collections.abc import Awaitable, Callable, Sequence

    from runtime.config import GatewayConfig
    from runtime.store import Event, Store
    from transport._metrics import GatewayMetrics

__all__ = [
    "HEARTBEAT",
    "EncodedEvent",
    "LogReader",
    "SseStream",
    "StreamGone",
    "encode_event",
    "sse_frame",
]

_logger = structlog.get_logger("transport.sse")

#: An SSE response's headers: no cache, and no buffering by a proxy on the way.
_SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}
HEARTBEAT: Final = b": hb\n\n"
"""A heartbeat: a comment line, which every SSE client ignores."""
#: The kernel drops a connection whose sent data stays unacknowledged this long:
#: ``max(factor * send_timeout, minimum)`` seconds.
_BACKSTOP_FACTOR: Final = 4.0
_BACKSTOP_MIN: Final = 60.0


def _backstop(transport: asyncio.BaseTransport, seconds: float) -> None:
    """Have the kernel drop the connection when sent data stays unacknowledged for
    ``seconds`` (Linux ``TCP_USER_TIMEOUT``; elsewhere nothing)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = transport.get_extra_info("socket")
    if option is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def _timed_out(error: BaseException) -> bool:
    """Whether ``error`` comes from the kernel timing the connection out (ETIMEDOUT)."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno == errno.ETIMEDOUT:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class StreamGone(Exception):
    """The client went away, or stalled past the send timeout and was disconnected."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event and its SSE frame (``id:``, ``event:``, ``data:``), encoded once."""

    seq: int
    type: str
    created_at: float
    frame: bytes

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


def sse_frame(event_id: str, event: str, data: bytes) -> bytes:
    """One SSE block: ``id:``, ``event:`` and one ``data:`` line (``data`` must hold no
    line break: JSON from orjson never does), for any route's stream."""
    if any(c in event_id or c in event for c in "\r\n\x00"):
        raise ValueError("an SSE id or event name holds a line break")
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event.encode(), data)


def encode_event(event: Event) -> EncodedEvent:
    """``id: <seq>`` / ``event: <type>`` / ``data: <event JSON>`` and a blank line."""
    frame = sse_frame(str(event.seq), event.type, dumps(event_json(event)))
    return EncodedEvent(event.seq, event.type, event.created_at.timestamp(), frame)


_CANCELLED: Final = object()
"""A shared read's outcome when its reader was cancelled."""


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class LogReader:
    """Reads of runs' logs and rows, shared by the streams asking the same at once.

    The in-flight table holds one entry per read in progress, so its size is bounded by
    the number of streams.
    """

    def __init__(self, store: Callable[[], Store], page_size: int) -> None:
        self._store = store
        self._page_size = page_size
        self._inflight: dict[tuple[object, ...], asyncio.Future[object]] = {}
        self.queries = 0
        self.shared = 0

    @property
    def page_size(self) -> int:
        return self._page_size

    async def page(self, run_id: uuid.UUID, after: int) -> tuple[EncodedEvent, ...]:
        """The run's events after seq ``after`` (at most ``page_size``), encoded.

        Raises:
            RunNotFound, StoreError: as ``Store.read_events``.
        """

        async def read() -> tuple[EncodedEvent, ...]:
            events = await self._store().read_events(run_id, after=after, limit=self._page_size)
            return tuple(encode_event(event) for event in events)

        page = await self._shared(("page", run_id, after), read)
        assert isinstance(page, tuple)
        return page

    async def run(self, run_id: uuid.UUID) -> Run:
        """The run's row (``Store.get_run``)."""
        run = await self._shared(("run", run_id), lambda: self._store().get_run(run_id))
        assert isinstance(run, Run)
        return run

    async def _shared(
        self, key: tuple[object, ...], fetch: Callable[[], Awaitable[object]]
    ) -> object:
        while (pending := self._inflight.get(key)) is not None:
            # Another stream reads the same now: wait for its result without ever
            # cancelling it (our own cancellation must not end the other's read).
            await asyncio.wait([pending])
            outcome = pending.result()
            if isinstance(outcome, _Failed):
                raise outcome.error
            if outcome is not _CANCELLED:
                self.shared += 1
                return outcome
            # The reader was cancelled: read it ourselves (loop).
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.queries += 1
            result = await fetch()
        except Exception as error:
            future.set_result(_Failed(error))
            raise
        except BaseException:
            future.set_result(_CANCELLED)  # the waiters read for themselves
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]


class SseStream:
    """One SSE response with a bounded buffer and a send timeout.

    ``open()`` sends the headers; ``send()`` writes one pre-encoded block;
    ``write_now()`` writes one without waiting (for a run's hub, while the stream's task
    is parked) and ``drain()`` then waits for the client, bounded; ``close()`` ends the
    response. Not reusable.
    """

    def __init__(
        self,
        request: web.Request,
        config: GatewayConfig,
        metrics: GatewayMetrics,
        rng: random.Random,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._request = request
        self._config = config
        self._metrics = metrics
        self._retry = config.retry_base + rng.randint(0, config.retry_jitter)
        # Chunked on HTTP/1.1 (aiohttp's choice for a body of unknown length); an
        # HTTP/1.0 client gets the body as is, up to the connection's close.
        self.response = web.StreamResponse(headers={**_SSE_HEADERS, **(headers or {})})
        self._writer: StreamWriter | None = None
        self._transport: asyncio.Transport | None = None
        self._first = True
        self._open = False
        self.bytes_sent = 0
        self.events_sent = 0
        self.peak_buffered = 0

    @property
    def retry(self) -> int:
        """The ``retry:`` (milliseconds) the first frame carries."""
        return self._retry

    @property
    def connected(self) -> bool:
        """Whether the client is still there (as far as the transport knows)."""
        transport = self._request.transport
        return transport is not None and not transport.is_closing()

    async def open(self) -> None:
        """Send the response's headers (200, ``text/event-stream``)."""
        transport = self._request.transport
        if transport is None:
            raise StreamGone("client_gone")
        # The transport pauses (and a write waits) past the bound: the connection's own
        # buffer is the per-connection bound, nothing else queues for it.
        transport.set_write_buffer_limits(high=self._config.stream_buffer)
        writer = await self.response.prepare(self._request)
        assert isinstance(writer, StreamWriter)  # aiohttp's HTTP/1 payload writer
        self._writer = writer
        self._transport = transport
        self._open = True
        self._metrics.sse_opened()
        _backstop(transport, max(_BACKSTOP_FACTOR * self._config.send_timeout, _BACKSTOP_MIN))

    async def send(
        self,
        block: bytes,
        *,
        events: Sequence[EncodedEvent] = (),
        count: int = 0,
        oldest: float = 0.0,
    ) -> None:
        """Write one block (events' frames, or a comment); the first carries ``retry:``.

        The block holds ``events``' frames, or (from a run's hub, which joined them once
        for every stream) ``count`` events whose oldest was committed at ``oldest``
        (epoch seconds); the metrics count them per block.

        The write itself never waits; past ``stream_buffer`` unsent bytes the stream
        waits for the client to read, at most ``send_timeout`` seconds.

        Raises:
            StreamGone: the client went away, or did not read for ``send_timeout``
                seconds (then the connection was aborted).
        """
        if self._first:
            block = b"retry: %d\n%s" % (self._retry, block)
            self._first = False
        transport = self._request.transport
        writer = self._writer
        if transport is None or transport.is_closing() or writer is None:
            raise StreamGone("client_gone")
        try:
            # aiohttp's own drain would wait without a bound: ours follows.
            await writer.write(block, drain=False)
        except (ConnectionError, RuntimeError) as error:
            raise self._gone(error) from None
        if not self._written(transport, len(block), events, count, oldest):
            await self.drain()

    @property
    def direct(self) -> bool:
        """Whether :meth:`write_now` may write (the headers and ``retry:`` are out)."""
        return self._writer is not None and not self._first

    def write_now(self, block: bytes, framed: bytes, count: int) -> int:
        """Write ``count`` events' frames at once, without waiting: a run's hub writes
        for a stream parked with nothing pending (one writer at a time, still). The hub
        counts the metrics of a page's writes once for all its streams.

        ``framed`` is ``block`` as one HTTP/1.1 chunk (built once for every stream);
        the transport gets it as is, which is what aiohttp's writer would send.

        Returns:
            The bytes the connection holds unsent: past ``stream_buffer`` the stream's
            task must :meth:`drain` before anything more is written.

        Raises:
            StreamGone: the client went away.
        """
        transport = self._transport
        writer = self._writer
        if transport is None or transport.is_closing() or writer is None or self._first:
            raise self._gone(None)
        data = framed if writer.chunked else block
        try:
            transport.write(data)
        except (ConnectionError, RuntimeError) as error:
            raise self._gone(error) from None
        writer.output_size += len(data)  # the response's body length, as aiohttp counts it
        buffered = transport.get_write_buffer_size()
        if buffered > self.peak_buffered:
            self.peak_buffered = buffered
        self.bytes_sent += len(block)
        self.events_sent += count
        return buffered

    async def drain(self) -> None:
        """Wait for the client to read until ``stream_buffer`` bytes at most are unsent,
        at most ``send_timeout`` seconds; raises as :meth:`send`."""
        transport = self._request.transport
        writer = self._writer
        if transport is None or transport.is_closing() or writer is None:
            raise self._gone(None)
        if transport.get_write_buffer_size() <= self._config.stream_buffer:
            return
        try:
            async with asyncio.timeout(self._config.send_timeout):
                await writer.drain()
        except TimeoutError:
            transport.abort()
            self._metrics.sse_disconnected("send_timeout")
            _logger.info("stream_client_stalled", send_timeout=self._config.send_timeout)
            raise StreamGone("send_timeout") from None
        except (ConnectionError, RuntimeError) as error:
            raise self._gone(error) from None

    def _gone(self, error: BaseException | None) -> StreamGone:
        """The client went away (counted). RuntimeError: aiohttp refuses a write after
        the connection closed. A connection the kernel timed out (ETIMEDOUT) stalled as
        surely as one our own timeout aborts."""
        reason = "send_timeout" if error is not None and _timed_out(error) else "client_gone"
        self._metrics.sse_disconnected(reason)
        if reason == "send_timeout":
            _logger.info("stream_client_stalled", send_timeout=self._config.send_timeout)
        return StreamGone(reason)

    def _written(
        self,
        transport: asyncio.Transport,
        size: int,
        events: Sequence[EncodedEvent],
        count: int,
        oldest: float,
    ) -> bool:
        """Count a write; whether the connection holds at most the bound unsent."""
        buffered = transport.get_write_buffer_size()
        if buffered > self.peak_buffered:
            self.peak_buffered = buffered
        self.bytes_sent += size
        self._metrics.sse_sent(size, self.peak_buffered)
        if events:
            self.events_sent += len(events)
            self._metrics.sse_events_sent(time.time(), [e.created_at for e in events])
        elif count:
            # A batch counted once: the events, and the lag of its oldest (the batch's
            # largest), not one sample per event per client.
            self.events_sent += count
            self._metrics.sse_events.inc(count)
            self._metrics.sse_lag.observe(max(time.time() - oldest, 0.0))
        return buffered <= self._config.stream_buffer

    async def heartbeat(self) -> None:
        """Write a heartbeat comment (``: hb``); raises as :meth:`send`."""
        await self.send(HEARTBEAT)

    async def close(self) -> None:
        """End the response (after the terminal event, or when the gateway stops)."""
        if not self._open:
            return
        self._open = False
        self._metrics.sse_closed()
        if not self.connected:
            return
        try:
            async with asyncio.timeout(self._config.send_timeout):
                await self.response.write_eof()
        except TimeoutError:
            transport = self._request.transport
            if transport is not None:
                transport.abort()
        except (ConnectionError, RuntimeError):
            pass  # the client left first
