"""The lifecycle feed: every run's created / started / recovered / terminal moments, across
all runs, readable from an opaque cursor with no gaps (DESIGN §10, operators' stream).

Triggers (migration ``0005``) write one ``run_lifecycle`` row in the transaction that
creates a run, changes its status (``run.started``, ``run.succeeded``, ...) or appends
its ``run.executor_lost`` (``run.recovered``), and NOTIFY ``warden_lifecycle``.

**Why a reader never skips a row.** Ids from a sequence are handed out in one order and
committed in another: a reader that had passed id 12 could later see id 11 commit and
never go back for it. Each row therefore also records its writing transaction's id
(``xid``, ``pg_current_xact_id()``), and a read takes rows in ``(xid, id)`` order *only
below its snapshot's* ``xmin``: every transaction with a smaller id has ended (committed
or rolled back) by then, and every transaction that has not been given an id yet will get
a larger one. So the rows below ``xmin`` are final: none can appear later among them, and
a cursor ``(xid, id)`` marks a position that stays complete forever. Rows of transactions
still running wait until they end (a long transaction elsewhere in the cluster holds the
feed back for that long: it delays, never loses). A page that stopped short of committed
rows for that reason says so (``held_back``), so a reader re-reads soon rather than
waiting for the next notification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from uuid import UUID

from psycopg.rows import class_row

from runtime.store._status import TERMINAL_EVENTS
from runtime.store.errors import InvalidCursor

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = [
    "LIFECYCLE_CHANNEL",
    "LIFECYCLE_TYPES",
    "LIFECYCLE_WATCH_ID",
    "LifecycleEntry",
    "LifecyclePage",
    "lifecycle_head",
    "read_lifecycle",
]

LIFECYCLE_CHANNEL: Final = "warden_lifecycle"
"""NOTIFY channel of the lifecycle feed (payload ``*``: re-read by cursor)."""

LIFECYCLE_WATCH_ID: Final = UUID(int=0)
"""The id to watch the lifecycle channel under (``listener.watch(LIFECYCLE_WATCH_ID,
channel=LIFECYCLE_CHANNEL)``): the feed is one stream, not one per run."""

LIFECYCLE_TYPES: Final = ("run.created", "run.started", "run.recovered", *TERMINAL_EVENTS)
"""What a lifecycle entry's ``type`` can be."""

_CURSOR: Final = re.compile(r"(\d{1,20})-(\d{1,19})")

_READ: Final = """
SELECT l.xid::text || '-' || l.id::text AS cursor, l.run_id, l.type, l.status, l.seq,
       r.run_type, r.owner, r.session_id, l.traceparent, l.created_at
FROM run_lifecycle AS l JOIN runs AS r ON r.run_id = l.run_id
WHERE (l.xid, l.id) > (%(xid)s::xid8, %(id)s)
  AND l.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY l.xid, l.id
LIMIT %(limit)s
"""
_HELD_BACK: Final = """
SELECT EXISTS (SELECT 1 FROM run_lifecycle
               WHERE (xid, id) > (%(xid)s::xid8, %(id)s)
                 AND xid >= pg_snapshot_xmin(pg_current_snapshot()))
"""
_HEAD: Final = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"


@dataclass(frozen=True, slots=True)
class LifecycleEntry:
    """One moment of one run's life.

    Attributes:
        cursor: the feed's position right after this entry (resume from it).
        run_id, run_type, owner, session_id: the run.
        type: one of :data:`LIFECYCLE_TYPES`.
        status: the run's status the moment it was written.
        seq: the run's last seq then (for ``run.recovered``: the ``run.executor_lost``
            event's seq).
        traceparent: the trace context of the request that created the run (of the
            recovery's append for ``run.recovered``), if any.
        created_at: when it was written (database clock).
    """

    cursor: str
    run_id: UUID
    type: str
    status: str
    seq: int | None
    run_type: str
    owner: str
    session_id: str
    traceparent: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LifecyclePage:
    """Entries after a cursor, in feed order.

    Attributes:
        entries: the entries, at most the limit asked for.
        cursor: where the next read starts (the last entry's cursor, or the one given).
        held_back: committed entries exist past the page that cannot be handed out yet
            (a transaction that started before them is still running): read again soon.
    """

    entries: list[LifecycleEntry]
    cursor: str
    held_back: bool


def parse_cursor(cursor: str) -> tuple[int, int]:
    """The ``(xid, id)`` position of a feed cursor.

    Raises:
        TypeError: not a str.
        InvalidCursor: not a feed cursor.
    """
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str, not {type(cursor).__name__}")
    match = _CURSOR.fullmatch(cursor)
    if match is None or int(match[1]) >= 2**64 or int(match[2]) >= 2**63:
        raise InvalidCursor("cursor", "is not a lifecycle feed cursor")
    return int(match[1]), int(match[2])


async def lifecycle_head(conn: AsyncConnection[TupleRow]) -> str:
    """A cursor at the feed's end now: reading from it yields only what comes after."""
    cur = await conn.execute(_HEAD)
    row = await cur.fetchone()
    assert row is not None
    # Every entry below xmin is final and already there; entries from xmin on may still
    # come, and (xmin, 0) is before all of them.
    return f"{row[0]}-0"


async def read_lifecycle(
    conn: AsyncConnection[TupleRow], cursor: str | None, *, limit: int
) -> LifecyclePage:
    """Entries after ``cursor`` (``None``: from the feed's start), at most ``limit``.

    Raises:
        InvalidCursor: ``cursor`` is not a feed cursor.
    """
    xid, id_ = (0, 0) if cursor is None else parse_cursor(cursor)
    params = {"xid": str(xid), "id": id_, "limit": limit}
    held_back = False
    # One snapshot for the page and the look past it: with two, xmin could move between
    # them and a held-back row would be reported as neither read nor waiting.
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = conn.cursor(row_factory=class_row(LifecycleEntry))
        await cur.execute(_READ, params)
        entries = await cur.fetchall()
        if len(entries) < limit:
            if entries:
                xid, id_ = parse_cursor(entries[-1].cursor)
                params = {"xid": str(xid), "id": id_}
            check = await conn.execute(_HELD_BACK, params)
            row = await check.fetchone()
            held_back = bool(row and row[0])
    following = entries[-1].cursor if entries else (cursor or "0-0")
    return LifecyclePage(entries, following, held_back)
