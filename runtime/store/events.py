"""The fenced, hash-chained, group-committed event log (DESIGN §6-§7).

Appends go through one :class:`GroupCommitWriter` per store. Callers put their append on
a bounded queue and wait; a single writer task takes everything queued (up to a bounded
count and byte size) and commits it in one transaction, so events emitted while a
transaction is in flight ride the next one. One transaction:

1. locks the ``runs`` rows of every run in the batch, in ``run_id`` order (no deadlocks),
   and only then reads their lease epochs in a second statement, whose fresh snapshot
   sees any takeover that committed before the locks were granted; an acquire after that
   waits for this transaction, because acquire locks the same ``runs`` row;
2. checks every append on its own: unknown run → ``RunNotFound``, terminal run →
   ``RunTerminal``, epoch differing from the lease row → ``StaleEpoch``. A refused append
   is resolved at once and contributes no row; the rest of the batch goes on;
3. allocates seqs from ``runs.last_seq`` (the locked row, never memory), chains each hash
   from ``runs.last_hash``, inserts all rows with one ``unnest`` INSERT and moves each
   run's head; a terminal event type also sets the run's terminal status;
4. sends at most one NOTIFY for the transaction, payload ``run_id:seq`` for each run that
   advanced (comma-separated; the batch size bound keeps it under PostgreSQL's limit),
   either inside the transaction or right after commit (:data:`~runtime.config.NotifyMode`).

Each round of the transaction is pipelined: one round trip to lock and read, one to write
and commit. Per-run order is the queue's FIFO order, which is each caller's emit order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from uuid import UUID

import anyio
import structlog

from runtime import _db
from runtime.errors import (
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    StoreClosed,
    StoreError,
    StoreOverloaded,
)
from runtime.store import _codec
from runtime.store.chain import canonical_bytes, chain_hash

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from anyio.abc import TaskStatus
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

    from runtime.config import NodeConfig

__all__ = [
    "EVENTS_CHANNEL",
    "SCHEMA_VERSION",
    "TERMINAL_EVENTS",
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

TERMINAL_EVENTS: Final = {
    "run.succeeded": "succeeded",
    "run.failed": "failed",
    "run.canceled": "canceled",
    "run.timed_out": "timed_out",
}
"""Event types that end a run, and the terminal status each sets (one per run)."""

_TERMINAL_STATUSES: Final = frozenset(TERMINAL_EVENTS.values())
_MAX_TYPE_LENGTH: Final = 200
_NOTIFY_LIMIT: Final = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more

_logger = structlog.get_logger("runtime.store")

_LOCK_RUNS = """
SELECT run_id, status, last_seq, last_hash FROM runs
WHERE run_id = ANY(%s) ORDER BY run_id FOR UPDATE
"""
_READ_LEASES = "SELECT run_id, epoch FROM run_leases WHERE run_id = ANY(%s)"
_INSERT_EVENTS = """
INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                        prev_hash, hash)
SELECT r, s, t, p::jsonb, e, v, f, ph, h
FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::text[], %s::bigint[],
            %s::smallint[], %s::boolean[], %s::bytea[], %s::bytea[])
     AS u(r, s, t, p, e, v, f, ph, h)
"""
_ADVANCE_RUNS = """
UPDATE runs AS r
SET last_seq = u.last_seq, last_hash = u.last_hash, updated_at = now(),
    status = coalesce(u.status, r.status),
    finished_at = CASE WHEN u.status IS NULL THEN r.finished_at ELSE now() END
FROM unnest(%s::uuid[], %s::bigint[], %s::bytea[], %s::text[])
     AS u(run_id, last_seq, last_hash, status)
