"""The event log's records and reads: what an append takes and what a read gives back.

Appending goes through the store's group-commit writer (:mod:`runtime.store._writer`),
which batches concurrent appends into one fenced statement (:mod:`runtime.store._commit`
describes the fence in the run row, the head cache and the contested settle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from psycopg.rows import class_row

from runtime.store._status import TERMINAL_EVENTS
from runtime.store.errors import RunNotFound, StaleCursor

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._codec import JSON

__all__ = [
    "CANCEL_BOOKKEEPING",
    "EVENTS_CHANNEL",
    "SCHEMA_VERSION",
    "TERMINAL_EVENTS",
    "Event",
    "NewEvent",
    "Writer",
    "read_events",
]

EVENTS_CHANNEL: Final = "warden_events"
"""NOTIFY channel for committed events; payload ``run_id:seq[,run_id:seq...]``."""

SCHEMA_VERSION: Final = 2
"""Schema version stamped on every event this build writes.

Version 2 (migration ``0004``) records the event's writer and covers it by the hash chain;
events of version 1 were written before that and verify as they were written.
"""

CANCEL_BOOKKEEPING: Final = frozenset({"run.executor_lost", "task.canceled", "run.canceled"})
"""The only event types an executor may still append once ``run.cancel_requested`` is
committed; anything else is refused with ``EgressFenced`` (DESIGN §8)."""

_READ: Final = """
SELECT run_id, seq, type, payload, epoch, schema_version, created_at, prev_hash, hash,
       writer_node, writer_attempt, traceparent
FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s
"""
_FLOOR: Final = "SELECT retention_floor FROM runs WHERE run_id = %s"


@dataclass(frozen=True, slots=True)
class Writer:
    """Who appends: the executor's node id (``name:boot-uuid``) and its attempt number.

    Recorded with each event (``run_events.writer_node``, ``writer_attempt``) and covered
    by its hash, so an outside checker can tell from the database alone which executor
    wrote every event.
    """

    node: str
    attempt: int | None = None


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
    payload: JSON
    epoch: int
    schema_version: int
    created_at: datetime
    prev_hash: bytes
    hash: bytes
    writer_node: str | None = None
    writer_attempt: int | None = None
    traceparent: str | None = None
    """The W3C trace context of the request that caused the event, if it had one (not
    covered by the hash chain: see ``docs/store.md``, "Trace context")."""

    @property
    def writer(self) -> Writer | None:
        """Who wrote the event (``None`` for events written from outside an executor,
        such as ``run.cancel_requested``, or before writers were recorded)."""
        if self.writer_node is None:
            return None
        return Writer(self.writer_node, self.writer_attempt)


async def read_events(
    conn: AsyncConnection[TupleRow], run_id: UUID, *, after: int, limit: int
) -> list[Event]:
    """Committed events of ``run_id`` with ``seq > after``, oldest first, at most ``limit``.

    Seqs are gap-free above the run's retention floor, so a page that starts right after
    ``after`` needs no second look; only an empty page, or one that starts later, reads
    the run row.

    Raises:
        RunNotFound: no such run (checked only when the page is empty).
        StaleCursor: ``after`` is below the run's retention floor (pruned events).
    """
    cur = conn.cursor(row_factory=class_row(Event))
    await cur.execute(_READ, (run_id, after, limit))
    events = await cur.fetchall()
    if not events or events[0].seq != after + 1:
        floor = await conn.execute(_FLOOR, (run_id,))
        row = await floor.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        if max(after, 0) < int(row[0]):
            raise StaleCursor(run_id, after, int(row[0]))
    return events
