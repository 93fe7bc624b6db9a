"""The fenced, hash-chained, group-committed event log (DESIGN §6-§7).

Appends go through one :class:`GroupCommitWriter` per store. Callers validate and
serialise their payloads (and build each event's canonical bytes around its future seq),
put their append on a bounded queue and wait; a single writer task takes everything
queued (up to a bounded count and byte size) and commits it on its own connection, so
events emitted while a transaction is in flight ride the next one.

**The fence lives in the run row.** ``runs.lease_epoch`` mirrors the lease's epoch
(lease acquire writes both in one statement, under the run row's lock). An append moves
its run's head with one ``UPDATE runs ... WHERE lease_epoch = <epoch> AND last_seq =
<expected> AND status NOT IN (<terminal>)``. When the row is locked by a concurrent
transaction, PostgreSQL waits for it and re-checks those conditions on the newest row
version (EvalPlanQual), so a takeover that commits meanwhile makes the stale append update
nothing, and write nothing. The events are inserted by the same statement for exactly the
runs whose head moved; no explicit row locks are taken.

**Seqs and hashes come from a head cache.** The writer remembers each run's head (last
seq and hash, lease epoch, status) in a bounded LRU. For a batch it numbers the events
from the cached head and chains ``sha256(prev_hash || canonical bytes)`` in Python, then
sends **one statement** (one round trip, one transaction): the ``UPDATE`` above for every
run in the batch (sorted by ``run_id``), and the ``INSERT`` of their events; in
``in_transaction`` mode it also calls ``pg_notify`` once. The ``last_seq = <expected>``
condition makes the cache a hint: a wrong head can never write, it only moves nothing.

* Runs missing from the cache are read first (one plain read for the batch). That read
  also refuses what can never succeed: an unknown run (``RunNotFound``), a terminal one
  (``RunTerminal``) and an epoch other than the lease's (``StaleEpoch``); epochs only grow
  and terminal is final, so refusing from a cached head older than the newest is safe too.
* A run whose head did not move (another writer moved it, e.g. ``request_cancel``'s
  epoch-0 event or another store; or the fence failed) is settled once more, in a
  transaction that locks the contested run rows (``FOR UPDATE``, ``run_id`` order) and
  decides every remaining append of them on the newest state: refuse it, or number and
  chain it from the locked head and commit it. Under the lock that cannot fail again, so
  it is a bounded retry (one) that still makes progress against any number of writers.
* A deadlock or serialization failure (which roll the transaction back) is retried up to
  :data:`_TX_ATTEMPTS` times, after a short random pause: retried at once, the writer
  tends to re-take the row locks it just gave up before the other transaction, woken by
  the rollback, can take them, and the same deadlock forms again. Any other failure fails
  the batch's unsettled appends, drops their runs from the cache and drops the
  connection, which the next batch reopens (a bounded number of attempts each). A
  failure whose outcome is unknown (connection lost, timeout) is never retried: the
  append might have committed.

Every statement runs on one long-lived cursor of the writer's own connection; a batch of
one event takes a scalar statement, inline, without the batch builder.

Per-run order is the queue's FIFO order, which is each caller's emit order. Appends queued
behind a terminal append of the same run wait for the next transaction, where they are
refused as ``RunTerminal`` if the run did end.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple
from uuid import UUID

import anyio
import orjson
import structlog

from runtime.store import _arrays, _codec, _db
from runtime.store.chain import canonical_parts
from runtime.store.errors import (
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    StoreClosed,
    StoreError,
    StoreOverloaded,
    TransactionConflict,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence
    from datetime import datetime

    from anyio.abc import TaskStatus
    from psycopg import AsyncConnection, AsyncCursor
    from psycopg.rows import TupleRow

    from runtime.store._notifier import Notifier
    from runtime.store.config import StoreConfig

__all__ = [
    "EVENTS_CHANNEL",
    "SCHEMA_VERSION",
    "TERMINAL_EVENTS",
    "WRITER_APPLICATION_NAME",
    "Event",
    "GroupCommitWriter",
    "NewEvent",
    "WriterStatistics",
    "read_events",
]

EVENTS_CHANNEL: Final = "warden_events"
"""NOTIFY channel for committed events; payload ``run_id:seq[,run_id:seq...]``."""

SCHEMA_VERSION: Final = 1
"""Schema version stamped on every event this build writes."""

WRITER_APPLICATION_NAME: Final = "warden-append-writer"
"""``application_name`` of each group-commit writer's own connection."""

TERMINAL_EVENTS: Final = {
    "run.succeeded": "succeeded",
    "run.failed": "failed",
    "run.canceled": "canceled",
    "run.timed_out": "timed_out",
}
"""Event types that end a run, and the terminal status each sets (one per run)."""

