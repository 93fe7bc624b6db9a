"""One tail of a run's log per node, shared by every stream of the run (DESIGN §10).

A :class:`Hub` is created by the first stream of a run and ends with its last. Its task
belongs to the task group of the application's :class:`Hubs`, which the node's gateway
holds for as long as it serves the application (:meth:`Hubs.running`, one of its
``GATEWAY_LIFESPANS``): no hub task outlives the gateway. The task waits for the node's
LISTEN connection to say the run moved — or ``poll_interval`` at most, so a lost NOTIFY delays
an event and never loses it — reads each new page of the log once, through the shared
:class:`~transport._sse.LogReader` (each frame encoded once), joins its frames once, and
hands the same bytes to every subscriber that is live: one wake-up per run per NOTIFY,
not one per stream.

A :class:`Subscriber` holds at most ``stream_buffer`` bytes pending (plus the page that
passed the bound). A subscriber that is not live — it joined behind the hub, or fell
behind by passing its bound — reads its gap from the log itself, page by page, and
becomes live again once its cursor reaches the hub's head. The hub's pages are contiguous
from its head, and a live subscriber takes only the events past its own cursor, so every
subscriber gets every event once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio
import structlog

from transport._sse import StreamGone

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator, Callable, Iterator

    from anyio.abc import TaskGroup

    from runtime.store import Listener, Watch
    from transport._metrics import GatewayMetrics
    from transport._sse import EncodedEvent, LogReader, SseStream

__all__ = ["PUBLISH_SLICE", "Hub", "Hubs", "HubsClosed", "Subscriber"]

_logger = structlog.get_logger("transport.hub")

PUBLISH_SLICE: Final = 128
"""Subscribers a hub hands a page to between two turns of the event loop."""


@dataclass(slots=True)
class _Chunk:
    """Frames of consecutive events, joined once, and what the metrics need of them."""

    block: bytes
    count: int
    last_seq: int
    terminal: bool
    oldest: float
    """The oldest event's commit time (epoch seconds)."""
    framed: bytes
    """``block`` as one HTTP/1.1 chunk, for the streams the hub writes to itself."""


def _chunk(events: tuple[EncodedEvent, ...]) -> _Chunk:
    block = b"".join(e.frame for e in events)
    return _Chunk(
        block,
        len(events),
        events[-1].seq,
        events[-1].terminal,
        min(e.created_at for e in events),
        b"%x\r\n%s\r\n" % (len(block), block),
    )


@dataclass(slots=True)
class _Tally:
    """The metrics of the writes the hub made for one page, counted once."""

    writes: int = 0
    size: int = 0
    events: int = 0
    peak: int = 0

    def written(self, size: int, events: int, buffered: int) -> None:
        self.writes += 1
        self.size += size
        self.events += events
        self.peak = max(self.peak, buffered)


@dataclass(eq=False, slots=True)
class Subscriber:
    """One stream's place in a hub: its cursor and its bounded pending bytes."""

    cursor: int
    """The last seq handed to this stream (pending or written)."""
    bound: int
    stream: SseStream
    last_write: float = 0.0
    """When the stream last wrote (the loop's clock), for its heartbeats."""
    direct: bool = False
    """The stream's task is parked with nothing pending: the hub writes for it."""
    draining: bool = False
    """A write by the hub passed the bound: the task must wait for the client."""
    ended: bool = False
    """The hub wrote the run's terminal event."""
    gone: str | None = None
    """The client went away during a write by the hub (the reason, counted)."""
    live: bool = False
    """The hub appends its pages here; otherwise the stream reads its gap itself."""
    pending: list[_Chunk] = field(default_factory=list)
    pending_bytes: int = 0
    fell_behind: int = 0
    """Times the hub stopped feeding this subscriber (its bound was full)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> list[_Chunk]:
        """The pending chunks, oldest first; the subscriber holds none after."""
        chunks, self.pending, self.pending_bytes = self.pending, [], 0
        return chunks

    def offer(
        self, events: tuple[EncodedEvent, ...], chunk: _Chunk, now: float, tally: _Tally
    ) -> None:
        """Hand over the events past the cursor (``chunk``: all of them, joined): written
        at once while the stream's task is parked, else appended to its pending bytes."""
        if not self.live or self.gone is not None:
            return
        if self.pending_bytes >= self.bound:
            self.live = False  # fell behind: it reads its gap from the log
            self.fell_behind += 1
            self.wake.set()
            return
        if events[0].seq <= self.cursor:
            events = tuple(e for e in events if e.seq > self.cursor)
            if not events:
                return
            chunk = _chunk(events)
        if self.direct:
            try:
                buffered = self.stream.write_now(chunk.block, chunk.framed, chunk.count)
            except StreamGone as gone:
                self.gone = gone.reason
                self.direct = False
                self.wake.set()
                return
            tally.written(len(chunk.block), chunk.count, buffered)
            self.cursor = chunk.last_seq
            self.last_write = now
            fits = buffered <= self.bound
            if not fits or chunk.terminal:
                self.draining = not fits
                self.ended = chunk.terminal
                self.direct = False
                self.wake.set()
            return
        self.pending.append(chunk)
        self.pending_bytes += len(chunk.block)
        self.cursor = chunk.last_seq
        self.wake.set()


