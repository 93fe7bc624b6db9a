"""The group-commit writer: one task, one connection, one transaction at a time.

Callers validate and serialise their events (:func:`runtime.store._batch.prepare_event`),
put their append on a bounded queue and wait; the writer task takes everything queued (up
to a bounded count and byte size) and commits it through its
:class:`~runtime.store._commit.BatchCommitter` on its own connection, so events emitted
while a transaction is in flight ride the next one. Per-run order is the queue's FIFO
order, which is each caller's emit order. Appends queued behind a terminal append of the
same run wait for the next transaction, where they are refused as ``RunTerminal`` if the
run did end.

Failures: a deadlock or serialization failure (which roll the transaction back) is
retried through :func:`runtime.store._db.retry_rolled_back`. Any other failure fails the
batch's unsettled appends, drops their runs from the head cache and drops the connection,
which the next batch reopens (a bounded number of attempts each). A failure whose outcome
is unknown (connection lost, timeout) is never retried: the append might have committed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
import psycopg
from psycopg import errors as pg_errors

from runtime.store import _arrays, _db
from runtime.store._args import integer
from runtime.store._args import run_id as check_run_id
from runtime.store._batch import PendingAppend, PreparedEvent, prepare_event
from runtime.store._commit import BatchCommitter
from runtime.store._deadline import BatchDeadline
from runtime.store._histogram import (
    APPEND_LATENCY_BUCKETS,
    BATCH_SIZE_BUCKETS,
    Histogram,
    HistogramSnapshot,
)
from runtime.store._log import StoreLogger
from runtime.store.dsn import dsn_host
from runtime.store.errors import (
    StoreClosed,
    StoreError,
    StoreOverloaded,
    StoreTimeout,
    TransactionConflict,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence
    from uuid import UUID

    from anyio.abc import TaskStatus
    from psycopg import AsyncCursor
    from psycopg.rows import TupleRow

    from runtime.store._notifier import Notifier
    from runtime.store.config import StoreConfig
    from runtime.store.events import NewEvent, Writer

__all__ = ["WRITER_APPLICATION_NAME", "GroupCommitWriter", "WriterStatistics"]

WRITER_APPLICATION_NAME: Final = "warden-append-writer"
"""``application_name`` of each group-commit writer's own connection."""

_CONNECT_ATTEMPTS: Final = 3
"""Tries to (re)open the writer's connection for one batch, with a short pause between."""
_CONNECT_PAUSE: Final = 0.1
_CLOSE_TIMEOUT: Final = 5.0
_RETRY_ON: Final = (*_db.RETRYABLE, pg_errors.LockNotAvailable)
"""Rollbacks the writer retries: deadlocks, serialization failures, and lock timeouts
(after failing the appends of the runs that stayed locked)."""
# Which of these run rows no other session holds locked (in autocommit, the locks go at
# once). The lock taken is the one the append's UPDATE needs, so a share lock that a
# foreign key check holds does not count as blocking.
_FREE_RUNS: Final = "SELECT run_id FROM runs WHERE run_id = ANY(%s) FOR NO KEY UPDATE SKIP LOCKED"

_logger = StoreLogger("runtime.store")


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
        retries: transactions retried after a deadlock, a serialization failure or a
            lock timeout.
        connects: connections the writer opened (1 unless one was lost).
        locked_runs: runs whose appends failed because another session held their row
            locked past ``append_lock_timeout``.
        append_latency: seconds from an append call to its outcome (committed or
            refused), a fixed-bucket histogram.
        batch_size: appends per batch the writer took to commit, a fixed-bucket
            histogram.
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
    locked_runs: int
    append_latency: HistogramSnapshot
    batch_size: HistogramSnapshot