_TERMINAL_STATUSES: Final = frozenset(TERMINAL_EVENTS.values())
_MAX_TYPE_LENGTH: Final = 200
_TX_ATTEMPTS: Final = 3
"""Tries of one transaction that a deadlock or serialization failure rolled back."""
_CONNECT_ATTEMPTS: Final = 3
"""Tries to (re)open the writer's connection for one batch, with a short pause between."""
_CONNECT_PAUSE: Final = 0.1
_CLOSE_TIMEOUT: Final = 5.0
_RETRYABLE: Final = _db.RETRYABLE

_logger = structlog.get_logger("runtime.store")

# The fence for a batch: every run's head moves from the expected seq to the new one only
# if the lease epoch and a live status still hold on the newest row version (EvalPlanQual
# re-checks them after waiting for a concurrent transaction). The events are inserted for
# exactly the runs that moved. One row comes back: the runs that moved, and the NOTIFY.
_APPEND: Final = f"""
WITH moved AS (
    UPDATE runs AS r
    SET last_seq = h.last_seq, last_hash = h.last_hash, updated_at = now(),
        status = coalesce(h.status, r.status),
        finished_at = CASE WHEN h.status IS NULL THEN r.finished_at ELSE now() END
    FROM unnest(%(runs)b::uuid[], %(epochs)b::bigint[], %(expected)b::bigint[],
                %(seqs)b::bigint[], %(hashes)b::bytea[], %(statuses)b::text[])
         AS h(run_id, epoch, expected, last_seq, last_hash, status)
    WHERE r.run_id = h.run_id AND r.lease_epoch = h.epoch AND h.epoch > 0
      AND r.last_seq = h.expected
      AND r.status NOT IN ('succeeded', 'failed', 'canceled', 'timed_out')
    RETURNING r.run_id, r.last_seq
), inserted AS (
    INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                            prev_hash, hash)
    SELECT e.run_id, e.seq, e.type, e.payload::jsonb, e.epoch, {SCHEMA_VERSION},
           e.terminal, e.prev_hash, e.hash
    FROM unnest(%(e_runs)b::uuid[], %(e_seqs)b::bigint[], %(e_types)b::text[],
                %(e_payloads)b::text[], %(e_epochs)b::bigint[], %(e_terminal)b::boolean[],
                %(e_prev)b::bytea[], %(e_hashes)b::bytea[])
         AS e(run_id, seq, type, payload, epoch, terminal, prev_hash, hash)
    WHERE e.run_id IN (SELECT run_id FROM moved)
)
SELECT array_agg(m.run_id){{notify}} FROM moved AS m
"""
_APPEND_NOTIFY: Final = _APPEND.replace(
    "{notify}",
    f",\n       CASE WHEN count(*) > 0 THEN pg_notify('{EVENTS_CHANNEL}',"
    " string_agg(m.run_id::text || ':' || m.last_seq::text, ',')) END",
).encode()
_APPEND_QUIET: Final = _APPEND.replace("{notify}", "").encode()
# The same for a batch of one event: scalar (positional) parameters, no arrays. The
# INSERT's row count tells whether the head moved; the NOTIFY joins the moved row, so it is
# sent only then, and no result set comes back.
_APPEND_ONE: Final = f"""
WITH moved AS (
    UPDATE runs
    SET last_seq = %b, last_hash = %b, updated_at = now(),
        status = coalesce(%b::text, status),
        finished_at = CASE WHEN %b::text IS NULL THEN finished_at ELSE now() END
    WHERE run_id = %b AND lease_epoch = %b AND %b > 0 AND last_seq = %b
      AND status NOT IN ('succeeded', 'failed', 'canceled', 'timed_out')
    RETURNING run_id, last_seq
)
INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                        prev_hash, hash)
SELECT m.run_id, m.last_seq, %b::text, %b::text::jsonb, %b, {SCHEMA_VERSION},
       %b::text IS NOT NULL, %b, %b
FROM moved AS m{{notify}}
"""
_APPEND_ONE_NOTIFY: Final = _APPEND_ONE.replace(
    "{notify}",
    f"\n     CROSS JOIN LATERAL pg_notify('{EVENTS_CHANNEL}',"
    " m.run_id::text || ':' || m.last_seq::text) AS n",
).encode()
_APPEND_ONE_QUIET: Final = _APPEND_ONE.replace("{notify}", "").encode()
_HEADS: Final = (
    "SELECT run_id, status, lease_epoch, last_seq, last_hash FROM runs"
    " WHERE run_id = ANY(%b::uuid[])"
)
_LOCK_HEADS: Final = _HEADS + " ORDER BY run_id FOR UPDATE"
_READ: Final = """
SELECT seq, type, payload, epoch, schema_version, created_at, prev_hash, hash
FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s
"""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append.

    Attributes:
        type: dotted event type, e.g. ``"tool.result"``; a type in
            :data:`TERMINAL_EVENTS` ends the run and must come last in its append.
        payload: any JSON-serialisable value (serialised with orjson; at most the payload
            limit); anything else raises ``PayloadNotSerializable`` when appended.
    """

    type: str
    payload: object = None


@dataclass(frozen=True, slots=True)
class Event:
    """One committed event, as read back from the log."""

    run_id: UUID
    seq: int
    type: str
    payload: _codec.JSON
    epoch: int
    schema_version: int
    created_at: datetime
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    """A snapshot of the group-commit writer.

    Attributes:
        queued: appends waiting for the next transaction now.
        queue_capacity: the queue's bound.
        queue_peak: the most appends ever queued at once.
        transactions: transactions committed.
        events: events committed.
        largest_batch: most appends committed in one transaction.
        refused: appends refused (stale epoch, unknown or terminal run).
        failed_batches: batches that failed (their unsettled appends got the error).
        head_cache_size: runs whose head the writer remembers now.
        head_cache_capacity: the head cache's bound.
        head_reads: reads of run heads the cache lacked (one per batch at most).
        contested: runs settled again under row locks because their head had not moved.
        retries: transactions retried after a deadlock or serialization failure.
        connects: connections the writer opened (1 unless one was lost).

    .. versionchanged:: store-perf
       Added the head cache, contention and connection counters.
    """

    queued: int
    queue_capacity: int
    queue_peak: int
    transactions: int
    events: int
    largest_batch: int
    refused: int
    failed_batches: int
    head_cache_size: int
    head_cache_capacity: int
    head_reads: int
    contested: int
    retries: int
    connects: int


@dataclass(slots=True)
class _Prepared:
    type: str
    type_utf8: bytes
    payload: bytes  # canonical JSON
    status: str | None  # the terminal status this event sets, if any
    # The event's canonical bytes are head + b"%d" % seq + tail (chain.canonical_parts).
    head: bytes
    tail: bytes


@dataclass(slots=True, eq=False)
class _Append:
    run_id: UUID
    epoch: int
    events: list[_Prepared]
    size: int
    # The outcome travels as a result, never as a future's exception: a caller cancelled
    # meanwhile leaves nobody to retrieve it, and asyncio would report it as lost. A
    # cancelled caller also cancels this future, so whether the writer has settled the
    # append is tracked apart from it: the writer still commits a cancelled caller's append.
    outcome: asyncio.Future[list[int] | BaseException]
    settled: bool = False

    def resolve(self, seqs: list[int]) -> None:
        self.settled = True
        if not self.outcome.done():
            self.outcome.set_result(seqs)

    def fail(self, error: BaseException) -> None:
        self.settled = True
        if not self.outcome.done():
            self.outcome.set_result(error)


class _Head(NamedTuple):
    """What the writer knows of a run row: its log head, lease epoch and status."""

    last_seq: int
    last_hash: bytes
    epoch: int  # runs.lease_epoch; 0 = never leased
    status: str


class _HeadCache:
    """A bounded LRU of run heads. Only the writer task touches it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._heads: OrderedDict[UUID, _Head] = OrderedDict()

    def __len__(self) -> int:
        return len(self._heads)

    def __contains__(self, run_id: UUID) -> bool:
        return run_id in self._heads

    def get(self, run_id: UUID) -> _Head | None:
        head = self._heads.get(run_id)
        if head is not None:
            self._heads.move_to_end(run_id)
        return head

    def put(self, run_id: UUID, head: _Head) -> None:
        self._heads[run_id] = head
        self._heads.move_to_end(run_id)
        if len(self._heads) > self.capacity:
            self._heads.popitem(last=False)

    def discard(self, run_id: UUID) -> None:
        self._heads.pop(run_id, None)


