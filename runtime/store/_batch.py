"""Building a group-commit statement: prepared events, pending appends, run heads, and the
statement that numbers, chains and sends them.

A caller's events are validated and serialised once, before they are queued
(:func:`prepare_event`): the canonical bytes of each event are known except for its seq,
so the writer only joins the seq in (:func:`runtime.store.chain.link`). A
:class:`Statement` numbers each run's appends from the run's :class:`Head`, chains their
hashes, and sends one statement for the whole batch (one scalar statement for a single
event). What to put in a statement, and what to do when a head did not move, is the
committer's business (:mod:`runtime.store._commit`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

import orjson

from runtime.store import _append_sql, _arrays, _codec
from runtime.store._status import TERMINAL_EVENTS
from runtime.store.chain import canonical_parts, link
from runtime.store.events import CANCEL_BOOKKEEPING, SCHEMA_VERSION

if TYPE_CHECKING:
    import asyncio
    from uuid import UUID

    from psycopg import AsyncCursor
    from psycopg.rows import TupleRow

    from runtime.store.events import Writer

__all__ = [
    "MAX_TYPE_LENGTH",
    "Head",
    "HeadCache",
    "PendingAppend",
    "Plan",
    "PreparedEvent",
    "Statement",
    "execute_one",
    "prepare_event",
]

MAX_TYPE_LENGTH: Final = 200
"""Longest event type, in characters."""


@dataclass(slots=True)
class PreparedEvent:
    """One event, validated and serialised, waiting for its seq."""

    type: str
    type_utf8: bytes
    payload: bytes  # canonical JSON
    status: str | None  # the terminal status this event sets, if any
    # The event's canonical bytes are head + b"%d" % seq + tail (chain.canonical_parts).
    head: bytes
    tail: bytes
    writer_node: str | None
    writer_attempt: int | None
    bookkeeping: bool  # still accepted after a cancel request (CANCEL_BOOKKEEPING)
    traceparent: str | None  # the causing request's trace context (not hashed)


def prepare_event(
    run_id: UUID,
    epoch: int,
    type_: str,
    payload: object,
    limit: int,
    last: bool,
    writer: Writer | None = None,
    traceparent: str | None = None,
) -> PreparedEvent:
    """Validate and serialise one event of an append (``last``: it ends the append), as
    written by ``writer``, caused by the request whose trace context is ``traceparent``
    (already checked).

    Raises:
        ValueError: a bad event type, or a terminal type that is not last.
        PayloadNotSerializable, PayloadTooLarge: a bad payload.
    """
    if not 0 < len(type_) <= MAX_TYPE_LENGTH or "\x00" in type_:
        raise ValueError(
            f"event type must be a non-empty str of at most {MAX_TYPE_LENGTH} characters"
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
        writer=writer,
    )
    return PreparedEvent(
        type_,
        type_.encode(),
        data,
        status,
        head,
        tail,
        None if writer is None else writer.node,
        None if writer is None else writer.attempt,
        type_ in CANCEL_BOOKKEEPING,
        traceparent,
    )


@dataclass(slots=True, eq=False)
class PendingAppend:
    """One caller's append, queued for the writer, and how it ended."""

    run_id: UUID
    epoch: int
    events: list[PreparedEvent]
    size: int
    # The outcome travels as a result, never as a future's exception: a caller cancelled
    # meanwhile leaves nobody to retrieve it, and asyncio would report it as lost. A
    # cancelled caller also cancels this future, so whether the writer has settled the
    # append is tracked apart from it: the writer still commits a cancelled caller's append.
    outcome: asyncio.Future[list[int] | BaseException]
    settled: bool = False
    deadline: float = math.inf  # loop time by which it must commit or fail

    def resolve(self, seqs: list[int]) -> None:
        """It committed with these seqs."""
        self.settled = True
        if not self.outcome.done():
            self.outcome.set_result(seqs)

    def fail(self, error: BaseException) -> None:
        """It did not commit (or may not have): tell the caller ``error``."""
        self.settled = True
        if not self.outcome.done():
            self.outcome.set_result(error)


class Head(NamedTuple):
    """What the writer knows of a run row: its log head, lease epoch, status and whether
    a cancel was requested (then only the cancellation bookkeeping may be appended)."""

    last_seq: int
    last_hash: bytes
    epoch: int  # runs.lease_epoch; 0 = never leased
    status: str
    cancel_requested: bool


class HeadCache:
    """A bounded LRU of run heads. Only the writer task touches it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._heads: OrderedDict[UUID, Head] = OrderedDict()

    def __len__(self) -> int:
        return len(self._heads)

    def __contains__(self, run_id: UUID) -> bool:
        return run_id in self._heads

    def get(self, run_id: UUID) -> Head | None:
        head = self._heads.get(run_id)
        if head is not None:
            self._heads.move_to_end(run_id)
        return head

    def put(self, run_id: UUID, head: Head) -> None:
        self._heads[run_id] = head
        self._heads.move_to_end(run_id)
        if len(self._heads) > self.capacity:
            self._heads.popitem(last=False)

    def discard(self, run_id: UUID) -> None:
        self._heads.pop(run_id, None)


@dataclass(slots=True)
class Plan:
    """One run's share of a statement: its appends, numbered and chained from ``head``."""

    run_id: UUID
    head: Head
    items: list[PendingAppend]
    seqs: list[list[int]]  # per item
    hashes: list[bytes]  # per event, in order
    last_seq: int
    status: str | None  # terminal status set by the last event, if any
    bookkeeping: bool  # every event is cancellation bookkeeping