WHERE r.run_id = u.run_id
"""
_NOTIFY = "SELECT pg_notify(%s, %s)"
_READ = """
SELECT seq, type, payload, epoch, schema_version, created_at, prev_hash, hash
FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s
"""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append.

    Attributes:
        type: dotted event type, e.g. ``"tool.result"``; a type in
            :data:`TERMINAL_EVENTS` ends the run and must come last in its append.
        payload: any JSON value (serialised with orjson; at most the payload limit).
    """

    type: str
    payload: _codec.JSON = None


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
        refused: appends refused inside a batch (stale epoch, unknown or terminal run).
        failed_batches: transactions that failed (every append in them got the error).
    """

    queued: int
    queue_capacity: int
    queue_peak: int
    transactions: int
    events: int
    largest_batch: int
    refused: int
    failed_batches: int


@dataclass(slots=True)
class _Prepared:
    type: str
    payload: bytes
    status: str | None


@dataclass(slots=True, eq=False)
class _Append:
    run_id: UUID
    epoch: int
    events: list[_Prepared]
    size: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    seqs: list[int] | None = None
    error: BaseException | None = None

    def resolve(self, seqs: list[int]) -> None:
        if not self.done.is_set():
            self.seqs = seqs
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass(slots=True)
class _Head:
    status: str
    last_seq: int
    last_hash: bytes
    new_status: str | None = None
    advanced: bool = False


def _prepare(events: Sequence[NewEvent], limit: int) -> tuple[list[_Prepared], int]:
    if not events:
        raise ValueError("append needs at least one event")
    prepared: list[_Prepared] = []
    size = 0
    for index, event in enumerate(events):
        if not 0 < len(event.type) <= _MAX_TYPE_LENGTH:
            raise ValueError(f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH}")
        status = TERMINAL_EVENTS.get(event.type)
        if status is not None and index != len(events) - 1:
            raise ValueError(f"terminal event {event.type!r} must be the last of its append")
        payload = _codec.encode(event.payload, what=f"payload of {event.type!r}", limit=limit)
        size += len(payload)
        prepared.append(_Prepared(event.type, payload, status))
    return prepared, size


class GroupCommitWriter:
    """Commits concurrent appends together, one transaction at a time.

    Constructed by the store and driven by :meth:`run` inside the store's task group; the
    constructor does no work. :meth:`append` is safe to call from any task once
    :meth:`run` has started.
    """

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[TupleRow]], dsn: str, config: NodeConfig
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._config = config
        self._queue: asyncio.Queue[_Append] = asyncio.Queue(maxsize=config.append_queue_size)
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._queue_peak = 0
        self._transactions = 0
        self._events = 0
        self._largest_batch = 0
        self._refused = 0
        self._failed_batches = 0

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
        )

    async def append(self, run_id: UUID, epoch: int, events: Sequence[NewEvent]) -> list[int]:
        """Append ``events`` to ``run_id`` as the holder of lease ``epoch``; return the seqs.

        Returns after the transaction that holds them committed. Payloads are validated
        first, so a bad one raises without writing anything or touching the queue.
        Cancelling the caller does not cancel the commit: the events may still land.

        Raises:
            PayloadNotSerializable, PayloadTooLarge: a payload was refused.
            RunNotFound, RunTerminal, StaleEpoch: the append was refused; nothing written.
            StoreOverloaded: the queue stayed full for ``append_queue_timeout`` seconds.
            DatabaseUnavailable: the transaction failed (its outcome may be unknown).
            StoreClosed: the store is not open.
        """
        if not isinstance(run_id, UUID):
            raise TypeError(f"run_id must be a UUID, not {type(run_id).__name__}")
        prepared, size = _prepare(events, self._config.payload_limit)
        if not self._accepting:
            raise StoreClosed("store", "not open")
        item = _Append(run_id, epoch, prepared, size)
        try:
            async with asyncio.timeout(self._config.append_queue_timeout):
                await self._queue.put(item)
        except TimeoutError:
            raise StoreOverloaded(
                f"append queue full ({self._config.append_queue_size} appends)"
            ) from None
        self._queue_peak = max(self._queue_peak, self._queue.qsize())
        await item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.seqs is not None
        return item.seqs

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: take what is queued, commit it, repeat, until cancelled.

        On exit every append still queued or in flight is failed with ``StoreClosed``, so
        no caller waits forever.
        """
        self._accepting = True
        task_status.started()
        batch: list[_Append] = []
        try:
            while True:
                batch = [await self._queue.get()]
                self._idle.clear()
                size = batch[0].size
                while (
                    len(batch) < self._config.append_batch_size
                    and size < self._config.append_batch_bytes
                ):
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    batch.append(item)
                    size += item.size
                await self._commit_guarded(batch)
                batch = []
                if self._queue.empty():
                    self._idle.set()
        finally:
            self._accepting = False
            closed = StoreClosed("store", "closed while the append was pending")
            for item in batch:
                item.fail(closed)
            while not self._queue.empty():
                self._queue.get_nowait().fail(closed)
            self._idle.set()

    def stop_accepting(self) -> None:
        """Refuse new appends (``StoreClosed``); queued ones still commit."""
        self._accepting = False

    async def wait_idle(self) -> None:
        """Wait until the queue is empty and no transaction is in flight."""
        await self._idle.wait()

    async def _commit_guarded(self, batch: list[_Append]) -> None:
        try:
            async with asyncio.timeout(self._config.append_timeout):
                await self._commit(batch)
        except Exception as exc:
            self._failed_batches += 1
            error: BaseException = exc
            if isinstance(exc, TimeoutError):
                error = StoreOverloaded(
                    f"append transaction over {self._config.append_timeout:g} s"
                )
            elif not isinstance(exc, StoreError):
                try:
                    _db.raise_translated(exc, self._dsn)
                except BaseException as translated:
                    error = translated
            _logger.warning("append_batch_failed", appends=len(batch), error=type(error).__name__)
            for item in batch:
                item.fail(error)

    async def _commit(self, batch: list[_Append]) -> None:
        run_ids = sorted({item.run_id for item in batch})
        notify_in_tx = self._config.notify_mode == "in_transaction"
        async with self._pool.connection() as conn:
            async with conn.pipeline() as pipeline:
                async with conn.transaction():
                    # Round trip 1: BEGIN, lock the runs rows, then read the leases.
                    runs_cur = await conn.execute(_LOCK_RUNS, (run_ids,))
                    leases_cur = await conn.execute(_READ_LEASES, (run_ids,))
                    heads = {
                        row[0]: _Head(row[1], int(row[2]), bytes(row[3]))
                        for row in await runs_cur.fetchall()
                    }
                    epochs: dict[UUID, int] = {
                        row[0]: int(row[1]) for row in await leases_cur.fetchall()
                    }
                    accepted, columns = self._plan(batch, heads, epochs)
                    if accepted:
                        # Round trip 2: insert, advance the heads, (NOTIFY,) COMMIT.
                        await conn.execute(_INSERT_EVENTS, columns)
                        advanced = [(k, h) for k, h in heads.items() if h.advanced]
                        await conn.execute(
                            _ADVANCE_RUNS,
                            (
                                [k for k, _ in advanced],
                                [h.last_seq for _, h in advanced],
                                [h.last_hash for _, h in advanced],
                                [h.new_status for _, h in advanced],
                            ),
                        )
                        if notify_in_tx:
                            await conn.execute(_NOTIFY, (EVENTS_CHANNEL, _notify_payload(heads)))
                await pipeline.sync()  # the COMMIT's result: only now is the batch durable
            self._resolve(accepted)
            if accepted and not notify_in_tx:
                # Wake readers right after commit, in a transaction of its own that need
                # not wait for a WAL flush: it carries no data, only the wake-up.
                async with conn.pipeline(), conn.transaction():
                    await conn.execute("SET LOCAL synchronous_commit TO off")
                    await conn.execute(_NOTIFY, (EVENTS_CHANNEL, _notify_payload(heads)))

    def _resolve(self, accepted: list[tuple[_Append, list[int]]]) -> None:
        for item, seqs in accepted:
            if not item.done.is_set():
                item.resolve(seqs)
                self._events += len(seqs)

    def _plan(
        self, batch: list[_Append], heads: dict[UUID, _Head], epochs: dict[UUID, int]
    ) -> tuple[list[tuple[_Append, list[int]]], tuple[list[object], ...]]:
        accepted: list[tuple[_Append, list[int]]] = []
        cols: tuple[list[object], ...] = ([], [], [], [], [], [], [], [], [])
        c_run, c_seq, c_type, c_payload, c_epoch, c_version, c_terminal, c_prev, c_hash = cols
        for item in batch:
            head = heads.get(item.run_id)
            error: StoreError | None = None
            if head is None:
                error = RunNotFound(item.run_id)
            elif head.status in _TERMINAL_STATUSES:
                error = RunTerminal(item.run_id, head.status)
            elif epochs.get(item.run_id) != item.epoch:
                error = StaleEpoch(item.run_id, item.epoch, epochs.get(item.run_id))
            if error is not None or head is None:
                self._refused += 1
                item.fail(error or RunNotFound(item.run_id))
                continue
            seqs: list[int] = []
            for event in item.events:
                seq = head.last_seq + 1
                digest = chain_hash(
                    head.last_hash,
                    canonical_bytes(
                        run_id=item.run_id,
                        seq=seq,
                        type_=event.type,
                        epoch=item.epoch,
                        schema_version=SCHEMA_VERSION,
                        payload=event.payload,
                    ),
                )
                c_run.append(item.run_id)
                c_seq.append(seq)
                c_type.append(event.type)
                c_payload.append(event.payload.decode())
                c_epoch.append(item.epoch)
                c_version.append(SCHEMA_VERSION)
                c_terminal.append(event.status is not None)
                c_prev.append(head.last_hash)
                c_hash.append(digest)
                head.last_seq = seq
                head.last_hash = digest
                head.advanced = True
                if event.status is not None:
                    head.status = head.new_status = event.status
                seqs.append(seq)
            accepted.append((item, seqs))
        if accepted:
            self._transactions += 1
            self._largest_batch = max(self._largest_batch, len(batch))
        return accepted, cols


def _notify_payload(heads: dict[UUID, _Head]) -> str:
    """``run_id:seq`` for each run that advanced; ``*`` (wake everyone) if it cannot fit."""
    text = ",".join(f"{run_id}:{head.last_seq}" for run_id, head in heads.items() if head.advanced)
    return text if len(text) < _NOTIFY_LIMIT else "*"


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