@dataclass(slots=True)
class _Plan:
    """One run's share of a statement: its appends, numbered and chained from ``head``."""

    run_id: UUID
    head: _Head
    items: list[_Append]
    seqs: list[list[int]]  # per item
    hashes: list[bytes]  # per event, in order
    last_seq: int
    status: str | None  # terminal status set by the last event, if any


class _Statement:
    """One append statement: the runs whose heads it moves, and their events."""

    __slots__ = ("events", "plans")

    def __init__(self) -> None:
        self.plans: list[_Plan] = []
        self.events = 0

    def add(self, run_id: UUID, head: _Head, items: list[_Append]) -> None:
        """Number and chain ``items`` (all with epoch ``head.epoch``) from ``head``."""
        seq = head.last_seq
        prev = head.last_hash
        sha256 = hashlib.sha256
        hashes: list[bytes] = []
        all_seqs: list[list[int]] = []
        status = None
        for item in items:
            # The canonical bytes were built with the append's epoch; the row gets the head's.
            assert item.epoch == head.epoch, "an append numbered under another epoch"
            first = seq + 1
            for event in item.events:
                seq += 1
                prev = sha256(b"%s%s%d%s" % (prev, event.head, seq, event.tail)).digest()
                hashes.append(prev)
                status = event.status
            all_seqs.append(list(range(first, seq + 1)))
        self.events += len(hashes)
        self.plans.append(_Plan(run_id, head, items, all_seqs, hashes, seq, status))

    async def execute(self, cur: AsyncCursor[TupleRow], notify_in_tx: bool) -> set[UUID] | None:
        """Run the statement; return the runs whose head moved (``None``: every run did)."""
        plans = self.plans
        if self.events == 1:
            (plan,) = plans
            head = plan.head
            one = await _execute_one(
                cur, notify_in_tx, plan.run_id, head, plan.items[0].events[0], plan.hashes[0]
            )
            return None if one else set()
        # The events' columns as binary arrays, each element already length-prefixed
        # (see runtime/store/_arrays.py): one join per column, no per-element dumping.
        runs: list[bytes] = []
        seqs: list[bytes] = []
        types: list[bytes] = []
        payloads: list[bytes] = []
        epochs: list[bytes] = []
        ends: list[bool] = []
        prevs: list[bytes] = []
        hashes: list[bytes] = []
        for plan in plans:
            run = plan.run_id.bytes
            head = plan.head
            epoch = head.epoch.to_bytes(8, "big", signed=True)
            seq = head.last_seq
            prevs.append(head.last_hash)
            hashes.extend(plan.hashes)
            prevs.extend(plan.hashes[:-1])
            for item in plan.items:
                for event in item.events:
                    seq += 1
                    runs.append(run)
                    seqs.append(seq.to_bytes(8, "big", signed=True))
                    types.append(event.type_utf8)
                    payloads.append(event.payload)
                    epochs.append(epoch)
                    ends.append(event.status is not None)
        await cur.execute(
            _APPEND_NOTIFY if notify_in_tx else _APPEND_QUIET,
            {
                "runs": _arrays.uuid_array([p.run_id for p in plans]),
                "epochs": _arrays.int8_array([p.head.epoch for p in plans]),
                "expected": _arrays.int8_array([p.head.last_seq for p in plans]),
                "seqs": _arrays.int8_array([p.last_seq for p in plans]),
                "hashes": _arrays.fixed(_arrays.ByteaArray, [p.hashes[-1] for p in plans]),
                "statuses": _arrays.text_array([p.status for p in plans]),
                "e_runs": _arrays.fixed(_arrays.UuidArray, runs),
                "e_seqs": _arrays.fixed(_arrays.Int8Array, seqs),
                "e_types": _arrays.text_array(types),
                "e_payloads": _arrays.text_array(payloads),
                "e_epochs": _arrays.fixed(_arrays.Int8Array, epochs),
                "e_terminal": _arrays.bool_array(ends),
                "e_prev": _arrays.fixed(_arrays.ByteaArray, prevs),
                "e_hashes": _arrays.fixed(_arrays.ByteaArray, hashes),
            },
        )
        row = await cur.fetchone()
        moved: list[UUID] | None = None if row is None else row[0]
        if moved is None:
            return set()
        return None if len(moved) == len(plans) else set(moved)