class Hub:
    """The tail of one run's log for the subscribers of this node."""

    def __init__(
        self,
        run_id: uuid.UUID,
        head: int,
        metrics: GatewayMetrics,
        release: Callable[[], object],
    ) -> None:
        self.run_id = run_id
        self._metrics = metrics
        self._release = release
        self.head = head
        """The last seq the hub read; its pages go on from here."""
        self.finished = False
        """The run ended and the hub read its last event (or it was pruned)."""
        self.error: Exception | None = None
        self.subscribers: set[Subscriber] = set()
        self.scope = anyio.CancelScope()
        """The hub's task runs in it: cancelled when the last subscriber leaves."""
        self.done = anyio.Event()
        """Set once the hub's task has ended (cancelled, finished or failed)."""
        self.pages = 0

    def release(self) -> None:
        """Unregister the hub's watch of the run (idempotent)."""
        self._release()

    def join(self, subscriber: Subscriber) -> None:
        """Live at once if the subscriber's cursor is at or past the hub's head."""
        subscriber.live = subscriber.cursor >= self.head
        self.subscribers.add(subscriber)

    def catch_up(self, subscriber: Subscriber) -> None:
        """After the subscriber read its gap itself: live again if it reached the head."""
        if subscriber.cursor >= self.head:
            subscriber.live = True

    async def _publish(self, page: tuple[EncodedEvent, ...]) -> None:
        """Hand ``page`` to every live subscriber, ``PUBLISH_SLICE`` of them between
        two turns of the event loop: a page for thousands of streams never holds the
        loop for long, and what the node does meanwhile (the run's next events among
        it) goes into the hub's next page rather than waiting behind this one."""
        chunk = _chunk(page)
        # Set first: a stream that joins during the page is live only if it read the
        # page itself (a joiner is not among the subscribers this page goes to).
        self.head = chunk.last_seq
        self.pages += 1
        loop = asyncio.get_running_loop()
        tally = _Tally()
        subscribers = tuple(self.subscribers)
        for start in range(0, len(subscribers), PUBLISH_SLICE):
            if start:
                await asyncio.sleep(0)
            now = loop.time()
            for subscriber in subscribers[start : start + PUBLISH_SLICE]:
                if subscriber in self.subscribers:  # not one that left meanwhile
                    subscriber.offer(page, chunk, now, tally)
        if tally.writes:
            self._metrics.sse_sent(tally.size, tally.peak)
            self._metrics.sse_events.inc(tally.events)
            # The page's lag, once for all the streams written to (oldest event).
            self._metrics.sse_lag.observe(max(time.time() - chunk.oldest, 0.0))
        if chunk.terminal:
            self._end()

    def _end(self) -> None:
        self.finished = True
        for subscriber in self.subscribers:
            subscriber.wake.set()

    async def tail(self, reader: LogReader, watch: Watch, poll_interval: float) -> None:
        """Read the run's new pages until its terminal event; errors end the hub (its
        subscribers' streams end, and their clients resume by cursor).

        ``watch`` was registered before the first read: a commit between a read and the
        wait wakes the hub.
        """
        try:
            while not self.finished:
                page = await reader.page(self.run_id, self.head)
                if page:
                    # Every live subscriber would have read this page itself.
                    live = sum(1 for s in self.subscribers if s.live)
                    reader.shared += max(0, live - 1)
                    await self._publish(page)
                if len(page) == reader.page_size or self.finished:
                    continue
                woken = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_interval):
                        woken = await watch.wait()
                if not woken:
                    # Quiet: the run may have ended with nothing left to read (a
                    # pruned terminal event); the streams would wait forever.
                    run = await reader.run(self.run_id)
                    if run.terminal and self.head >= run.last_seq:
                        self._end()
        except Exception as error:  # handed to every subscriber
            self.error = error
            _logger.warning("hub_failed", run_id=str(self.run_id), error=str(error))
            self._end()


