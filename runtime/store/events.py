"""The fenced, hash-chained, group-committed event log (DESIGN §6-§7).

Appends go through one :class:`GroupCommitWriter` per store. Callers validate and
serialise their payloads, put their append on a bounded queue and wait; a single writer
task takes everything queued (up to a bounded count and byte size) and commits it as one
SQL statement in autocommit, i.e. one round trip and one transaction, so events emitted
while a transaction is in flight ride the next one. The statement:

1. locks the ``runs`` row and the ``run_leases`` row of every run in the batch, in
   ``run_id`` order (no deadlocks). Locking the lease row makes PostgreSQL return its
   newest committed version even if a takeover committed while the statement waited; and
   since lease acquire locks the ``runs`` row first, no takeover commits until this
   transaction ends;
2. checks every append on its own: unknown run → ``RunNotFound``, terminal run →
   ``RunTerminal``, no lease or a different epoch → ``StaleEpoch``. A refused append
   contributes no row; the rest of the batch goes on;
3. allocates seqs from ``runs.last_seq`` (the locked row, never memory), chains
   ``sha256(prev_hash || canonical bytes)`` from ``runs.last_hash`` through each run's
   events in arrival order (the canonical bytes are built exactly as
   :func:`runtime.store.chain.canonical_bytes` builds them), inserts the rows and moves
   each run's head; a terminal event type also sets the run's terminal status;
4. in ``in_transaction`` mode calls ``pg_notify`` once, payload ``run_id:seq`` for each
   run that advanced (comma-separated; the batch bound keeps it under PostgreSQL's
   limit). In ``after_commit`` mode the committed heads go to the store's
   :class:`~runtime.store._notifier.Notifier` instead.

Per-run order is the queue's FIFO order, which is each caller's emit order. Appends queued
behind a terminal append of the same run wait for the next transaction, where they are
refused as ``RunTerminal`` if the run did end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from uuid import UUID

import anyio
import orjson
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

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from anyio.abc import TaskStatus
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.config import NodeConfig
    from runtime.store._notifier import Notifier
    from runtime.store._pool import Pool

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

_MAX_TYPE_LENGTH: Final = 200

_logger = structlog.get_logger("runtime.store")

# The fenced append: one statement, so one round trip and one implicit transaction.
# ``locked`` locks each run row and its lease row; locking the lease row too makes
# PostgreSQL return its newest committed version even if a takeover committed while this
# statement waited, and lease acquire locks the run row first, so no takeover can commit
# before this transaction ends. ``ok`` keeps the events of appends that pass the fence,
# numbered per run in arrival order; ``chain`` allocates seqs from ``runs.last_seq`` and
# chains sha256(prev_hash || head || seq || tail) recursively; ``inserted`` and
# ``advanced`` write the rows and move each run's head. The result has one row per append:
# outcome 'ok' | 'not_found' | 'terminal' | 'stale', its seqs, and the lease's epoch.
_APPEND = """
WITH RECURSIVE ev AS (
    -- The batch arrives as one JSON array (one orjson call to build, one parameter);
    -- strings come back out of it exactly as they went in.
    SELECT x.a, x.r AS run_id, x.e AS epoch, x.t AS type, x.j AS type_json, x.p AS payload,
           x.s AS status, x.i
    FROM jsonb_to_recordset(%(batch)s::jsonb)
         AS x(i integer, a integer, r uuid, e bigint, t text, j text, p text, s text)
), locked AS (
    SELECT r.run_id, r.status, r.last_seq, r.last_hash, l.epoch
    FROM runs AS r JOIN run_leases AS l ON l.run_id = r.run_id
    WHERE r.run_id IN (SELECT run_id FROM ev)
    ORDER BY r.run_id
    FOR UPDATE OF r FOR SHARE OF l
), ok AS (
    SELECT ev.*, k.last_seq AS base_seq, k.last_hash AS base_hash,
           row_number() OVER (PARTITION BY ev.run_id ORDER BY ev.i) AS n,
           -- The canonical event bytes around the seq digits (runtime/store/chain.py).
           convert_to('{"epoch":' || ev.epoch || ',"payload":' || ev.payload
                      || ',"run_id":"' || ev.run_id || '","schema_version":'
                      || %(version)b::smallint || ',"seq":', 'UTF8') AS head,
           convert_to(',"type":' || ev.type_json || '}', 'UTF8') AS tail
    FROM ev JOIN locked AS k ON k.run_id = ev.run_id
    WHERE k.epoch = ev.epoch AND k.status NOT IN ('succeeded', 'failed', 'canceled', 'timed_out')
), chain AS (
    SELECT ok.run_id, ok.n, ok.base_seq + 1 AS seq, ok.base_hash AS prev,
           sha256(ok.base_hash || ok.head || convert_to((ok.base_seq + 1)::text, 'UTF8')
                  || ok.tail) AS hash
    FROM ok WHERE ok.n = 1
    UNION ALL
    SELECT ok.run_id, ok.n, c.seq + 1, c.hash,
           sha256(c.hash || ok.head || convert_to((c.seq + 1)::text, 'UTF8') || ok.tail)
    FROM chain AS c JOIN ok ON ok.run_id = c.run_id AND ok.n = c.n + 1
), inserted AS (
    INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                            prev_hash, hash)
    SELECT ok.run_id, c.seq, ok.type, ok.payload::jsonb, ok.epoch, %(version)b,
           ok.status IS NOT NULL, c.prev, c.hash
    FROM chain AS c JOIN ok ON ok.run_id = c.run_id AND ok.n = c.n
    RETURNING run_id
), heads AS (
    SELECT DISTINCT ON (c.run_id) c.run_id, c.seq, c.hash
    FROM chain AS c ORDER BY c.run_id, c.n DESC
), advanced AS (
    UPDATE runs AS r
    SET last_seq = h.seq, last_hash = h.hash, updated_at = now(),
        status = coalesce(t.status, r.status),
        finished_at = CASE WHEN t.status IS NULL THEN r.finished_at ELSE now() END
    FROM heads AS h
         JOIN (SELECT run_id, max(status) AS status FROM ok GROUP BY run_id) AS t
           ON t.run_id = h.run_id
    WHERE r.run_id = h.run_id
    RETURNING r.run_id
)
SELECT ev.a,
       CASE WHEN k.run_id IS NULL THEN
                CASE WHEN EXISTS (SELECT 1 FROM runs WHERE run_id = ev.run_id)
                     THEN 'stale' ELSE 'not_found' END
            WHEN k.status IN ('succeeded', 'failed', 'canceled', 'timed_out') THEN 'terminal'
            WHEN k.epoch <> ev.epoch THEN 'stale'
            ELSE 'ok' END AS outcome,
       min(c.seq), max(c.seq), min(k.epoch), min(k.status),
       (SELECT pg_notify(%(channel)b::text, p)
          FROM (SELECT string_agg(run_id::text || ':' || seq::text, ',') AS p FROM heads) AS s
         WHERE p IS NOT NULL AND %(channel)b::text IS NOT NULL) IS NULL AS _notified