async def _execute_one(
    cur: AsyncCursor[TupleRow],
    notify_in_tx: bool,
    run_id: UUID,
    head: _Head,
    event: _Prepared,
    digest: bytes,
) -> bool:
    """Append one event as seq ``head.last_seq + 1``; return whether the head moved."""
    seq = head.last_seq + 1
    status = event.status
    epoch = head.epoch
    # The placeholders in order: the UPDATE's SET and WHERE, then the INSERT's.
    update = (seq, digest, status, status, run_id, epoch, epoch, seq - 1)
    insert = (event.type, event.payload.decode(), epoch, status, head.last_hash, digest)
    await cur.execute(_APPEND_ONE_NOTIFY if notify_in_tx else _APPEND_ONE_QUIET, (*update, *insert))
    return cur.rowcount == 1


def _prepare_event(
    run_id: UUID, epoch: int, type_: str, payload: object, limit: int, last: bool
) -> _Prepared:
    if not 0 < len(type_) <= _MAX_TYPE_LENGTH or "\x00" in type_:
        raise ValueError(
            f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH} characters"
            " without NUL"
        )
    status = TERMINAL_EVENTS.get(type_)
    if status is not None and not last:
        raise ValueError(f"terminal event {type_!r} must be the last of its append")
    data = _codec.encode(payload, what="payload", of=type_, limit=limit)
    head, tail = canonical_parts(
        run_id=run_id,
        type_json=orjson.dumps(type_),
        epoch=epoch,
        schema_version=SCHEMA_VERSION,
        payload=data,
    )
    return _Prepared(type_, type_.encode(), data, status, head, tail)


