"""Reader wake-ups: one LISTEN connection fanned out to bounded waiters (DESIGN §4, §7).

A NOTIFY is only a hint that something was committed. Waiters always re-read the rows
(events after their cursor, frames after theirs) and never trust a payload; a waiter that
hears nothing for ``listener_poll_interval`` seconds wakes anyway and re-reads, which
covers a notification lost with a dropped connection. Typical use, registering *before*
the first read so a commit between the read and the wait is never missed::

    with listener.watch(run_id) as watch:
        while True:
            for event in await store.read_events(run_id, after=cursor):
                cursor = event.seq
                ...
            await watch.wait()

Each watch holds one coalescing wake-up flag, so a burst of notifications costs a waiter
one re-read, and memory stays bounded by ``listener_max_waiters``. A waiter that needs no
task of its own (a run actor: a wake-up becomes a message in its mailbox) subscribes a
callback instead (:meth:`Listener.subscribe`); the listener calls it on its own task, so
it must return at once and never raise (``ActorRef.try_tell`` is the typical callback).

When the LISTEN connection breaks (at connect, at LISTEN or while waiting; killed, reset
or timed out by TCP keepalive), every waiter is woken (notifications may have been lost)
and the listener reconnects with capped exponential backoff, waking everyone again once
it is back. Only
``listener_reconnect_attempts`` attempts in a row without a connection that lasted end it:
``async with Listener`` then raises ``DatabaseUnavailable`` for its supervisor to handle.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self, TypeVar
from uuid import UUID

import anyio
import psycopg
from psycopg import sql

from runtime.store import _db
from runtime.store._deadline import CallDeadline
from runtime.store._log import StoreLogger
from runtime.store.dsn import dsn_host
from runtime.store.errors import DatabaseUnavailable, StoreClosed, StoreError, StoreOverloaded
from runtime.store.events import EVENTS_CHANNEL
from runtime.store.frames import FRAMES_CHANNEL
from runtime.store.lifecycle import LIFECYCLE_CHANNEL
from runtime.store.runs import CANCELS_CHANNEL

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from anyio.abc import TaskStatus
    from psycopg.rows import TupleRow

    from runtime.store.config import StoreConfig

__all__ = ["LISTENER_APPLICATION_NAME", "Listener", "ListenerStatistics", "Subscription", "Watch"]

LISTENER_APPLICATION_NAME = "warden-listener"
"""``application_name`` of the listener's LISTEN connection."""

_logger = StoreLogger("runtime.store.listener")

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
_STABLE_AFTER = 10.0
"""Seconds a LISTEN connection must last for its reconnect attempts to stop counting."""
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ListenerStatistics:
    """A snapshot of the listener.

    Attributes:
        waiters: watches registered now.
        max_waiters: the bound on watches.
        notifications: notifications received.
        wakeups: watches woken by notifications.
        malformed: notifications whose payload could not be parsed (everyone was woken);
            a notification on a channel nobody waits on is not parsed at all.
        reconnects: times the LISTEN connection was re-established.
        failed_reconnects: reconnect attempts that failed (at connect or at LISTEN).
    """

    waiters: int
    max_waiters: int
    notifications: int
    wakeups: int
    malformed: int
    reconnects: int
    failed_reconnects: int