class GroupCommitWriter:
    """Commits concurrent appends together, one transaction at a time, on its own connection.

    Constructed by the store and driven by :meth:`run` inside the store's task group; the
    constructor does no work. :meth:`append` is safe to call from any task once
    :meth:`run` has started.
    """

    def __init__(
        self, dsn: str, config: StoreConfig, notifier: Notifier, rng: random.Random
    ) -> None:
        self._rng = rng
        self._dsn = dsn
        self._config = config
        self._committer = BatchCommitter(
            config.append_head_cache_size, config.notify_mode == "in_transaction", notifier
        )
        self._queue: asyncio.Queue[PendingAppend] = asyncio.Queue(maxsize=config.append_queue_size)
        self._cursor: AsyncCursor[TupleRow] | None = None
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._queue_peak = 0
        self._failed_batches = 0
        self._retries = 0
        self._connects = 0
        self._locked_runs = 0
        self._latency = Histogram(APPEND_LATENCY_BUCKETS)
        self._batch_size = Histogram(BATCH_SIZE_BUCKETS)

    def statistics(self) -> WriterStatistics:
        """Return a frozen snapshot of the writer's counters."""
        committer = self._committer
        return WriterStatistics(
            queued=self._queue.qsize(),
            queue_capacity=self._config.append_queue_size,
            queue_peak=self._queue_peak,
            transactions=committer.transactions,
            events=committer.events,
            largest_batch=committer.largest_batch,
            refused=committer.refused,
            failed_batches=self._failed_batches,
            head_cache_size=len(committer.heads),
            head_cache_capacity=committer.heads.capacity,
            head_reads=committer.head_reads,
            contested=committer.contested,
            retries=self._retries,
            connects=self._connects,
            locked_runs=self._locked_runs,
            append_latency=self._latency.snapshot(),
            batch_size=self._batch_size.snapshot(),
        )

    def forget_head(self, run_id: UUID) -> None:
        """Drop the cached head of ``run_id`` (its row was just changed by someone else).

        Only an optimisation: a stale cached head never writes, it costs a second try.
        """
        self._committer.forget(run_id)

    async def append(
        self,
        run_id: UUID,
        epoch: int,
        events: Sequence[NewEvent],
        *,
        writer: Writer | None = None,
        traceparent: str | None = None,
    ) -> list[int]:
        """Append ``events`` to ``run_id`` as the holder of lease ``epoch``; return the seqs.

        ``traceparent`` (checked by the caller) is recorded with each event.

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
        check_run_id(run_id)
        integer(epoch, "epoch")
        if not events:
            raise ValueError("append needs at least one event")
        limit = self._config.payload_limit
        last = len(events) - 1
        prepared = [
            prepare_event(
                run_id, epoch, event.type, event.payload, limit, index == last, writer, traceparent
            )
            for index, event in enumerate(events)
        ]
        return await self._submit(
            run_id, epoch, prepared, sum(len(event.payload) for event in prepared)
        )

    async def append_one(
        self,
        run_id: UUID,
        epoch: int,
        type_: str,
        payload: object,
        *,
        writer: Writer | None = None,
        traceparent: str | None = None,
    ) -> int:
        """:meth:`append` of one event; return its seq."""
        check_run_id(run_id)
        integer(epoch, "epoch")
        event = prepare_event(
            run_id, epoch, type_, payload, self._config.payload_limit, True, writer, traceparent
        )
        (seq,) = await self._submit(run_id, epoch, [event], len(event.payload))
        return seq

    async def _submit(
        self, run_id: UUID, epoch: int, prepared: list[PreparedEvent], size: int
    ) -> list[int]:
        if not self._accepting:
            raise StoreClosed("store", "not open")
        loop = asyncio.get_running_loop()
        started = loop.time()
        item = PendingAppend(run_id, epoch, prepared, size, loop.create_future())
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
        # From here on the append has append_timeout to commit (or to fail).
        item.deadline = loop.time() + self._config.append_timeout
        queued = queue.qsize()
        if queued > self._queue_peak:
            self._queue_peak = queued
        # Cancelling this wait cancels only the wait: the writer still commits the append.
        outcome = await item.outcome
        self._latency.observe(loop.time() - started)
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
        held: list[PendingAppend] = []
        batch: list[PendingAppend] = []
        queue = self._queue
        limit = self._config.append_batch_size
        deadline = BatchDeadline(self._config.append_timeout)
        try:
            while True:
                if not held:
                    held.append(await queue.get())
                self._idle.clear()
                while len(held) < limit and not queue.empty():
                    held.append(queue.get_nowait())
                batch, held = self._split(held)
                self._batch_size.observe(len(batch))
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

    def _split(self, items: list[PendingAppend]) -> tuple[list[PendingAppend], list[PendingAppend]]:
        """The next transaction's appends (within the byte bound), and the rest in order."""
        if len(items) == 1:
            return items, []
        batch: list[PendingAppend] = []
        rest: list[PendingAppend] = []
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
        config = self._config
        # The pool's settings (autocommit, the server-side timeout), a lock timeout below
        # the append timeout, and a name that tells the writer's backend apart in
        # pg_stat_activity.
        info = _db.conninfo(
            self._dsn,
            config,
            settings={
                "statement_timeout": config.statement_timeout,
                "lock_timeout": min(config.append_lock_timeout, config.append_timeout / 2),
            },
            application_name=WRITER_APPLICATION_NAME,
        )
        while True:
            try:
                conn = await _db.connect(info)
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

    async def _live_cursor(self) -> AsyncCursor[TupleRow]:
        """The cursor, on a connection the server has not closed while it was idle.

        A backend terminated while idle (a failover, a pooler, an operator) would fail
        the next batch after it was sent, its outcome unknown; found before sending, the
        connection is replaced and the batch goes out on the new one. (The check costs a
        poll of the socket; a round trip only when the server sent something unprompted.)
        """
        cursor = self._cursor
        if cursor is None or cursor.connection.closed:
            return await self._connection()
        if _db.is_readable(cursor.connection):
            try:
                await _db.check_idle(cursor.connection)
            except psycopg.Error:
                await self._drop_connection()
                return await self._connection()
        return cursor

    async def _drop_connection(self) -> None:
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            await cursor.connection.close()

    async def _refuse_locked(self, cur: AsyncCursor[TupleRow], batch: list[PendingAppend]) -> None:
        """After a lock timeout: fail the appends of the runs whose rows are locked by
        another session, so the rest of the batch can go again without them."""
        unsettled = sorted({item.run_id for item in batch if not item.settled})
        await cur.execute(_FREE_RUNS, (unsettled,))
        free = {run_id for (run_id,) in await cur.fetchall()}
        locked = [run_id for run_id in unsettled if run_id not in free]
        for run_id in locked:
            error = TransactionConflict((run_id,), "55P03", 1)
            for item in batch:
                if item.run_id == run_id and not item.settled:
                    item.fail(error)
        if locked:
            self._locked_runs += len(locked)
            _logger.warning("append_run_locked", runs=[str(run_id) for run_id in locked])

    async def _commit_guarded(self, batch: list[PendingAppend], deadline: BatchDeadline) -> None:
        error: BaseException

        async def attempt() -> None:
            pending = [item for item in batch if not item.settled]
            if not pending:
                return
            cur = await self._live_cursor()
            try:
                await self._committer.commit(cur, pending)
            except pg_errors.LockNotAvailable:
                # Rolled back whole: nothing of the batch was written. The runs still
                # locked fail alone; the others are retried at once.
                await self._refuse_locked(cur, pending)
                raise

        def retried() -> None:
            self._retries += 1

        def unsettled_runs() -> tuple[UUID, ...]:
            return tuple(sorted({item.run_id for item in batch if not item.settled}))

        due = batch[0].deadline if len(batch) == 1 else min(item.deadline for item in batch)
        if due <= asyncio.get_running_loop().time():
            # Some waited out their time behind a batch that hung: never sent.
            now = asyncio.get_running_loop().time()
            timeout = StoreTimeout(dsn_host(self._dsn), "append", self._config.append_timeout)
            for item in batch:
                if item.deadline <= now:
                    item.fail(timeout)
            batch = [item for item in batch if not item.settled]
            if not batch:
                return
            due = min(item.deadline for item in batch)
        deadline.start(due)
        try:
            await _db.retry_rolled_back(
                attempt,
                rng=self._rng,
                run_ids=unsettled_runs,
                on_retry=retried,
                retry_on=_RETRY_ON,
            )
        except asyncio.CancelledError:
            if not deadline.expired():
                raise
            error = StoreTimeout(dsn_host(self._dsn), "append", self._config.append_timeout)
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
        failed = 0
        for item in batch:
            # The outcome may be unknown, and a cached head may be wrong either way.
            self._committer.forget(item.run_id)
            if not item.settled:
                item.fail(error)
                failed += 1
        # The callers know; now the log (which can never raise into the writer).
        _logger.warning("append_batch_failed", appends=failed, error=type(error).__name__)
        # The connection may be mid-transaction or broken: open a fresh one next time.
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._drop_connection()