class _Deadline:
    """Bounds every batch to ``limit`` seconds with one timer shared by many batches.

    ``asyncio.timeout`` per batch arms and cancels a timer each time, which measured as
    much as a fifth of the writer's own Python work for a single-event append. Instead a
    batch only records when it started; one timer, armed by a batch that finds none, fires
    at that batch's deadline and, if a later batch is running by then, re-arms for that
    one's deadline. A batch still running at its deadline gets the writer task cancelled;
    :meth:`expired` then tells the writer whether that cancellation was the deadline's
    alone (``Task.uncancel``, exactly as ``asyncio.timeout`` decides), so it is turned
    into a timeout while any other cancellation propagates.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_limit", "_loop", "_started", "_task")

    def __init__(self, limit: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._started: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False
        self._cancelling = 0

    def start(self) -> None:
        """A batch starts now (call right before awaiting it)."""
        self._started = now = self._loop.time()
        self._cancelling = self._task.cancelling()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self._limit, self._check)

    def stop(self) -> None:
        """The batch is over (call right after it, before any other await)."""
        self._started = None

    def expired(self) -> bool:
        """After a ``CancelledError`` in the batch: whether only the deadline caused it."""
        if not self._expired:
            return False
        self._expired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """Disarm the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        started = self._started
        if started is None:
            return  # idle: the next batch re-arms
        deadline = started + self._limit
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._check)
            return
        # The writer is suspended inside this batch (the timer runs between its steps),
        # so the cancellation lands in the batch.
        self._expired = True
        self._task.cancel()


