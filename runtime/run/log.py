"""RunLog: one executor's writes to one run's log, in order, under its lease epoch.

Every append of a run actor goes through here, one at a time (an ``asyncio.Lock``, fair
and first-come first-served, so the log order is the order of the calls). That keeps the
next seq predictable (``head + 1``), which is how a task's ``tool_call_id`` is derived
before its ``task.started`` event is written.

Handler output is *fenced*: the fence is checked after the lock is taken, right before the
append, so a cancel that arrived while the call waited for its turn is honoured. The
executor's own bookkeeping after a cancel (``task.canceled``, ``run.canceled``) is written
unfenced: the fence keeps the handler quiet, not the executor that winds the run up.

Every event carries its writer (the node id with its boot UUID, and the attempt), which
the database records and the hash chain covers, and the trace context of the request that
caused it (:attr:`RunLog.traceparent`: the run's creator's until a frame is consumed, then
that frame's; the cancel request's for the cancellation bookkeeping).

A consumed frame's ``frame.consumed`` is *deferred* (:meth:`RunLog.defer`): it goes into
the log in the same transaction as the next event the handler writes (the one the frame
caused, typically), so consuming a frame and answering it cost one commit, not two. It
is written on its own before the handler waits for another frame, before a memory
operation (which commits outside the group-commit writer), and dropped when the run is
being wound up (a cancel's bookkeeping: the frame's effects were never logged, so it was
not durably consumed, and the database's cancel fence would refuse it). Until it is
written, a crash leaves the frame unconsumed: the next executor takes it again, which is
exactly-once as far as the log can tell (nothing it caused was logged).

The database enforces both fences too. A write it refuses for a stale epoch means the
lease is gone: the fence closes (``lease_lost``) and the caller gets
:class:`EgressFenced`. A write it refuses because the run's ``run.cancel_requested`` is
committed closes the fence for the cancel (``cancel_requested``), even before the run
actor has heard of the request.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

from runtime.run.fence import FenceReason
from runtime.store import (
    EgressFenced,
    InvalidPayload,
    NewEvent,
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    TransactionConflict,
    Writer,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from uuid import UUID

    from runtime.run.fence import EgressFence
    from runtime.store import JSON, Event, Store

LoggedWrite: TypeAlias = (
    "Callable[[int, Writer, str | None], Awaitable[tuple[int, dict[str, JSON]]]]"
)
"""A store call taking the epoch, the writer and the trace context to record with its
event, returning the seq and payload it logged."""

__all__ = ["LoggedWrite", "RunLog", "read_log"]


class RunLog:
    """Appends to ``run_id``'s log as the holder of lease ``epoch``."""

    __slots__ = (
        "_deferred",
        "_store",
        "epoch",
        "fence",
        "head",
        "lock",
        "run_id",
        "traceparent",
        "writer",
    )

    def __init__(
        self,
        store: Store,
        run_id: UUID,
        epoch: int,
        fence: EgressFence,
        *,
        head: int,
        node_id: str,
        traceparent: str | None = None,
    ) -> None:
        self._store = store
        self.run_id = run_id
        self.epoch = epoch
        self.fence = fence
        self.head = head
        """The last seq known to be in the log (ours, or read when the attempt began)."""
        self.lock = asyncio.Lock()
        self.writer = Writer(node_id)
        """Recorded with every event; :meth:`attempt` sets the attempt number."""
        self.traceparent = traceparent
        """The trace context recorded with the next events (the request causing them)."""
        self._deferred: NewEvent | None = None

    @property
    def next_seq(self) -> int:
        """The seq the next event appended here gets (a deferred event goes first)."""
        return self.head + (2 if self._deferred is not None else 1)

    @property
    def deferring(self) -> bool:
        """Whether an event waits to go with the next append."""
        return self._deferred is not None

    async def defer_locked(self, type_: str, payload: object) -> None:
        """Write this event with the next append (see the module docstring); one already
        deferred is written first. The caller holds :attr:`lock`."""
        await self.flush_locked()
        self._deferred = NewEvent(type_, payload)

    async def flush_locked(self) -> None:
        """Write the deferred event now, on its own. The caller holds :attr:`lock`."""
        assert self.lock.locked()
        if self._deferred is not None:
            event, self._deferred = self._deferred, None
            await self._append([event])

    def attempt(self, attempt: int) -> None:
        """Record ``attempt`` as the writer's attempt from now on."""
        self.writer = Writer(self.writer.node, attempt)

    async def append(self, type_: str, payload: object = None, *, fenced: bool = True) -> int:
        """Append one event after the ones already queued here; return its seq.

        Raises:
            EgressFenced: ``fenced`` and the fence is closed, or the lease is gone.
            PayloadNotSerializable, PayloadTooLarge: bad payload; nothing written.
        """
        async with self.lock:
            if fenced:
                self.fence.check()
            else:
                self._deferred = None  # winding up: see the module docstring
            return await self.append_locked(type_, payload)

    async def append_locked(self, type_: str, payload: object = None) -> int:
        """:meth:`append` for a caller already holding :attr:`lock` (and the fence
        checked, if it should be). A deferred event goes first, in the same append."""
        assert self.lock.locked()
        if self._deferred is None:
            return await self._append([NewEvent(type_, payload)])
        deferred, self._deferred = self._deferred, None
        try:
            return await self._append([deferred, NewEvent(type_, payload)])
        except (InvalidPayload, RunNotFound, RunTerminal, StaleEpoch, EgressFenced,
                TransactionConflict):  # fmt: skip
            self._deferred = deferred  # refused, nothing written: still to write
            raise

    async def _append(self, events: list[NewEvent]) -> int:
        with self._fenced_by_the_database():
            if len(events) == 1:
                (event,) = events
                seq = await self._store.append_event(
                    self.run_id,
                    self.epoch,
                    event.type,
                    event.payload,
                    writer=self.writer,
                    traceparent=self.traceparent,
                )
            else:
                *_, seq = await self._store.append_events(
                    self.run_id,
                    self.epoch,
                    events,
                    writer=self.writer,
                    traceparent=self.traceparent,
                )
        self._moved(seq)
        return seq

    async def logged(self, write: LoggedWrite) -> dict[str, JSON]:
        """Run a store call that writes something together with its event (memory) as this
        writer, the event carrying :attr:`traceparent` like an append's; return the
        event's payload. The caller holds :attr:`lock`."""
        assert self.lock.locked()
        await self.flush_locked()  # the memory operation commits outside the writer
        with self._fenced_by_the_database():
            seq, payload = await write(self.epoch, self.writer, self.traceparent)
        self._moved(seq)
        return payload

    def _moved(self, seq: int) -> None:
        if seq > self.head:
            self.head = seq

    @contextmanager
    def _fenced_by_the_database(self) -> Iterator[None]:
        try:
            yield
        except (StaleEpoch, RunTerminal) as error:
            # Another executor took the run over (or ended it): this one owns nothing.
            self.fence.close(FenceReason.LEASE_LOST)
            raise EgressFenced(self.run_id, FenceReason.LEASE_LOST) from error
        except EgressFenced:
            # The database's cancel fence: run.cancel_requested is committed.
            self.fence.close(FenceReason.CANCEL_REQUESTED)
            raise


async def read_log(store: Store, run_id: UUID, *, until: int, page: int = 1000) -> list[Event]:
    """The events of ``run_id`` up to seq ``until`` (the head the caller knows), oldest
    first, read page by page; nothing at all for ``until=0``."""
    events: list[Event] = []
    after = 0
    while after < until:
        # Pages may come back shorter than asked (the store's read_limit): read on.
        batch = await store.read_events(run_id, after=after, limit=min(page, until - after))
        if not batch:
            break
        events.extend(batch)
        after = batch[-1].seq
    return events