FROM ev
LEFT JOIN locked AS k ON k.run_id = ev.run_id
LEFT JOIN ok ON ok.i = ev.i
LEFT JOIN chain AS c ON c.run_id = ok.run_id AND c.n = ok.n
GROUP BY ev.a, ev.run_id, ev.epoch, k.run_id, k.status, k.epoch
ORDER BY ev.a
"""
# The same for the common case of a batch holding one append of one event: no recursion,
# no arrays, scalar parameters, the same locking and fence. One row if the run is leased:
# its status and lease epoch, and the new seq if the append passed the fence.
_APPEND_ONE = """
WITH locked AS (
    SELECT r.status, r.last_seq, r.last_hash, l.epoch
    FROM runs AS r JOIN run_leases AS l ON l.run_id = r.run_id
    WHERE r.run_id = %(run)b
    FOR UPDATE OF r FOR SHARE OF l
), ok AS (
    SELECT k.last_seq + 1 AS seq, k.last_hash AS prev,
           -- The canonical event bytes (runtime/store/chain.py), chained.
           sha256(k.last_hash || convert_to(
               '{"epoch":' || %(epoch)b::bigint || ',"payload":' || %(payload)b::text
               || ',"run_id":"' || %(run)b::uuid || '","schema_version":'
               || %(version)b::smallint || ',"seq":' || (k.last_seq + 1)
               || ',"type":' || %(type_json)b::text || '}', 'UTF8')) AS hash
    FROM locked AS k
    WHERE k.epoch = %(epoch)b AND k.status NOT IN ('succeeded', 'failed', 'canceled', 'timed_out')
), inserted AS (
    INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                            prev_hash, hash)
    SELECT %(run)b, ok.seq, %(type)b, %(payload)b::jsonb, %(epoch)b, %(version)b,
           %(status)b::text IS NOT NULL, ok.prev, ok.hash
    FROM ok
), advanced AS (
    UPDATE runs AS r
    SET last_seq = ok.seq, last_hash = ok.hash, updated_at = now(),
        status = coalesce(%(status)b::text, r.status),
        finished_at = CASE WHEN %(status)b::text IS NULL THEN r.finished_at ELSE now() END
    FROM ok
    WHERE r.run_id = %(run)b
)
SELECT k.status, k.epoch, ok.seq{notify} FROM locked AS k LEFT JOIN ok ON true
"""
_APPEND_ONE_NOTIFY = _APPEND_ONE.replace(
    "{notify}",
    ",\n       CASE WHEN ok.seq IS NOT NULL THEN"
    " pg_notify(%(channel)b::text, %(run)b::text || ':' || ok.seq::text) END",
)
_APPEND_ONE = _APPEND_ONE.replace("{notify}", "")
_RUN_STATUS = "SELECT status FROM runs WHERE run_id = %s"
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
    type_json: str  # the type as a JSON string, for the canonical bytes
    payload: str  # canonical JSON text
    status: str | None


@dataclass(slots=True, eq=False)
class _Append:
    run_id: UUID
    epoch: int
    events: list[_Prepared]
    size: int
    # The outcome travels as a result, never as a future's exception: a caller cancelled
    # meanwhile leaves nobody to retrieve it, and asyncio would report it as lost.
    outcome: asyncio.Future[list[int] | BaseException]

    def resolve(self, seqs: list[int]) -> None:
        if not self.outcome.done():
            self.outcome.set_result(seqs)

    def fail(self, error: BaseException) -> None:
        if not self.outcome.done():
            self.outcome.set_result(error)


def _prepare(events: Sequence[NewEvent], limit: int) -> tuple[list[_Prepared], int]:
    if not events:
        raise ValueError("append needs at least one event")
    prepared: list[_Prepared] = []
    size = 0
    for index, event in enumerate(events):
        if not 0 < len(event.type) <= _MAX_TYPE_LENGTH or "\x00" in event.type:
            raise ValueError(
                f"event type must be a non-empty str of at most {_MAX_TYPE_LENGTH} characters"
                " without NUL"
            )
        status = TERMINAL_EVENTS.get(event.type)
        if status is not None and index != len(events) - 1:
            raise ValueError(f"terminal event {event.type!r} must be the last of its append")
        payload = _codec.encode(event.payload, what=f"payload of {event.type!r}", limit=limit)
        size += len(payload)
        type_json = orjson.dumps(event.type).decode()
        prepared.append(_Prepared(event.type, type_json, payload.decode(), status))
    return prepared, size


class GroupCommitWriter:
    """Commits concurrent appends together, one transaction at a time.

    Constructed by the store and driven by :meth:`run` inside the store's task group; the
    constructor does no work. :meth:`append` is safe to call from any task once
    :meth:`run` has started.
    """

    def __init__(self, pool: Pool, dsn: str, config: NodeConfig, notifier: Notifier) -> None:
        self._pool = pool
        self._notifier = notifier
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
        item = _Append(run_id, epoch, prepared, size, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            try:
                async with asyncio.timeout(self._config.append_queue_timeout):
                    await self._queue.put(item)
            except TimeoutError:
                raise StoreOverloaded(
                    f"append queue full ({self._config.append_queue_size} appends)"
                ) from None
        self._queue_peak = max(self._queue_peak, self._queue.qsize())
        # Cancelling this wait cancels only the wait: the writer still commits the append.
        outcome = await item.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The writer loop: take what is queued, commit it, repeat, until cancelled.

        On exit every append still queued or in flight is failed with ``StoreClosed``, so
        no caller waits forever.
        """
        self._accepting = True
        task_status.started()
        # Appends taken off the queue but held for the next transaction: those queued
        # behind a terminal append of the same run (a run ends once per transaction).
        # Never more than one batch.
        held: list[_Append] = []
        batch: list[_Append] = []
        try:
            while True:
                if not held:
                    held.append(await self._queue.get())
                self._idle.clear()
                while len(held) < self._config.append_batch_size:
                    try:
                        held.append(self._queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                batch, held = self._split(held)
                await self._commit_guarded(batch)
                batch = []
                if not held and self._queue.empty():
                    self._idle.set()
        finally:
            self._accepting = False
            closed = StoreClosed("store", "closed while the append was pending")
            for item in (*batch, *held):
                item.fail(closed)
            while not self._queue.empty():
                self._queue.get_nowait().fail(closed)
            self._idle.set()

    def _split(self, items: list[_Append]) -> tuple[list[_Append], list[_Append]]:
        """The next transaction's appends (within the byte bound), and the rest in order."""
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
        notify_in_tx = self._config.notify_mode == "in_transaction"
        async with self._pool.connection() as conn:
            if len(batch) == 1 and len(batch[0].events) == 1:
                await self._commit_one(conn, batch[0], notify_in_tx)
                return
            rows_in = [
                {
                    "i": position,
                    "a": index,
                    "r": item.run_id,
                    "e": item.epoch,
                    "t": event.type,
                    "j": event.type_json,
                    "p": event.payload,
                    "s": event.status,
                }
                for position, (index, item, event) in enumerate(
                    (index, item, event)
                    for index, item in enumerate(batch)
                    for event in item.events
                )
            ]
            params = {
                "batch": orjson.dumps(rows_in).decode(),
                "version": SCHEMA_VERSION,
                "channel": EVENTS_CHANNEL if notify_in_tx else None,
            }
            cur = await conn.execute(_APPEND, params)
            rows = await cur.fetchall()
            # Autocommit: the statement's transaction has committed once rows are back.
            heads: dict[UUID, int] = {}
            for index, result, first_seq, last_seq, current_epoch, run_status, _ in rows:
                item = batch[index]
                if result == "ok":
                    item.resolve(list(range(first_seq, last_seq + 1)))
                    heads[item.run_id] = last_seq
                    self._events += last_seq - first_seq + 1
                    continue
                self._refused += 1
                if result == "not_found":
                    item.fail(RunNotFound(item.run_id))
                elif result == "terminal":
                    item.fail(RunTerminal(item.run_id, run_status))
                else:
                    item.fail(StaleEpoch(item.run_id, item.epoch, current_epoch))
            if heads:
                self._transactions += 1
                self._largest_batch = max(self._largest_batch, len(batch))
                if not notify_in_tx:
                    # Wake readers right after commit, off this writer's path.
                    self._notifier.post(heads)

    async def _commit_one(
        self, conn: AsyncConnection[TupleRow], item: _Append, notify_in_tx: bool
    ) -> None:
        event = item.events[0]
        params = {
            "run": item.run_id,
            "epoch": item.epoch,
            "type": event.type,
            "type_json": event.type_json,
            "payload": event.payload,
            "status": event.status,
            "version": SCHEMA_VERSION,
        }
        if notify_in_tx:
            params["channel"] = EVENTS_CHANNEL
        cur = await conn.execute(_APPEND_ONE_NOTIFY if notify_in_tx else _APPEND_ONE, params)
        row = await cur.fetchone()
        # Autocommit: the statement's transaction has committed once the row is back.
        if row is not None and row[2] is not None:
            seq = int(row[2])
            item.resolve([seq])
            self._events += 1
            self._transactions += 1
            self._largest_batch = max(self._largest_batch, 1)
            if not notify_in_tx:
                self._notifier.post({item.run_id: seq})
            return
        self._refused += 1
        if row is not None:
            status, epoch = str(row[0]), int(row[1])
            if status in TERMINAL_EVENTS.values():
                item.fail(RunTerminal(item.run_id, status))
            else:
                item.fail(StaleEpoch(item.run_id, item.epoch, epoch))
            return
        # Not leased, or no such run: tell them apart (a read; nothing was written).
        cur = await conn.execute(_RUN_STATUS, (item.run_id,))
        if await cur.fetchone() is None:
            item.fail(RunNotFound(item.run_id))
        else:
            item.fail(StaleEpoch(item.run_id, item.epoch, None))


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