class Watch:
    """Wake-ups for one run on one channel; create with :meth:`Listener.watch`."""

    __slots__ = ("_flag", "_poll", "channel", "latest_seq", "run_id")

    def __init__(self, channel: str, run_id: UUID, poll_interval: float) -> None:
        self.channel = channel
        self.run_id = run_id
        self.latest_seq = 0
        """Highest seq named by a notification so far (a hint; re-read the rows)."""
        self._flag = asyncio.Event()
        self._poll = poll_interval

    def _wake(self, seq: int | None) -> None:
        if seq is not None and seq > self.latest_seq:
            self.latest_seq = seq
        self._flag.set()

    async def wait(self) -> bool:
        """Wait for a wake-up, at most the poll interval; then re-read the rows.

        Returns:
            ``True`` if a notification (or a reconnect) woke the watch, ``False`` if the
            poll interval ran out first.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll):
                await self._flag.wait()
        woken = self._flag.is_set()
        self._flag.clear()
        return woken


class Subscription:
    """A callback for one run on one channel; create with :meth:`Listener.subscribe`.

    The callback gets the seq the notification named, or ``None`` when every waiter is
    woken (a reconnect: anything may have been missed). It runs on the listener's task:
    it must not block, and an error it raises is logged, never propagated.
    """

    __slots__ = ("_callback", "channel", "run_id")

    def __init__(
        self, channel: str, run_id: UUID, callback: Callable[[int | None], object]
    ) -> None:
        self.channel = channel
        self.run_id = run_id
        self._callback = callback

    def _wake(self, seq: int | None) -> None:
        try:
            self._callback(seq)
        except Exception as exc:  # a waiter's bug must not end the node's only LISTEN loop
            _logger.error(
                "listener_callback_failed", run_id=str(self.run_id), error=type(exc).__name__
            )


_W = TypeVar("_W", "Watch", Subscription)


class Listener:
    """One LISTEN connection for the node, fanning wake-ups out to watches.

    Single-use: ``async with Listener(dsn, config) as listener``. The constructor does
    no work; entering connects, LISTENs and starts the reader in the listener's own task
    group; leaving stops it and closes the connection.
    """

    def __init__(self, dsn: str, config: StoreConfig) -> None:
        self._dsn = dsn
        self._config = config
        self._channels = (EVENTS_CHANNEL, FRAMES_CHANNEL, CANCELS_CHANNEL, LIFECYCLE_CHANNEL)
        self._watches: dict[tuple[str, UUID], set[Watch | Subscription]] = {}
        self._count = 0
        # Waiters per channel: a notification on a channel nobody waits on is not parsed
        # (the events channel names up to a batch's worth of runs per commit).
        self._per_channel = dict.fromkeys(self._channels, 0)
        self._conn: psycopg.AsyncConnection[TupleRow] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._state = "not open yet"
        self._notifications = 0
        self._wakeups = 0
        self._malformed = 0
        self._reconnects = 0
        self._failed_reconnects = 0
        self._info = ""

    def __repr__(self) -> str:
        return f"<Listener host={dsn_host(self._dsn)!r} {self._state}>"

    async def __aenter__(self) -> Self:
        if self._state != "not open yet":
            raise StoreClosed("listener", self._state)
        self._info = _db.conninfo(
            self._dsn, self._config, application_name=LISTENER_APPLICATION_NAME
        )
        self._state = "open"
        stack = contextlib.AsyncExitStack()
        try:
            self._conn = await self._connect()
            stack.push_async_callback(self._close_connection)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._read_loop)
        except BaseException:
            self._state = "closed"
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        assert self._stack is not None
        try:
            await self._stack.aclose()
        except BaseExceptionGroup as group:
            # The reader gave up (its budget was spent): raise its error as itself.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], StoreError):
                raise group.exceptions[0] from None
            raise
        finally:
            self._wake_all(None)

    def statistics(self) -> ListenerStatistics:
        """Return a frozen snapshot of the listener's counters."""
        return ListenerStatistics(
            waiters=self._count,
            max_waiters=self._config.listener_max_waiters,
            notifications=self._notifications,
            wakeups=self._wakeups,
            malformed=self._malformed,
            reconnects=self._reconnects,
            failed_reconnects=self._failed_reconnects,
        )

    @contextlib.contextmanager
    def subscribe(
        self,
        run_id: UUID,
        callback: Callable[[int | None], object],
        *,
        channel: str = EVENTS_CHANNEL,
    ) -> Iterator[Subscription]:
        """Call ``callback`` at every wake-up for ``run_id`` on ``channel``, for the
        duration of the block (a :class:`Subscription`; see there for the rules).

        Unlike a :class:`Watch`, a subscription needs no task waiting on it and never
        wakes by itself: a subscriber that must re-read even without notifications polls
        on its own schedule.

        Raises:
            StoreOverloaded: ``listener_max_waiters`` waiters are registered already.
            StoreClosed: the listener is not open.
        """
        with self._registered(Subscription(channel, run_id, callback)) as subscription:
            yield subscription

    @contextlib.contextmanager
    def watch(self, run_id: UUID, *, channel: str = EVENTS_CHANNEL) -> Iterator[Watch]:
        """Register a :class:`Watch` for ``run_id`` for the duration of the block.

        Raises:
            StoreOverloaded: ``listener_max_waiters`` watches are registered already.
            StoreClosed: the listener is not open.
        """
        with self._registered(Watch(channel, run_id, self._config.listener_poll_interval)) as watch:
            yield watch

    @contextlib.contextmanager
    def _registered(self, waiter: _W) -> Iterator[_W]:
        if self._state != "open":
            raise StoreClosed("listener", self._state)
        if waiter.channel not in self._channels:
            raise ValueError(f"not listening on {waiter.channel!r}")
        if self._count >= self._config.listener_max_waiters:
            raise StoreOverloaded(f"listener waiters ({self._config.listener_max_waiters})")
        key = (waiter.channel, waiter.run_id)
        self._watches.setdefault(key, set()).add(waiter)
        self._count += 1
        self._per_channel[waiter.channel] += 1
        try:
            yield waiter
        finally:
            group = self._watches.get(key)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._watches[key]
            self._count -= 1
            self._per_channel[waiter.channel] -= 1

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        """Connect and LISTEN on every channel, within ``connect_timeout`` in all.

        Raises:
            DatabaseUnavailable: any failure, at connect or at LISTEN (translated).
        """
        conn = await _db.connect(self._info)
        host = dsn_host(self._dsn)
        try:
            async with (
                CallDeadline(
                    self._config.connect_timeout,
                    lambda: DatabaseUnavailable(host, "LISTEN did not finish in time"),
                ),
                _db.translated(self._dsn),
            ):
                for channel in self._channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await conn.close()
            raise
        return conn

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await conn.close()

    async def _read_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        clock = asyncio.get_running_loop().time
        failed = 0  # reconnect attempts in a row without a connection that lasted
        while True:
            conn = self._conn
            assert conn is not None
            connected_at = clock()
            try:
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload)
                reason = "the connection was closed"
            except psycopg.Error as exc:
                reason = _db.describe(exc)
            # The connection broke: anything sent meanwhile is lost, so everyone re-reads.
            await self._close_connection()
            self._wake_all(None)
            _logger.warning("listener_connection_lost", reason=reason)
            if clock() - connected_at >= _STABLE_AFTER:
                failed = 0
            self._conn, failed = await self._reconnect(failed)

    async def _reconnect(self, failed: int) -> tuple[psycopg.AsyncConnection[TupleRow], int]:
        """Reconnect within the budget; return the connection and the attempts that count
        against the budget so far (a connection that dies young counts as failed).

        Raises:
            DatabaseUnavailable: ``listener_reconnect_attempts`` attempts in a row failed.
        """
        budget = self._config.listener_reconnect_attempts
        delay = min(_BACKOFF_FIRST * 2**failed, _BACKOFF_MAX) if failed else 0.0
        while True:
            await anyio.sleep(delay)
            failed += 1
            try:
                conn = await self._connect()
            except DatabaseUnavailable as exc:
                self._failed_reconnects += 1
                _logger.warning("listener_reconnect_failed", attempt=failed, reason=exc.reason)
                if failed >= budget:
                    raise DatabaseUnavailable(
                        exc.host,
                        f"the LISTEN connection could not be re-established in {failed}"
                        f" reconnect attempts: {exc.reason}",
                    ) from exc
                delay = min(_BACKOFF_FIRST * 2 ** (failed - 1), _BACKOFF_MAX)
                continue
            self._reconnects += 1
            _logger.info("listener_reconnected", attempt=failed)
            self._wake_all(None)  # re-read by cursor: nothing sent meanwhile is missed
            return conn, failed

    def _wake_all(self, channel: str | None) -> None:
        for (watch_channel, _), group in self._watches.items():
            if channel is None or watch_channel == channel:
                for watch in tuple(group):  # a callback may add or remove waiters
                    watch._wake(None)
                    self._wakeups += 1

    def _dispatch(self, channel: str, payload: str) -> None:
        self._notifications += 1
        if not self._per_channel.get(channel):
            return  # nobody to wake
        if payload == "*":
            self._wake_all(channel)
            return
        try:
            heads = [_parse_head(part) for part in payload.split(",")]
        except ValueError:
            self._malformed += 1
            _logger.warning("listener_payload_malformed", channel=channel, size=len(payload))
            self._wake_all(channel)
            return
        for run_id, seq in heads:
            for watch in tuple(self._watches.get((channel, run_id), ())):
                watch._wake(seq)
                self._wakeups += 1


def _parse_head(part: str) -> tuple[UUID, int]:
    run_id, sep, seq = part.partition(":")
    if not sep:
        raise ValueError(part)
    return UUID(run_id), int(seq)
