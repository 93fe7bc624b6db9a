"""What the group-commit writer writes: one batch at a time, fenced, from the head cache.

:class:`BatchCommitter` decides, for a batch of appends, what can be refused without
writing, numbers and chains the rest from the cached run heads, and sends one statement
(one round trip, one transaction). Connection handling, deadlines and retries are the
writer's (:mod:`runtime.store._writer`).

**The fence lives in the run row.** ``runs.lease_epoch`` mirrors the lease's epoch
(lease acquire writes both in one statement, under the run row's lock). An append moves
its run's head with one ``UPDATE runs ... WHERE lease_epoch = <epoch> AND last_seq =
<expected> AND status NOT IN (<terminal>)``. When the row is locked by a concurrent
transaction, PostgreSQL waits for it and re-checks those conditions on the newest row
version (EvalPlanQual), so a takeover that commits meanwhile makes the stale append update
nothing, and write nothing. The events are inserted by the same statement for exactly the
runs whose head moved; no explicit row locks are taken.

**The cancel fence lives there too.** Once ``run.cancel_requested`` is committed
(``runs.cancel_requested_at`` set), the same ``UPDATE`` moves a head only for appends of
cancellation bookkeeping (:data:`~runtime.store.CANCEL_BOOKKEEPING`); any other executor
event is refused with ``EgressFenced``, exactly as a stale epoch is, so an append in flight
when the cancel commits cannot land after it (DESIGN §8).

**Seqs and hashes come from a head cache.** The committer remembers each run's head (last
seq and hash, lease epoch, status) in a bounded LRU. For a batch it numbers the events
from the cached head and chains their hashes in Python, then sends **one statement**: the
``UPDATE`` above for every run in the batch (sorted by ``run_id``), and the ``INSERT`` of
their events; in ``in_transaction`` mode it also calls ``pg_notify`` once. The ``last_seq
= <expected>`` condition makes the cache a hint: a wrong head can never write, it only
moves nothing.

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.store import _append_sql
from runtime.store._batch import (
    Head,
    HeadCache,
    PendingAppend,
    Plan,
    Statement,
    execute_one,
    is_bookkeeping,
)
from runtime.store._status import TERMINAL_STATUSES
from runtime.store.chain import link
from runtime.store.errors import EgressFenced, RunNotFound, RunTerminal, StaleEpoch, StoreError

if TYPE_CHECKING:
    from uuid import UUID

    from psycopg import AsyncCursor
    from psycopg.rows import TupleRow

    from runtime.store._notifier import Notifier

__all__ = ["BatchCommitter"]


class BatchCommitter:
    """Commits batches of appends on the cursor it is given; keeps the head cache.

    Only the writer task uses it. ``notify_in_tx``: the statement sends the NOTIFY;
    otherwise committed heads are posted to ``notifier``.
    """

    def __init__(self, head_cache_size: int, notify_in_tx: bool, notifier: Notifier) -> None:
        self._heads = HeadCache(head_cache_size)
        self._notify_in_tx = notify_in_tx
        self._notifier = notifier
        self.transactions = 0
        self.events = 0
        self.largest_batch = 0
        self.refused = 0
        self.head_reads = 0
        self.contested = 0

    @property
    def heads(self) -> HeadCache:
        """The head cache (for statistics)."""
        return self._heads

    def forget(self, run_id: UUID) -> None:
        """Drop the cached head of ``run_id``: its row changed, or may have."""
        self._heads.discard(run_id)

    async def commit(self, cur: AsyncCursor[TupleRow], batch: list[PendingAppend]) -> None:
        """Commit ``batch``: settle every append in it, or raise.

        A deadlock or serialization failure raised from here rolled back only the
        transaction it hit; appends settled before it stay settled.
        """
        heads = self._heads
        if len(batch) == 1:
            # The common case of one emitter: one append whose run's head is cached.
            item = batch[0]
            head = heads.get(item.run_id)
            if (
                head is not None
                and item.epoch == head.epoch > 0
                and head.status not in TERMINAL_STATUSES
                and not head.cancel_requested
            ):
                if len(item.events) == 1:
                    # Inline, without a statement builder: the single-emitter hot path.
                    event = item.events[0]
                    seq = head.last_seq + 1
                    digest = link(head.last_hash, event.head, seq, event.tail)
                    if await execute_one(cur, self._notify_in_tx, item.run_id, head, event, digest):
                        item.resolve([seq])
                        heads.put(
                            item.run_id,
                            Head(seq, digest, head.epoch, event.status or head.status, False),
                        )
                        self.events += 1
                        self.transactions += 1
                        self.largest_batch = self.largest_batch or 1
                        if not self._notify_in_tx:
                            self._notifier.post({item.run_id: seq})
                        return
                else:
                    statement = Statement()
                    statement.add(item.run_id, head, batch)
                    if await statement.execute(cur, self._notify_in_tx) is None:
                        self._committed(statement.plans)
                        return
                heads.discard(item.run_id)
                self.contested += 1
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
        known: dict[UUID, Head] = {}
        missing: list[UUID] = []
        for run_id in by_run:
            head = heads.get(run_id)
            if head is None:
                missing.append(run_id)
            else:
                known[run_id] = head
        fresh: dict[UUID, Head | None] = {}
        if missing:
            # Plain read of committed rows: exact enough to refuse, and a hint to number.
            self.head_reads += 1
            fresh = dict.fromkeys(missing)
            fresh.update(await self._read_heads(cur, missing, lock=False))
            for run_id, head in fresh.items():
                if head is not None:
                    heads.put(run_id, head)
        statement = Statement()
        contested: dict[UUID, list[PendingAppend]] = {}
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
            self.contested += len(contested)
            await self._commit_locked(cur, contested)

    def _screen(
        self, run_id: UUID, items: list[PendingAppend], head: Head | None, authoritative: bool
    ) -> tuple[list[PendingAppend], bool]:
        """Refuse what ``head`` proves can never commit; return the rest, and whether
        ``head`` fits them all (same epoch), so they can be numbered from it.

        ``authoritative``: ``head`` was read after these appends were queued (it is the
        newest state, or older only by writes a fence re-check will catch).
        """
        if head is None:
            for item in items:
                self._refuse(item, RunNotFound(run_id))
            return [], True
        pending: list[PendingAppend] = []
        certain = True
        for item in items:
            if head.status in TERMINAL_STATUSES:
                self._refuse(item, RunTerminal(run_id, head.status))
            elif head.cancel_requested and item.epoch > 0 and not is_bookkeeping(item):
                # The cancel fence, like the epoch fence: a cancel request is final too.
                self._refuse(item, EgressFenced(run_id, "cancel_requested"))
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

    def _refuse(self, item: PendingAppend, error: StoreError) -> None:
        self.refused += 1
        item.fail(error)

    def _committed(self, plans: list[Plan]) -> None:
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
                Head(
                    plan.last_seq,
                    plan.hashes[-1],
                    head.epoch,
                    plan.status or head.status,
                    head.cancel_requested,
                ),
            )
            self.events += len(plan.hashes)
        self.transactions += 1
        if count > self.largest_batch:
            self.largest_batch = count
        if not self._notify_in_tx:
            # Wake readers right after commit, off this writer's path.
            self._notifier.post({plan.run_id: plan.last_seq for plan in plans})

    async def _commit_locked(
        self, cur: AsyncCursor[TupleRow], contested: dict[UUID, list[PendingAppend]]
    ) -> None:
        """Settle contested runs' appends on their locked, newest rows, in one transaction.

        Under the lock nothing can move a head or change the fence until commit, so every
        remaining append is either refused or committed here: the retry is bounded.
        """
        statement = Statement()
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
    ) -> dict[UUID, Head]:
        await cur.execute(_append_sql.LOCK_HEADS if lock else _append_sql.HEADS, (sorted(run_ids),))
        return {
            run_id: Head(int(last_seq), bytes(last_hash), int(epoch), str(status), bool(fenced))
            for run_id, status, epoch, last_seq, last_hash, fenced in await cur.fetchall()
        }