class GroupCommitWriter:
    """Commits concurrent appends together, one transaction at a time, on its own connection.

    Constructed by the store and driven by :meth:`run` inside the store's task group; the
    constructor does no work. :meth:`append` is safe to call from any task once
    :meth:`run` has started.
    """

    def __init__(
        self, dsn: str, config: StoreConfig, notifier: Notifier, rng: random.Random
    ) -> None:
        self._notifier = notifier
        self._rng = rng
        self._dsn = dsn
        self._config = config
        self._notify_in_tx = config.notify_mode == "in_transaction"
        self._queue: asyncio.Queue[_Append] = asyncio.Queue(maxsize=config.append_queue_size)
        self._heads = _HeadCache(config.append_head_cache_size)
        self._cursor: AsyncCursor[TupleRow] | None = None
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._queue_peak = 0
        self._transactions = 0
        self._events = 0
        self._largest_batch = 0
        self._refused = 0
        self._failed_batches = 0
        self._head_reads = 0
        self._contested = 0
        self._retries = 0
        self._connects = 0

    def statistics(self) -> WriterStatistics:
        """Return a frozen snapshot of the writer's counters."""
        return WriterStatistics(
            queued=self._queue.qsize(),
            queue_capacity=self._config.append_queue_size,
            queue_peak=self._queue_peak,
            transactions=self._transactions,
            events=self._events,
            largest_batch=self._largest_batch,
            refused=self._refused,
            failed_batches=self._failed_batches,
            head_cache_size=len(self._heads),
            head_cache_capacity=self._heads.capacity,
            head_reads=self._head_reads,
            contested=self._contested,
            retries=self._retries,
            connects=self._connects,
        )

    def forget_head(self, run_id: UUID) -> None:
        """Drop the cached head of ``run_id`` (its row was just changed by someone else).

        Only an optimisation: a stale cached head never writes, it costs a second try.
        """
        self._heads.discard(run_id)

    async def append(self, run_id: UUID, epoch: int, events: Sequence[NewEvent]) -> list[int]:
        """Append ``events`` to ``run_id`` as the holder of lease ``epoch``; return the seqs.

        Returns after the transaction that holds them committed. Payloads are validated
        first, so a bad one raises without writing anything or touching the queue.
        Cancelling the caller does not cancel the commit: the events may still land.

        Raises:
            PayloadNotSerializable, PayloadTooLarge: a payload was refused.
            RunNotFound, RunTerminal, StaleEpoch: the append was refused; nothing written.
            StoreOverloaded: the queue stayed full for ``append_queue_timeout`` seconds,
                or the transaction took over ``append_timeout`` (its outcome may be
                unknown).
            DatabaseUnavailable: the transaction failed (its outcome may be unknown).
            StoreClosed: the store is not open.
        """
        if not isinstance(run_id, UUID):
            raise TypeError(f"run_id must be a UUID, not {type(run_id).__name__}")
        if not events:
            raise ValueError("append needs at least one event")
        limit = self._config.payload_limit
        last = len(events) - 1
        prepared = [
            _prepare_event(run_id, epoch, event.type, event.payload, limit, index == last)
            for index, event in enumerate(events)
        ]
        return await self._submit(
            run_id, epoch, prepared, sum(len(event.payload) for event in prepared)
        )

    async def append_one(self, run_id: UUID, epoch: int, type_: str, payload: object) -> int:
        """:meth:`append` of one event; return its seq."""
        if not isinstance(run_id, UUID):
            raise TypeError(f"run_id must be a UUID, not {type(run_id).__name__}")
        event = _prepare_event(run_id, epoch, type_, payload, self._config.payload_limit, True)
        (seq,) = await self._submit(run_id, epoch, [event], len(event.payload))
        return seq

    async def _submit(
        self, run_id: UUID, epoch: int, prepared: list[_Prepared], size: int
    ) -> list[int]:
        if not self._accepting:
            raise StoreClosed("store", "not open")
        item = _Append(run_id, epoch, prepared, size, asyncio.get_running_loop().create_future())
        queue = self._queue
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            try:
                async with asyncio.timeout(self._config.append_queue_timeout):
                    await queue.put(item)
            except TimeoutError:
                raise StoreOverloaded(
                    f"append queue full ({self._config.append_queue_size} appends)"
                ) from None
        queued = queue.qsize()
        if queued > self._queue_peak:
            self._queue_peak = queued
        # Cancelling this wait cancels only the wait: the writer still commits the append.
        outcome = await item.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: take what is queued, commit it, repeat, until cancelled.

        Opens the writer's connection first (so an unreachable database fails the store's
        start) and closes it on exit. On exit every append still queued or in flight is
        failed with ``StoreClosed``, so no caller waits forever.
        """
        await self._connection()
        self._accepting = True
        task_status.started()
        # Appends taken off the queue but held for the next transaction: those queued
        # behind a terminal append of the same run (a run ends once per transaction).
        # Never more than one batch.
        held: list[_Append] = []
        batch: list[_Append] = []
        queue = self._queue
        limit = self._config.append_batch_size
        deadline = _Deadline(self._config.append_timeout)
        try:
            while True:
                if not held:
                    held.append(await queue.get())
                self._idle.clear()
                while len(held) < limit and not queue.empty():
                    held.append(queue.get_nowait())
                batch, held = self._split(held)
                await self._commit_guarded(batch, deadline)
                batch = []
                if not held and queue.empty():
                    self._idle.set()
        finally:
            deadline.close()
            self._accepting = False
            closed = StoreClosed("store", "closed while the append was pending")
            for item in (*batch, *held):
                item.fail(closed)
            while not self._queue.empty():
                self._queue.get_nowait().fail(closed)
            self._idle.set()
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await self._drop_connection()

    def _split(self, items: list[_Append]) -> tuple[list[_Append], list[_Append]]:
        """The next transaction's appends (within the byte bound), and the rest in order."""
        if len(items) == 1:
            return items, []
        batch: list[_Append] = []
        rest: list[_Append] = []
        ended: set[UUID] = set()
        size = 0
        for item in items:
            # Once over the byte bound everything waits, so per-run order holds.
            if item.run_id in ended or (batch and size >= self._config.append_batch_bytes):
                rest.append(item)
                continue
            batch.append(item)
            size += item.size
            if item.events[-1].status is not None:
                ended.add(item.run_id)
        return batch, rest

    def stop_accepting(self) -> None:
        """Refuse new appends (``StoreClosed``); queued ones still commit."""
        self._accepting = False

    async def wait_idle(self) -> None:
        """Wait until the queue is empty and no transaction is in flight."""
        await self._idle.wait()

    async def _connection(self) -> AsyncCursor[TupleRow]:
        """The writer's cursor on its own connection, (re)opened within bounded tries.

        One cursor serves every statement: creating one per statement (what
        ``AsyncConnection.execute`` does) set up a fresh adaptation context each time and
        measured as about 50 us of CPU per single append on this machine.
        """
        cursor = self._cursor
        if cursor is not None and not cursor.connection.closed:
            return cursor
        await self._drop_connection()
        attempt = 1
        # The pool's settings (autocommit, from connect; the server-side timeout), and a
        # name that tells the writer's backend apart in pg_stat_activity.
        dsn = _db.with_options(
            self._dsn,
            f"-c statement_timeout={int(self._config.statement_timeout * 1000)}",
            application_name=WRITER_APPLICATION_NAME,
        )
        while True:
            try:
                conn = await _db.connect(dsn, connect_timeout=self._config.connect_timeout)
            except StoreError:
                if attempt == _CONNECT_ATTEMPTS:
                    raise
            else:
                _arrays.register(conn)
                self._cursor = cursor = conn.cursor()
                self._connects += 1
                return cursor
            await anyio.sleep(_CONNECT_PAUSE * attempt)
            attempt += 1

    async def _drop_connection(self) -> None:
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            await cursor.connection.close()

    async def _commit_guarded(self, batch: list[_Append], deadline: _Deadline) -> None:
        error: BaseException
        deadline.start()
        try:
            attempt = 1
            while True:
                try:
                    await self._commit(batch)
                    break
                except _RETRYABLE as exc:
                    # Rolled back: retry what it left unsettled, a bounded number of times.
                    batch = [item for item in batch if not item.settled]
                    if attempt == _TX_ATTEMPTS:
                        runs = tuple(sorted({item.run_id for item in batch}))
                        raise TransactionConflict(runs, exc.sqlstate, attempt) from exc
                attempt += 1
                self._retries += 1
                await _db.pause_before_retry(self._rng)
        except asyncio.CancelledError:
            if not deadline.expired():
                raise
            error = StoreOverloaded(f"append transaction over {self._config.append_timeout:g} s")
        except StoreError as exc:
            error = exc
        except Exception as exc:
            try:
                _db.raise_translated(exc, self._dsn)
            except BaseException as translated:
                error = translated
        else:
            return
        finally:
            deadline.stop()
        self._failed_batches += 1
        _logger.warning("append_batch_failed", appends=len(batch), error=type(error).__name__)
        for item in batch:
            # The outcome may be unknown, and a cached head may be wrong either way.
            self._heads.discard(item.run_id)
            if not item.settled:
                item.fail(error)
        # The connection may be mid-transaction or broken: open a fresh one next time.
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._drop_connection()

    async def _commit(self, batch: list[_Append]) -> None:
        """Commit ``batch``: settle every append in it, or raise.

        A deadlock or serialization failure raised from here rolled back only the
        transaction it hit; appends settled before it stay settled.
        """
        cur = self._cursor
        if cur is None or cur.connection.closed:
            cur = await self._connection()
        heads = self._heads
        if len(batch) == 1:
            # The common case of one emitter: one append whose run's head is cached.
            item = batch[0]
            head = heads.get(item.run_id)
            if (
                head is not None
                and item.epoch == head.epoch > 0
                and head.status not in _TERMINAL_STATUSES
            ):
                if len(item.events) == 1:
                    # Inline, without a statement builder: the single-emitter hot path.
                    event = item.events[0]
                    seq = head.last_seq + 1
                    digest = hashlib.sha256(
                        b"%s%s%d%s" % (head.last_hash, event.head, seq, event.tail)
                    ).digest()
                    if await _execute_one(
                        cur, self._notify_in_tx, item.run_id, head, event, digest
                    ):
                        item.resolve([seq])
                        heads.put(
                            item.run_id, _Head(seq, digest, head.epoch, event.status or head.status)
                        )
                        self._events += 1
                        self._transactions += 1
                        self._largest_batch = self._largest_batch or 1
                        if not self._notify_in_tx:
                            self._notifier.post({item.run_id: seq})
                        return
                else:
                    statement = _Statement()
                    statement.add(item.run_id, head, batch)
                    if await statement.execute(cur, self._notify_in_tx) is None:
                        self._committed(statement.plans)
                        return
                heads.discard(item.run_id)
                self._contested += 1
                await self._commit_locked(cur, {item.run_id: batch})
                return
            by_run = {item.run_id: batch}
        else:
            by_run = {}
            for item in batch:
                items = by_run.get(item.run_id)
                if items is None:
                    by_run[item.run_id] = [item]
                else:
                    items.append(item)
        known: dict[UUID, _Head] = {}
        missing: list[UUID] = []
        for run_id in by_run:
            head = heads.get(run_id)
            if head is None:
                missing.append(run_id)
            else:
                known[run_id] = head
        fresh: dict[UUID, _Head | None] = {}
        if missing:
            # Plain read of committed rows: exact enough to refuse, and a hint to number.
            self._head_reads += 1
            fresh = dict.fromkeys(missing)
            fresh.update(await self._read_heads(cur, missing, lock=False))
            for run_id, head in fresh.items():
                if head is not None:
                    heads.put(run_id, head)
        statement = _Statement()
        contested: dict[UUID, list[_Append]] = {}
        for run_id in sorted(by_run) if len(by_run) > 1 else by_run:
            authoritative = run_id in fresh
            head = fresh[run_id] if authoritative else known[run_id]
            pending, certain = self._screen(run_id, by_run[run_id], head, authoritative)
            if not pending:
                continue
            assert head is not None
            if certain:
                statement.add(run_id, head, pending)
            else:
                # An epoch newer than the cached one: only the locked row can tell.
                heads.discard(run_id)
                contested[run_id] = pending
        if statement.plans:
            moved = await statement.execute(cur, self._notify_in_tx)
            if moved is None:
                self._committed(statement.plans)
            else:
                self._committed([plan for plan in statement.plans if plan.run_id in moved])
                for plan in statement.plans:
                    if plan.run_id not in moved:
                        heads.discard(plan.run_id)
                        contested[plan.run_id] = plan.items
        if contested:
            self._contested += len(contested)
            await self._commit_locked(cur, contested)

    def _screen(
        self, run_id: UUID, items: list[_Append], head: _Head | None, authoritative: bool
    ) -> tuple[list[_Append], bool]:
        """Refuse what ``head`` proves can never commit; return the rest, and whether
        ``head`` fits them all (same epoch), so they can be numbered from it.

        ``authoritative``: ``head`` was read after these appends were queued (it is the
        newest state, or older only by writes a fence re-check will catch).
        """
        if head is None:
            for item in items:
                self._refuse(item, RunNotFound(run_id))
            return [], True
        pending: list[_Append] = []
        certain = True
        for item in items:
            if head.status in _TERMINAL_STATUSES:
                self._refuse(item, RunTerminal(run_id, head.status))
            elif item.epoch == head.epoch and head.epoch > 0:
                pending.append(item)
            elif authoritative or item.epoch < head.epoch:
                # Epochs only grow: an older one is stale for good. A newer one than an
                # authoritative read shows was never granted.
                self._refuse(item, StaleEpoch(run_id, item.epoch, head.epoch or None))
            else:
                pending.append(item)
                certain = False
        return pending, certain

    def _refuse(self, item: _Append, error: StoreError) -> None:
        self._refused += 1
        item.fail(error)

    def _committed(self, plans: list[_Plan]) -> None:
        """Settle the appends of ``plans``, whose heads moved; remember the new heads."""
        if not plans:
            return
        heads = self._heads
        count = 0
        for plan in plans:
            for item, seqs in zip(plan.items, plan.seqs, strict=True):
                item.resolve(seqs)
            count += len(plan.items)
            head = plan.head
            heads.put(
                plan.run_id,
                _Head(plan.last_seq, plan.hashes[-1], head.epoch, plan.status or head.status),
            )
            self._events += len(plan.hashes)
        self._transactions += 1
        if count > self._largest_batch:
            self._largest_batch = count
        if not self._notify_in_tx:
            # Wake readers right after commit, off this writer's path.
            self._notifier.post({plan.run_id: plan.last_seq for plan in plans})

    async def _commit_locked(
        self, cur: AsyncCursor[TupleRow], contested: dict[UUID, list[_Append]]
    ) -> None:
        """Settle contested runs' appends on their locked, newest rows, in one transaction.

        Under the lock nothing can move a head or change the fence until commit, so every
        remaining append is either refused or committed here: the retry is bounded.
        """
        statement = _Statement()
        async with cur.connection.transaction():
            locked = await self._read_heads(cur, list(contested), lock=True)
            for run_id in sorted(contested):
                head = locked.get(run_id)
                items = [item for item in contested[run_id] if not item.settled]
                pending, _ = self._screen(run_id, items, head, True)
                if pending:
                    assert head is not None
                    statement.add(run_id, head, pending)
            if statement.plans and await statement.execute(cur, self._notify_in_tx) is not None:
                # Impossible while the rows are locked; roll back rather than guess.
                raise RuntimeError("an append under the row lock did not move its run's head")
        self._committed(statement.plans)
        for run_id, head in locked.items():
            if run_id not in self._heads:
                self._heads.put(run_id, head)

    async def _read_heads(
        self, cur: AsyncCursor[TupleRow], run_ids: list[UUID], *, lock: bool
    ) -> dict[UUID, _Head]:
        await cur.execute(_LOCK_HEADS if lock else _HEADS, (sorted(run_ids),))
        return {
            run_id: _Head(int(last_seq), bytes(last_hash), int(epoch), str(status))
            for run_id, status, epoch, last_seq, last_hash in await cur.fetchall()
        }


async def read_events(
    conn: AsyncConnection[TupleRow], run_id: UUID, *, after: int, limit: int
) -> list[Event]:
    """Committed events of ``run_id`` with ``seq > after``, oldest first, at most ``limit``.

    Raises:
        RunNotFound: no such run (checked only when the page is empty).
    """
    cur = await conn.execute(_READ, (run_id, after, limit))
    rows = await cur.fetchall()
    if not rows:
        exists = await conn.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,))
        if await exists.fetchone() is None:
            raise RunNotFound(run_id)
    return [
        Event(
            run_id=run_id,
            seq=int(seq),
            type=str(type_),
            payload=payload,
            epoch=int(epoch),
            schema_version=int(version),
            created_at=created_at,
            prev_hash=bytes(prev_hash),
            hash=bytes(digest),
        )
        for seq, type_, payload, epoch, version, created_at, prev_hash, digest in rows
    ]