class HubsClosed(Exception):
    """The hubs are not running: the gateway is not serving the application (yet, or
    any more)."""


class Hubs:
    """The node's hubs, one per run with subscribers.

    Their tasks belong to the task group :meth:`running` holds; the node's gateway holds
    it for as long as it serves the application, so leaving it — after the application's
    shutdown ended the streams — cancels whatever hub is left and waits for it.
    """

    def __init__(
        self,
        reader: LogReader,
        listener: Callable[[], Listener],
        poll: float,
        metrics: GatewayMetrics,
    ) -> None:
        self._reader = reader
        self._metrics = metrics
        self._listener = listener
        self._poll = poll
        self._hubs: dict[uuid.UUID, Hub] = {}
        self._group: TaskGroup | None = None
        self._change: anyio.Event | None = None
        self.fell_behind = 0
        """Times a subscriber fell behind its hub and read its gap from the log."""

    def __len__(self) -> int:
        return len(self._hubs)

    def get(self, run_id: uuid.UUID) -> Hub | None:
        return self._hubs.get(run_id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Own the hubs' tasks for the block (a task group, entered and left in the
        caller's task). Leaving cancels every hub's task and waits for them: a hub's task
        has no shielded step, so each ends at its next checkpoint.

        Raises:
            RuntimeError: the hubs are running already.
        """
        if self._group is not None:
            raise RuntimeError("the hubs are running already")
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                try:
                    yield
                finally:
                    self._group = None
                    group.cancel_scope.cancel()
        finally:
            for hub in self._hubs.values():
                hub.release()

    @contextlib.contextmanager
    def subscribe(self, run_id: uuid.UUID, subscriber: Subscriber) -> Iterator[Hub]:
        """The run's hub (started if there is none) with ``subscriber`` joined, for the
        block; the hub's task is cancelled when its last subscriber leaves.

        A new hub registers its watch of the run here, before anything is written: a
        listener at its ``listener_max_waiters`` refuses the subscription, not a stream
        already open.

        Raises:
            HubsClosed: the gateway is not serving (starting or stopping).
            StoreOverloaded: a new hub, and the listener's waiters are at their bound.
            StoreClosed, NodeClosed: a new hub, and the node's listener is not open.
        """
        group = self._group
        if group is None:
            raise HubsClosed("the gateway is not serving run streams (starting or stopping)")
        hub = self._hubs.get(run_id)
        if hub is None or hub.error is not None:
            hub = self._start(group, run_id, subscriber.cursor)
            self._hubs[run_id] = hub
        hub.join(subscriber)
        self._changed()
        try:
            yield hub
        finally:
            self.fell_behind += subscriber.fell_behind
            hub.subscribers.discard(subscriber)
            if not hub.subscribers:
                if self._hubs.get(run_id) is hub:
                    del self._hubs[run_id]
                hub.scope.cancel()
                hub.release()
            self._changed()

    def _start(self, group: TaskGroup, run_id: uuid.UUID, head: int) -> Hub:
        watches = contextlib.ExitStack()
        watch = watches.enter_context(self._listener().watch(run_id))
        hub = Hub(run_id, head, self._metrics, watches.close)
        try:
            group.start_soon(self._tail, hub, watch, name=f"hub-{run_id}")
        except BaseException:
            hub.release()
            raise
        return hub

    async def _tail(self, hub: Hub, watch: Watch) -> None:
        try:
            with hub.scope:
                await hub.tail(self._reader, watch, self._poll)
        finally:
            hub.release()
            hub.done.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checked again each time a stream joins or
        leaves a hub (no polling; bound the wait with a cancel scope)."""
        while not condition():
            if self._change is None:
                self._change = anyio.Event()
            await self._change.wait()

    def _changed(self) -> None:
        if self._change is not None:
            self._change.set()
            self._change = None
