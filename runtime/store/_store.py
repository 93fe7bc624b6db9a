"""The :class:`Store` facade: one object, one pool, one group-commit writer.

Every call is checked before anything is sent (:mod:`runtime.store._args`), and bounded
by a client-side deadline (``call_timeout``; a lease renewal's is also below the time its
lease has left), past which it raises ``StoreTimeout`` without waiting for psycopg's own
cancellation (:mod:`runtime.store._deadline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import random
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, Self, get_args

import anyio

from runtime.store import (
    _args,
    _codec,
    _db,
    attempts,
    chain,
    events,
    frames,
    leases,
    lifecycle,
    logged_memory,
    memory,
    nodes,
    queries,
    recovery,
    retention,
    runs,
    tokens,
)
from runtime.store._args import INT32, MAX_ID_LENGTH, identifier, integer, text
from runtime.store._log import StoreLogger
from runtime.store._notifier import Notifier
from runtime.store._pool import StorePool
from runtime.store._status import RunStatus
from runtime.store._writer import GroupCommitWriter, WriterStatistics
from runtime.store.config import MAX_TTL
from runtime.store.dsn import check_dsn, dsn_host
from runtime.store.errors import InvalidArgument, StoreClosed, StoreTimeout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
    from types import TracebackType
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._histogram import HistogramSnapshot
    from runtime.store.config import StoreConfig

__all__ = ["Store", "StoreStatistics"]

_logger = StoreLogger("runtime.store")

_DRAIN_TIMEOUT = 10.0
_RUN_STATUSES: Final = frozenset(get_args(RunStatus))
_OUTCOMES: Final = frozenset(get_args(attempts.AttemptOutcome))


def _positive_ttl(ttl: object, what: str) -> float:
    """``ttl`` if it is a positive number of seconds up to :data:`MAX_TTL`, else
    ``ValueError``.

    ``0`` is not "the default" (``None`` is) and a negative or NaN TTL is a caller's bug.
    The upper bound keeps ``now() + ttl`` a timestamp both PostgreSQL and Python can
    hold: past the year 9999 the row would be written but could never be read back.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
        raise ValueError(
            f"{what} must be a positive number of seconds up to {MAX_TTL:g}, not {ttl!r}"
        )
    return float(ttl)