def is_bookkeeping(item: PendingAppend) -> bool:
    """Whether ``item`` holds only cancellation bookkeeping (allowed after a cancel)."""
    return all(event.bookkeeping for event in item.events)


class Statement:
    """One append statement: the runs whose heads it moves, and their events."""

    __slots__ = ("events", "plans")

    def __init__(self) -> None:
        self.plans: list[Plan] = []
        self.events = 0

    def add(self, run_id: UUID, head: Head, items: list[PendingAppend]) -> None:
        """Number and chain ``items`` (all with epoch ``head.epoch``) from ``head``."""
        seq = head.last_seq
        prev = head.last_hash
        hashes: list[bytes] = []
        all_seqs: list[list[int]] = []
        status = None
        for item in items:
            # The canonical bytes were built with the append's epoch; the row gets the head's.
            assert item.epoch == head.epoch, "an append numbered under another epoch"
            first = seq + 1
            for event in item.events:
                seq += 1
                prev = link(prev, event.head, seq, event.tail)
                hashes.append(prev)
                status = event.status
            all_seqs.append(list(range(first, seq + 1)))
        self.events += len(hashes)
        bookkeeping = all(is_bookkeeping(item) for item in items)
        self.plans.append(Plan(run_id, head, items, all_seqs, hashes, seq, status, bookkeeping))

    async def execute(self, cur: AsyncCursor[TupleRow], notify_in_tx: bool) -> set[UUID] | None:
        """Run the statement; return the runs whose head moved (``None``: every run did)."""
        plans = self.plans
        if self.events == 1:
            (plan,) = plans
            head = plan.head
            one = await execute_one(
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
        nodes: list[str | None] = []
        attempts: list[str | None] = []
        traces: list[str | None] = []
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
                    nodes.append(event.writer_node)
                    attempts.append(
                        None if event.writer_attempt is None else str(event.writer_attempt)
                    )
                    traces.append(event.traceparent)
        await cur.execute(
            _append_sql.APPEND_NOTIFY if notify_in_tx else _append_sql.APPEND_QUIET,
            {
                "runs": _arrays.uuid_array([p.run_id for p in plans]),
                "epochs": _arrays.int8_array([p.head.epoch for p in plans]),
                "expected": _arrays.int8_array([p.head.last_seq for p in plans]),
                "seqs": _arrays.int8_array([p.last_seq for p in plans]),
                "hashes": _arrays.fixed(_arrays.ByteaArray, [p.hashes[-1] for p in plans]),
                "statuses": _arrays.text_array([p.status for p in plans]),
                "bookkeeping": _arrays.bool_array([p.bookkeeping for p in plans]),
                "e_runs": _arrays.fixed(_arrays.UuidArray, runs),
                "e_seqs": _arrays.fixed(_arrays.Int8Array, seqs),
                "e_types": _arrays.text_array(types),
                "e_payloads": _arrays.text_array(payloads),
                "e_epochs": _arrays.fixed(_arrays.Int8Array, epochs),
                "e_terminal": _arrays.bool_array(ends),
                "e_prev": _arrays.fixed(_arrays.ByteaArray, prevs),
                "e_hashes": _arrays.fixed(_arrays.ByteaArray, hashes),
                "e_nodes": _arrays.text_array(nodes),
                "e_attempts": _arrays.text_array(attempts),
                "e_traces": _arrays.text_array(traces),
            },
        )
        row = await cur.fetchone()
        moved: list[UUID] | None = None if row is None else row[0]
        if moved is None:
            return set()
        return None if len(moved) == len(plans) else set(moved)


async def execute_one(
    cur: AsyncCursor[TupleRow],
    notify_in_tx: bool,
    run_id: UUID,
    head: Head,
    event: PreparedEvent,
    digest: bytes,
) -> bool:
    """Append one event as seq ``head.last_seq + 1``; return whether the head moved."""
    seq = head.last_seq + 1
    status = event.status
    epoch = head.epoch
    # The placeholders in order: the UPDATE's SET and WHERE, then the INSERT's.
    update = (seq, digest, status, status, run_id, epoch, epoch, seq - 1, event.bookkeeping)
    insert = (
        event.type,
        event.payload.decode(),
        epoch,
        status,
        head.last_hash,
        digest,
        event.writer_node,
        event.writer_attempt,
        event.traceparent,
    )
    await cur.execute(
        _append_sql.APPEND_ONE_NOTIFY if notify_in_tx else _append_sql.APPEND_ONE_QUIET,
        (*update, *insert),
    )
    return cur.rowcount == 1