def _window(seconds: object, what: str) -> float:
    """``seconds`` if it is a finite number from 0 to :data:`MAX_TTL`, else ``ValueError``."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_TTL
    ):
        raise InvalidArgument(what, f"must be from 0 to {MAX_TTL:g} seconds, not {seconds!r}")
    return float(seconds)


def _optional_text(value: object, name: str, max_length: int | None) -> str | None:
    return None if value is None else text(value, name, max_length=max_length)


def _check_run_filters(status: object, run_type: object, session_id: object, owner: object) -> None:
    """The filters of a runs listing, checked (``None``: no filter)."""
    if status is not None and status not in _RUN_STATUSES:
        raise InvalidArgument("status", f"{status!r} is not a run status")
    for value, name in ((run_type, "run_type"), (session_id, "session_id"), (owner, "owner")):
        _optional_text(value, name, MAX_ID_LENGTH)


class _State(enum.Enum):
    NEW = "not open yet"
    OPEN = "open"
    CLOSED = "closed"


class _LeaseClocks:
    """When each lease this store acquired or renewed expires at the latest, by the
    event loop's clock: a renewal's deadline stays below the time its lease has left.

    The database sets ``expires_at = now() + ttl`` after the call was sent, so "sent at +
    ttl" is never later than the real expiry. A bounded LRU: a lease it forgot renews
    with the plain call deadline.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ends: OrderedDict[tuple[UUID, str, int], float] = OrderedDict()

    def held(self, key: tuple[UUID, str, int], sent_at: float, ttl: float) -> None:
        self._ends[key] = sent_at + ttl
        self._ends.move_to_end(key)
        if len(self._ends) > self._capacity:
            self._ends.popitem(last=False)

    def lost(self, key: tuple[UUID, str, int]) -> None:
        self._ends.pop(key, None)

    def left(self, key: tuple[UUID, str, int], now: float) -> float | None:
        end = self._ends.get(key)
        return None if end is None else end - now


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of the store.

    Attributes:
        writer: the group-commit writer's counters.
        pool: psycopg_pool's ``get_stats()`` (pool size, available, waiting, ...), and
            ``connection_failures``: failed attempts to open a pooled connection.
        append_latency: seconds from an append call to its outcome, as a fixed-bucket
            histogram (cumulative counts per upper bound).
        batch_size: appends per group-commit batch, as a fixed-bucket histogram.

    .. versionadded:: 0.5 ``append_latency`` and ``batch_size``.
    """

    writer: WriterStatistics
    pool: dict[str, int]
    append_latency: HistogramSnapshot
    batch_size: HistogramSnapshot


class Store:
    """The durable store on one PostgreSQL database (DESIGN §5-§7).

    Single-use and explicit: the constructor only records its arguments; ``async with``
    opens the pool and starts the group-commit writer in the store's own task group, and
    leaving the block drains queued appends (bounded), stops the writer and closes the
    pool. A closed store is never reopened::

        async with Store(dsn, StoreConfig()) as store:
            run, created = await store.create_run(owner="alice", session_id="s1",
                                                   run_type="chat")
            lease = await store.acquire_lease(run.run_id, owner_node="node-a:boot")
            seq = await store.append_event(run.run_id, lease.epoch, "turn.opened", {})

    Migrations are not applied here; run :func:`runtime.store.apply_migrations` first.

    Raises (any call):
        TypeError, InvalidArgument: a bad argument; nothing was sent.
        DatabaseUnavailable: the database cannot be reached (``StoreTimeout``: the call
            ran out of its deadline; its outcome is unknown).
        StoreOverloaded: every pooled connection stayed in use.
        StoreClosed: the store is not open.
    """

    def __init__(self, dsn: str, config: StoreConfig) -> None:
        self._dsn = dsn
        # Parsed once: every call names the host if it times out, and parsing the DSN
        # (libpq's conninfo parser) on every checkout cost a sixth of a busy node's CPU.
        self._host = dsn_host(dsn)
        self._config = config
        self._state = _State.NEW
        self._stack: contextlib.AsyncExitStack | None = None
        self._pool: StorePool | None = None
        self._writer: GroupCommitWriter | None = None
        self._notifier: Notifier | None = None
        self._leases = _LeaseClocks(config.append_head_cache_size)
        self._retry_seed = (
            config.retry_seed
            if config.retry_seed is not None
            else random.SystemRandom().randrange(2**32)
        )
        self._rng = random.Random(self._retry_seed)

    def __repr__(self) -> str:
        return f"<Store host={self._host!r} {self._state.value}>"

    @property
    def config(self) -> StoreConfig:
        """The configuration the store was built with."""
        return self._config

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise StoreClosed("store", self._state.value)
        check_dsn(self._dsn)
        self._state = _State.OPEN
        stack = contextlib.AsyncExitStack()
        config = self._config
        try:
            self._pool = await stack.enter_async_context(
                StorePool(self._dsn, config, name="warden-store").opened()
            )
            self._notifier = Notifier(
                self._pool,
                events.EVENTS_CHANNEL,
                max_runs=config.append_batch_size,
                timeout=config.call_timeout,
            )
            self._writer = GroupCommitWriter(self._dsn, config, self._notifier, self._rng)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            await task_group.start(self._pool.run_doctor)
            await task_group.start(self._notifier.run)
            await task_group.start(self._writer.run)
        except BaseException:
            self._state = _State.CLOSED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._stack = stack
        _logger.info("store_opened", host=self._host, retry_seed=self._retry_seed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = _State.CLOSED
        assert self._stack is not None
        assert self._writer is not None
        assert self._notifier is not None
        self._writer.stop_accepting()
        # Let appends already queued commit, within a bound, before the writer stops.
        with anyio.move_on_after(_DRAIN_TIMEOUT, shield=True):
            await self._writer.wait_idle()
            await self._notifier.wait_idle()
        await self._stack.aclose()
        _logger.info("store_closed", host=self._host)

    def statistics(self) -> StoreStatistics:
        """Return a frozen snapshot of the writer's and the pool's counters."""
        if self._writer is None or self._pool is None:
            raise StoreClosed("store", self._state.value)
        writer = self._writer.statistics()
        return StoreStatistics(
            writer, self._pool.statistics(), writer.append_latency, writer.batch_size
        )

    @contextlib.asynccontextmanager
    async def _connection(
        self, operation: str, seconds: float | None = None
    ) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """A pooled connection for one call, all of it bounded by ``seconds`` (default
        ``call_timeout``): the wait for a connection, the statements, cancelling them."""
        if self._state is not _State.OPEN or self._pool is None:
            raise StoreClosed("store", self._state.value)
        limit = self._config.call_timeout if seconds is None else seconds
        deadline = asyncio.get_running_loop().time() + limit
        expired = self._expired(operation, limit)
        async with self._pool.connection(deadline, expired) as conn, _db.translated(self._dsn):
            yield conn

    def _expired(self, operation: str, seconds: float) -> Callable[[], StoreTimeout]:
        host = self._host
        return lambda: StoreTimeout(host, operation, seconds)

    def _encode(self, value: object, what: str) -> bytes:
        return _codec.encode(value, what=what, limit=self._config.payload_limit)

    def _lease_ttl(self, ttl: float | None) -> float:
        return self._config.lease_ttl if ttl is None else _positive_ttl(ttl, "lease ttl")

    def _limit(self, limit: int) -> int:
        integer(limit, "limit")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return min(limit, self._config.read_limit)

    # -- runs ---------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        owner: str,
        session_id: str,
        run_type: str,
        input: object = None,  # the API's own word (DESIGN §10)
        idempotency_key: str | None = None,
        run_id: UUID | None = None,
        traceparent: str | None = None,
    ) -> tuple[runs.Run, bool]:
        """Create a run, idempotently by ``(owner, idempotency_key)`` (or a chosen ``run_id``).

        ``traceparent`` (a W3C trace context) is kept on the run: its lifecycle entries
        and the events it writes before consuming a frame carry it.

        Returns:
            ``(run, created)``; a repeat of the same request (same owner, key, session,
            run type, input and chosen ``run_id``) returns the original run and ``False``.

        Raises:
            RunConflict: the key or the chosen ``run_id`` belongs to a different request
                (another owner's run is never returned); nothing written.
            PayloadNotSerializable, PayloadTooLarge: bad ``input``; nothing written.
        """
        identifier(owner, "owner")
        identifier(session_id, "session_id")
        identifier(run_type, "run_type")
        if idempotency_key is not None:
            identifier(idempotency_key, "idempotency_key")
        if run_id is not None:
            _args.run_id(run_id)
        _args.traceparent(traceparent)
        data = self._encode(input, "run input")
        async with self._connection("create_run") as conn:
            return await runs.create_run(
                conn,
                owner=owner,
                session_id=session_id,
                run_type=run_type,
                input_=data,
                idempotency_key=idempotency_key,
                run_id=run_id,
                traceparent=traceparent,
            )

    async def get_run(self, run_id: UUID) -> runs.Run:
        """The run's current row. Raises ``RunNotFound``."""
        _args.run_id(run_id)
        async with self._connection("get_run") as conn:
            return await runs.get_run(conn, run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        run_type: str | None = None,
        session_id: str | None = None,
        owner: str | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> list[runs.Run]:
        """Runs matching the filters, newest first; page with ``before=last.created_at``."""
        _check_run_filters(status, run_type, session_id, owner)
        if before is not None and not isinstance(before, datetime):
            raise TypeError(f"before must be a datetime, not {type(before).__name__}")
        async with self._connection("list_runs") as conn:
            return await runs.list_runs(
                conn,
                status=status,
                run_type=run_type,
                session_id=session_id,
                owner=owner,
                before=before,
                limit=self._limit(limit),
            )

    async def request_cancel(
        self, run_id: UUID, *, reason: object = None, traceparent: str | None = None
    ) -> runs.CancelRequest:
        """Record a cancel request and append ``run.cancel_requested`` (idempotent), which
        carries ``traceparent``; the run's ``run.canceled`` carries it too."""
        _args.run_id(run_id)
        _args.traceparent(traceparent)
        data = self._encode({"reason": reason}, "cancel reason")
        async with self._connection("request_cancel") as conn:
            request = await runs.request_cancel(conn, run_id, reason=data, traceparent=traceparent)
        if request.requested and self._writer is not None:
            # It moved the run's log head: spare the writer a refused first try.
            self._writer.forget_head(run_id)
        return request

    # -- events -------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: UUID,
        epoch: int,
        new_events: Sequence[events.NewEvent],
        *,
        writer: events.Writer | None = None,
        traceparent: str | None = None,
    ) -> list[int]:
        """Append events as the holder of lease ``epoch``; return their seqs after commit.

        Group-committed with concurrent appends (``docs/store.md``, "Appending events").
        Bounded by ``append_queue_timeout`` to get into the writer's queue, then by
        ``append_timeout`` (``StoreTimeout``, outcome unknown). ``writer`` (the executor's
        node id and attempt) is recorded with each event and covered by its hash;
        ``traceparent`` (the W3C trace context of the request that caused the events) is
        recorded with each event and not hashed.

        Once the run's ``run.cancel_requested`` is committed, only
        :data:`~runtime.store.CANCEL_BOOKKEEPING` events are accepted.

        Raises:
            PayloadNotSerializable, PayloadTooLarge, RunNotFound, RunTerminal, StaleEpoch,
                EgressFenced: refused; nothing written.
            TransactionConflict: rolled back (deadlocks, or the run's row stayed locked by
                another session); nothing written.
        """
        if self._writer is None or self._state is not _State.OPEN:
            raise StoreClosed("store", self._state.value)
        _args.traceparent(traceparent)
        return await self._writer.append(
            run_id, epoch, new_events, writer=writer, traceparent=traceparent
        )

    async def append_event(
        self,
        run_id: UUID,
        epoch: int,
        type: str,
        payload: object = None,
        *,
        writer: events.Writer | None = None,
        traceparent: str | None = None,
    ) -> int:
        """Append one event; return its seq. See :meth:`append_events`."""
        if self._writer is None or self._state is not _State.OPEN:
            raise StoreClosed("store", self._state.value)
        _args.traceparent(traceparent)
        return await self._writer.append_one(
            run_id, epoch, type, payload, writer=writer, traceparent=traceparent
        )

    async def read_events(
        self, run_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[events.Event]:
        """Committed events with ``seq > after``, oldest first (at most ``read_limit``)."""
        _args.run_id(run_id)
        integer(after, "after")
        limit = self._limit(limit)
        async with self._connection("read_events") as conn:
            return await events.read_events(conn, run_id, after=after, limit=limit)

    async def verify_chain(self, run_id: UUID) -> chain.ChainReport:
        """Recompute the run's hash chain; the report names the first bad seq, if any."""
        _args.run_id(run_id)
        async with self._connection("verify_chain") as conn:
            return await chain.verify_chain(conn, run_id)

    # -- retention ----------------------------------------------------------------------

    async def prune_events(
        self,
        *,
        default_window: float,
        windows: Mapping[str, float] | None = None,
        batch_size: int = 1000,
    ) -> retention.PruneReport:
        """Prune the events of runs that finished more than their window ago (seconds;
        ``windows`` per run type, else ``default_window``), at most ``batch_size`` events
        in one transaction; keep each run's row, terminal event and anchor hash.

        Safe to run from several stores at once: runs another sweep holds are skipped.
        See :mod:`runtime.store.retention`.
        """
        chosen = dict(windows or {})
        for name, seconds in (("default", default_window), *chosen.items()):
            identifier(name, "run_type")
            _window(seconds, f"retention window of {name!r}")
        integer(batch_size, "batch_size", low=1, high=1_000_000)
        async with self._connection("prune_events") as conn:
            return await retention.prune_events(
                conn, default_window=default_window, windows=chosen, budget=batch_size
            )

    # -- operator queries ---------------------------------------------------------------

    async def list_runs_page(
        self,
        *,
        status: RunStatus | None = None,
        run_type: str | None = None,
        session_id: str | None = None,
        owner: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        descending: bool = True,
        limit: int = 50,
        cursor: str | None = None,
    ) -> queries.RunsPage:
        """A page of runs matching every given filter, by ``(created_at, run_id)``, newest
        first unless not ``descending``; pass the page's ``next`` as ``cursor`` for the
        following page (with the same filters and order).

        Raises:
            InvalidCursor: ``cursor`` was not issued for this query; nothing read.
        """
        _check_run_filters(status, run_type, session_id, owner)
        for moment, name in ((created_after, "created_after"), (created_before, "created_before")):
            if moment is not None:
                if not isinstance(moment, datetime):
                    raise TypeError(f"{name} must be a datetime, not {type(moment).__name__}")
                if moment.tzinfo is None:
                    raise InvalidArgument(name, "must be timezone-aware")
        if not isinstance(descending, bool):
            raise TypeError(f"descending must be a bool, not {type(descending).__name__}")
        filters = queries.RunFilters(
            status, run_type, session_id, owner, created_after, created_before
        )
        limit = self._limit(limit)
        async with self._connection("list_runs_page") as conn:
            return await queries.list_runs_page(
                conn, filters, descending=descending, limit=limit, cursor=cursor
            )

    async def list_dead_letters_page(
        self, *, include_replayed: bool = True, limit: int = 50, cursor: str | None = None
    ) -> queries.DeadLettersPage:
        """A page of dead letters, oldest first; pass its ``next`` as ``cursor``.

        Raises:
            InvalidCursor: ``cursor`` was not issued for this query; nothing read.
        """
        if not isinstance(include_replayed, bool):
            raise TypeError(
                f"include_replayed must be a bool, not {type(include_replayed).__name__}"
            )
        limit = self._limit(limit)
        async with self._connection("list_dead_letters_page") as conn:
            return await queries.list_dead_letters_page(
                conn, include_replayed=include_replayed, limit=limit, cursor=cursor
            )

    async def replay_dead_letter(
        self,
        dead_letter_id: int,
        *,
        replayed_by: str,
        run_id: UUID | None = None,
        traceparent: str | None = None,
    ) -> tuple[attempts.DeadLetter, runs.Run]:
        """Replay a dead letter as a new pending run (same owner, run type, input and
        session; ``run_id`` or a fresh id), and mark it replayed by that run, at once.

        Raises:
            DeadLetterNotFound: no such dead letter.
            DeadLetterReplayed: replayed before; nothing created.
        """
        integer(dead_letter_id, "dead_letter_id")
        identifier(replayed_by, "replayed_by")
        new_id = uuid.uuid4() if run_id is None else _args.run_id(run_id)
        _args.traceparent(traceparent)
        async with self._connection("replay_dead_letter") as conn:
            return await attempts.replay_dead_letter(
                conn,
                dead_letter_id,
                replay_run_id=new_id,
                replayed_by=replayed_by,
                traceparent=traceparent,
            )

    async def read_lifecycle(
        self, cursor: str | None = None, *, limit: int = 100
    ) -> lifecycle.LifecyclePage:
        """Lifecycle entries (created, started, recovered, terminal) of every run after
        ``cursor`` (``None``: from the start; :meth:`lifecycle_head`: from now), in an
        order where a reader resuming from a cursor never misses one. See
        :mod:`runtime.store.lifecycle`.

        Raises:
            InvalidCursor: not a feed cursor; nothing read.
        """
        if cursor is not None:
            lifecycle.parse_cursor(cursor)
        limit = self._limit(limit)
        async with self._connection("read_lifecycle") as conn:
            return await lifecycle.read_lifecycle(conn, cursor, limit=limit)

    async def lifecycle_head(self) -> str:
        """A lifecycle cursor at the feed's end now (read from it for what comes next)."""
        async with self._connection("lifecycle_head") as conn:
            return await lifecycle.lifecycle_head(conn)

    # -- frames -------------------------------------------------------------------------

    async def append_frame(
        self,
        run_id: UUID,
        *,
        frame_id: str,
        kind: str,
        payload: object = None,
        traceparent: str | None = None,
    ) -> frames.FrameAppend:
        """Store a frame once; a repeat of ``frame_id`` returns the original. The events
        the run writes while it processes the frame carry its ``traceparent``.

        Raises:
            PayloadNotSerializable, PayloadTooLarge, RunNotFound, RunTerminal.
        """
        _args.run_id(run_id)
        identifier(frame_id, "frame_id")
        identifier(kind, "kind")
        _args.traceparent(traceparent)
        data = self._encode(payload, f"frame {frame_id!r}")
        async with self._connection("append_frame") as conn:
            return await frames.append_frame(
                conn, run_id, frame_id=frame_id, kind=kind, payload=data, traceparent=traceparent
            )

    async def read_frames(
        self, run_id: UUID, *, after: int = 0, limit: int = 100
    ) -> list[frames.Frame]:
        """Frames with ``frame_seq > after``, in order (at most ``read_limit``)."""
        _args.run_id(run_id)
        integer(after, "after")
        limit = self._limit(limit)
        async with self._connection("read_frames") as conn:
            return await frames.read_frames(conn, run_id, after=after, limit=limit)

    # -- leases -------------------------------------------------------------------------

    async def acquire_lease(
        self,
        run_id: UUID,
        *,
        owner_node: str,
        ttl: float | None = None,
        reclaim: bool = False,
    ) -> leases.Lease:
        """Take the run's lease (next epoch) if it is free or expired by database time,
        or, with ``reclaim``, if ``owner_node`` itself holds it (a restarted executor of
        the same node process taking over from its crashed predecessor).

        Raises:
            RunNotFound, RunTerminal, LeaseHeld.
        """
        _args.run_id(run_id)
        identifier(owner_node, "owner_node")
        ttl = self._lease_ttl(ttl)
        sent_at = asyncio.get_running_loop().time()
        async with self._connection("acquire_lease") as conn:
            lease = await leases.acquire_lease(
                conn, run_id, owner_node=owner_node, ttl=ttl, rng=self._rng, reclaim=reclaim
            )
        self._leases.held((run_id, owner_node, lease.epoch), sent_at, ttl)
        if self._writer is not None:
            # The run row's epoch changed: spare the writer a refused first try.
            self._writer.forget_head(run_id)
        return lease

    async def renew_lease(
        self,
        run_id: UUID,
        *,
        owner_node: str,
        epoch: int,
        ttl: float | None = None,
        progress_seq: int | None = None,
    ) -> leases.LeaseRenewal | None:
        """Extend the lease; ``None`` means it is lost (fence yourself at once).

        Its deadline is ``call_timeout``, and below the time the lease has left (as this
        store knows it from its last acquire or renewal): a renewal never outlives the
        lease it renews. When that time is already up, the lease is lost (``None``)
        without asking the database.

        Raises:
            StoreTimeout: no answer before the deadline; the lease may or may not have
                been renewed (fence yourself unless a later renewal succeeds in time).
        """
        _args.run_id(run_id)
        identifier(owner_node, "owner_node")
        integer(epoch, "epoch")
        if progress_seq is not None:
            integer(progress_seq, "progress_seq", low=0)
        ttl = self._lease_ttl(ttl)
        key = (run_id, owner_node, epoch)
        now = asyncio.get_running_loop().time()
        seconds = self._config.call_timeout
        left = self._leases.left(key, now)
        if left is not None:
            if left <= 0:
                self._leases.lost(key)
                return None
            seconds = min(seconds, left)
        async with self._connection("renew_lease", seconds) as conn:
            renewal = await leases.renew_lease(
                conn,
                run_id,
                owner_node=owner_node,
                epoch=epoch,
                ttl=ttl,
                progress_seq=progress_seq,
            )
        if renewal is None:
            self._leases.lost(key)
        else:
            self._leases.held(key, now, ttl)
        return renewal

    async def renew_leases(
        self,
        held: Sequence[tuple[UUID, int, int | None]],
        *,
        owner_node: str,
        ttl: float | None = None,
        seconds: float | None = None,
    ) -> dict[UUID, leases.LeaseRenewal]:
        """Renew many leases of ``owner_node`` in one statement (a node renewing all its
        runs' leases at once, instead of one round trip per run).

        Args:
            held: ``(run_id, epoch, progress_seq)`` for each lease, each run once.
            seconds: the call's deadline (default ``call_timeout``); it is also kept
                below the time left on the lease that expires first, as this store
                knows it, so no renewal outlives the lease it renews.

        Returns:
            The renewal of each lease still held, by run id. A lease missing from it is
            lost (or its time, as this store knows it, was already up): fence yourself.

        Raises:
            StoreTimeout: no answer before the deadline; any of the leases may or may not
                have been renewed (each holder fences itself unless a later renewal
                succeeds in time).
            TransactionConflict: rolled back by deadlocks every time; nothing renewed.
        """
        identifier(owner_node, "owner_node")
        seen: set[UUID] = set()
        for run_id, epoch, progress in held:
            _args.run_id(run_id)
            integer(epoch, "epoch")
            if progress is not None:
                integer(progress, "progress_seq", low=0)
            if run_id in seen:
                raise InvalidArgument("held", f"run {run_id} is given twice")
            seen.add(run_id)
        ttl = self._lease_ttl(ttl)
        now = asyncio.get_running_loop().time()
        limit = self._config.call_timeout
        if seconds is not None:
            limit = min(limit, seconds)
        asked = []
        for lease in held:
            key = (lease[0], owner_node, lease[1])
            left = self._leases.left(key, now)
            if left is not None and left <= 0:
                self._leases.lost(key)
                continue
            if left is not None:
                limit = min(limit, left)
            asked.append(lease)
        if not asked:
            return {}

        async def attempt() -> dict[UUID, leases.LeaseRenewal]:
            async with self._connection("renew_leases", limit) as conn:
                return await leases.renew_leases(conn, asked, owner_node=owner_node, ttl=ttl)

        renewed = await _db.retry_rolled_back(
            attempt, rng=self._rng, run_ids=lambda: tuple(sorted(seen))
        )
        for run_id, epoch, _ in asked:
            key = (run_id, owner_node, epoch)
            if run_id in renewed:
                self._leases.held(key, now, ttl)
            else:
                self._leases.lost(key)
        return renewed

    async def release_lease(
        self,
        run_id: UUID,
        *,
        owner_node: str,
        epoch: int,
        attempt: int | None = None,
        outcome: attempts.AttemptOutcome | None = None,
    ) -> bool:
        """Expire the lease now if still held by ``owner_node`` at ``epoch``.

        With ``attempt`` and ``outcome``, also finish that attempt (if it is not finished
        yet) in the same round trip: an executor leaving a run records how it left.
        """
        _args.run_id(run_id)
        identifier(owner_node, "owner_node")
        integer(epoch, "epoch")
        if attempt is not None:
            integer(attempt, "attempt", low=1)
        self._leases.lost((run_id, owner_node, epoch))
        async with self._connection("release_lease") as conn:
            return await leases.release_lease(
                conn, run_id, owner_node=owner_node, epoch=epoch, attempt=attempt, outcome=outcome
            )

    async def get_lease(self, run_id: UUID) -> leases.Lease | None:
        """The run's lease row (possibly expired), or ``None`` if never leased."""
        _args.run_id(run_id)
        async with self._connection("get_lease") as conn:
            return await leases.get_lease(conn, run_id)

    # -- memory -------------------------------------------------------------------------

    async def get_memory(self, scope: memory.MemoryScope, key: str) -> memory.MemoryItem | None:
        """The live value, or ``None`` if absent or expired."""
        memory.check_key(scope, key)
        async with self._connection("get_memory") as conn:
            return await memory.get_memory(conn, scope, key)

    async def put_memory(
        self,
        scope: memory.MemoryScope,
        key: str,
        value: object,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
    ) -> memory.MemoryItem:
        """Write a value; with ``expected_version`` only over that version (0 = absent).

        Raises:
            VersionConflict, PayloadNotSerializable, PayloadTooLarge: nothing written.
        """
        memory.check_key(scope, key)
        if expected_version is not None:
            integer(expected_version, "expected_version", low=0)
        if ttl is not None:
            _positive_ttl(ttl, "memory ttl")
        data = self._encode(value, f"memory value {key!r}")
        async with self._connection("put_memory") as conn:
            return await memory.put_memory(
                conn, scope, key, data, expected_version=expected_version, ttl=ttl
            )

    async def delete_memory(
        self, scope: memory.MemoryScope, key: str, *, expected_version: int | None = None
    ) -> bool:
        """Delete the live value; raises ``VersionConflict`` on a version mismatch."""
        memory.check_key(scope, key)
        if expected_version is not None:
            integer(expected_version, "expected_version", low=0)
        async with self._connection("delete_memory") as conn:
            return await memory.delete_memory(conn, scope, key, expected_version=expected_version)

    # -- memory logged by an executor (run execution's ctx.memory) --------------------

    async def get_memory_logged(
        self,
        run_id: UUID,
        epoch: int,
        scope: memory.MemoryScope,
        key: str,
        *,
        writer: events.Writer,
        event_type: str,
        fields: dict[str, _codec.JSON],
        traceparent: str | None = None,
    ) -> tuple[int, dict[str, _codec.JSON]]:
        """Read ``key`` and append ``event_type`` (``fields`` plus ``found``, ``value``,
        ``version``) in one transaction fenced like an append; return its seq and payload.
        The event carries ``traceparent``, as an append's would.

        Raises:
            RunNotFound, RunTerminal, StaleEpoch, EgressFenced: refused; nothing written.
        """
        memory.check_key(scope, key)
        event = self._memory_event(run_id, epoch, writer, event_type, fields, traceparent)
        return await self._logged_memory("get_memory_logged", event, logged_memory.read(scope, key))

    async def put_memory_logged(
        self,
        run_id: UUID,
        epoch: int,
        scope: memory.MemoryScope,
        key: str,
        value: object,
        *,
        writer: events.Writer,
        event_type: str,
        fields: dict[str, _codec.JSON],
        expected_version: int | None = None,
        ttl: float | None = None,
        traceparent: str | None = None,
    ) -> tuple[int, dict[str, _codec.JSON]]:
        """Write ``key`` and append ``event_type`` (``fields`` plus ``version`` and
        ``conflict_version``) in one transaction fenced like an append: the value changes
        if and only if the event is committed. A version conflict is an outcome, logged,
        not an error. Returns the event's seq and payload. The event carries
        ``traceparent``, as an append's would.

        Raises:
            RunNotFound, RunTerminal, StaleEpoch, EgressFenced: refused; nothing written.
            PayloadNotSerializable, PayloadTooLarge: bad value; nothing written.
        """
        memory.check_key(scope, key)
        if expected_version is not None:
            integer(expected_version, "expected_version", low=0)
        if ttl is not None:
            _positive_ttl(ttl, "memory ttl")
        data = self._encode(value, f"memory value {key!r}")
        event = self._memory_event(run_id, epoch, writer, event_type, fields, traceparent)
        write = logged_memory.write(scope, key, data, expected_version=expected_version, ttl=ttl)
        return await self._logged_memory("put_memory_logged", event, write)

    async def delete_memory_logged(
        self,
        run_id: UUID,
        epoch: int,
        scope: memory.MemoryScope,
        key: str,
        *,
        writer: events.Writer,
        event_type: str,
        fields: dict[str, _codec.JSON],
        traceparent: str | None = None,
    ) -> tuple[int, dict[str, _codec.JSON]]:
        """Delete ``key`` and append ``event_type`` (``fields`` plus ``deleted``) in one
        transaction fenced like an append; return the event's seq and payload. The event
        carries ``traceparent``, as an append's would.

        Raises:
            RunNotFound, RunTerminal, StaleEpoch, EgressFenced: refused; nothing written.
        """
        memory.check_key(scope, key)
        event = self._memory_event(run_id, epoch, writer, event_type, fields, traceparent)
        return await self._logged_memory(
            "delete_memory_logged", event, logged_memory.delete(scope, key)
        )

    def _memory_event(
        self,
        run_id: UUID,
        epoch: int,
        writer: events.Writer,
        event_type: str,
        fields: dict[str, _codec.JSON],
        traceparent: str | None,
    ) -> logged_memory.MemoryEvent:
        _args.run_id(run_id)
        integer(epoch, "epoch")
        identifier(writer.node, "writer node")
        _args.traceparent(traceparent)
        return logged_memory.MemoryEvent(
            run_id,
            epoch,
            writer,
            event_type,
            fields,
            self._config.payload_limit,
            traceparent,
        )

    async def _logged_memory(
        self, operation: str, event: logged_memory.MemoryEvent, call: logged_memory.Operation
    ) -> tuple[int, dict[str, _codec.JSON]]:
        """Run a memory ``call`` and log it as ``event``, in one transaction."""
        async with self._connection(operation) as conn:
            logged = await logged_memory.logged(conn, event, call)
        self._moved_outside_writer(event.run_id)
        return logged

    def _moved_outside_writer(self, run_id: UUID) -> None:
        if self._writer is not None:
            # The run's head moved outside the writer: spare it a refused first try.
            self._writer.forget_head(run_id)

    async def purge_expired_memory(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired memory rows; return how many."""
        integer(limit, "limit", low=1)
        async with self._connection("purge_expired_memory") as conn:
            return await memory.purge_expired_memory(conn, limit=limit)

    async def migration_versions(self) -> frozenset[int]:
        """The versions of the migrations the database records as applied (for
        readiness checks: compare with :func:`~runtime.store.discover_migrations`)."""
        async with self._connection("migration_versions") as conn:
            cur = await conn.execute("SELECT version FROM warden_migrations")
            return frozenset(int(version) for (version,) in await cur.fetchall())

    # -- spent token ids (the gateway's replay table) ----------------------------------

    async def consume_token_id(self, jti: str, *, subject: str, expires_at: datetime) -> bool:
        """Record the token id ``jti`` as spent until ``expires_at`` (the token's expiry);
        ``True`` if it was fresh, ``False`` if a request spent it before (a replay)."""
        text(jti, "jti", max_length=tokens.MAX_TOKEN_ID_LENGTH)
        if not jti:
            raise InvalidArgument("jti", "must not be empty")
        identifier(subject, "subject")
        async with self._connection("consume_token_id") as conn:
            return await tokens.consume_token_id(conn, jti, subject=subject, expires_at=expires_at)

    async def purge_expired_token_ids(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` spent token ids whose tokens have expired; return how
        many."""
        integer(limit, "limit", low=1)
        async with self._connection("purge_expired_token_ids") as conn:
            return await tokens.purge_expired_token_ids(conn, limit=limit)

    # -- attempts and dead letters ------------------------------------------------------

    async def start_attempt(self, run_id: UUID, *, node_id: str, epoch: int) -> attempts.Attempt:
        """Record the start of the run's next attempt."""
        _args.run_id(run_id)
        identifier(node_id, "node_id")
        integer(epoch, "epoch", low=0)
        async with self._connection("start_attempt") as conn:
            return await attempts.start_attempt(conn, run_id, node_id=node_id, epoch=epoch)

    async def begin_attempt(
        self, run_id: UUID, *, node_id: str, epoch: int
    ) -> tuple[attempts.Attempt, int]:
        """Start the run's next attempt, closing the ones earlier executors left
        unfinished as ``lost`` (one round trip); return it and how many earlier attempts
        ``failed`` (what a retry budget counts).

        Raises:
            RunNotFound: no such run.
        """
        _args.run_id(run_id)
        identifier(node_id, "node_id")
        integer(epoch, "epoch", low=0)
        async with self._connection("begin_attempt") as conn:
            return await attempts.begin_attempt(conn, run_id, node_id=node_id, epoch=epoch)

    async def finish_attempt(
        self,
        run_id: UUID,
        attempt: int,
        *,
        outcome: attempts.AttemptOutcome,
        error_class: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> attempts.Attempt:
        """Record how an attempt ended (the first record wins)."""
        _args.run_id(run_id)
        integer(attempt, "attempt", low=1, high=INT32[1])
        if outcome not in _OUTCOMES:
            raise InvalidArgument("outcome", f"{outcome!r} is not an attempt outcome")
        _optional_text(error_class, "error_class", MAX_ID_LENGTH)
        _optional_text(error_type, "error_type", MAX_ID_LENGTH)
        if error_message is not None:
            # Error reports are bounded (DESIGN §11): cut, never refused for their length.
            text(error_message, "error_message", max_length=None)
        async with self._connection("finish_attempt") as conn:
            return await attempts.finish_attempt(
                conn,
                run_id,
                attempt,
                outcome=outcome,
                error_class=error_class,
                error_type=error_type,
                error_message=error_message,
            )

    async def list_attempts(self, run_id: UUID) -> list[attempts.Attempt]:
        """The run's attempts, first to last."""
        _args.run_id(run_id)
        async with self._connection("list_attempts") as conn:
            return await attempts.list_attempts(conn, run_id)

    async def record_dead_letter(
        self,
        run_id: UUID,
        *,
        reason: str,
        attempts_made: int,
        error_class: str | None = None,
        error_message: str | None = None,
    ) -> tuple[attempts.DeadLetter, bool]:
        """Dead-letter a run (idempotent while its dead letter is open)."""
        _args.run_id(run_id)
        text(reason, "reason")
        integer(attempts_made, "attempts_made", low=0, high=INT32[1])
        _optional_text(error_class, "error_class", MAX_ID_LENGTH)
        if error_message is not None:
            text(error_message, "error_message", max_length=None)
        async with self._connection("record_dead_letter") as conn:
            return await attempts.record_dead_letter(
                conn,
                run_id,
                reason=reason,
                error_class=error_class,
                error_message=error_message,
                attempts=attempts_made,
            )

    async def list_dead_letters(
        self, *, include_replayed: bool = False, after_id: int = 0, limit: int = 100
    ) -> list[attempts.DeadLetter]:
        """Dead letters after ``after_id``, oldest first."""
        if not isinstance(include_replayed, bool):
            raise TypeError(
                f"include_replayed must be a bool, not {type(include_replayed).__name__}"
            )
        integer(after_id, "after_id")
        limit = self._limit(limit)
        async with self._connection("list_dead_letters") as conn:
            return await attempts.list_dead_letters(
                conn, include_replayed=include_replayed, after_id=after_id, limit=limit
            )

    async def mark_dead_letter_replayed(
        self, dead_letter_id: int, *, replayed_by: str
    ) -> tuple[attempts.DeadLetter, bool]:
        """Mark a dead letter replayed once; ``False`` if it already was."""
        integer(dead_letter_id, "dead_letter_id")
        identifier(replayed_by, "replayed_by")
        async with self._connection("mark_dead_letter_replayed") as conn:
            return await attempts.mark_dead_letter_replayed(
                conn, dead_letter_id, replayed_by=replayed_by
            )

    # -- membership and recovery --------------------------------------------------------

    async def register_node(
        self, *, node_id: str, boot_id: UUID, hostname: str, pid: int, metadata: object = None
    ) -> nodes.NodeRow:
        """Record a starting node process (see :mod:`runtime.store.nodes`)."""
        identifier(node_id, "node_id")
        _args.run_id(boot_id, "boot_id")
        identifier(hostname, "hostname")
        integer(pid, "pid", low=0, high=INT32[1])
        data = self._encode({} if metadata is None else metadata, "node metadata")
        async with self._connection("register_node") as conn:
            return await nodes.register_node(
                conn, node_id=node_id, boot_id=boot_id, hostname=hostname, pid=pid, metadata=data
            )

    async def node_heartbeat(self, node_id: str) -> bool:
        """Record the node's heartbeat; ``False`` if its row is gone or marked stopped."""
        identifier(node_id, "node_id")
        async with self._connection("node_heartbeat") as conn:
            return await nodes.beat(conn, node_id)

    async def mark_node_stopped(self, node_id: str) -> None:
        """Record the node's clean stop."""
        identifier(node_id, "node_id")
        async with self._connection("mark_node_stopped") as conn:
            await nodes.mark_stopped(conn, node_id)

    async def list_nodes(
        self, *, include_stopped: bool = False, limit: int = 100
    ) -> list[nodes.NodeRow]:
        """Registered nodes, latest heartbeat first."""
        limit = self._limit(limit)
        async with self._connection("list_nodes") as conn:
            return await nodes.list_nodes(conn, include_stopped=include_stopped, limit=limit)

    async def claim_runs(
        self,
        *,
        owner_node: str,
        limit: int,
        pending_grace: float,
        choose: Callable[[Sequence[recovery.ClaimedRun]], Collection[UUID]],
        ttl: float | None = None,
    ) -> list[tuple[recovery.ClaimedRun, leases.Lease]]:
        """Claim runs that need an executor and lease the chosen ones (the janitor's
        step; see :func:`runtime.store.recovery.claim_runs`)."""
        identifier(owner_node, "owner_node")
        integer(limit, "limit", low=1)
        grace: object = pending_grace  # checked at run time: callers pass what they have
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not 0 <= grace <= MAX_TTL
        ):
            raise ValueError(
                f"pending grace must be from 0 to {MAX_TTL:g} seconds, not {pending_grace!r}"
            )
        ttl = self._lease_ttl(ttl)
        sent_at = asyncio.get_running_loop().time()
        async with self._connection("claim_runs") as conn:
            claimed = await recovery.claim_runs(
                conn,
                owner_node=owner_node,
                ttl=ttl,
                limit=limit,
                pending_grace=pending_grace,
                rng=self._rng,
                choose=choose,
            )
        for run, lease in claimed:
            self._leases.held((run.run_id, owner_node, lease.epoch), sent_at, ttl)
            if self._writer is not None:
                self._writer.forget_head(run.run_id)  # a new epoch on the run row
        return claimed

    async def release_node_leases(self, owner_node: str) -> list[UUID]:
        """Release every live lease held by ``owner_node``; return their runs."""
        identifier(owner_node, "owner_node")
        async with self._connection("release_node_leases") as conn:
            # The lease clocks need no update: a later renewal of a released lease finds
            # nothing to renew in the database and reports the lease lost.
            return await recovery.release_node_leases(conn, owner_node)
