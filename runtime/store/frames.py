"""Frames: a run's inputs, idempotent by the caller's ``frame_id`` (DESIGN §5).

Appending locks the run row, so concurrent appends to one run are serialised: a repeat
of a ``frame_id`` finds the original and returns it unchanged, and ``frame_seq`` (the
order the run actor consumes frames in) is allocated gap-free from
``runs.last_frame_seq`` and becomes visible in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from psycopg.rows import class_row

from runtime.store._status import TERMINAL_STATUSES
from runtime.store.errors import RunNotFound, RunTerminal

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._codec import JSON

__all__ = ["FRAMES_CHANNEL", "Frame", "FrameAppend", "append_frame", "read_frames"]

FRAMES_CHANNEL: Final = "warden_frames"
"""NOTIFY channel for new frames; payload ``run_id:frame_seq``."""

_COLUMNS = "run_id, frame_seq, frame_id, kind, payload, created_at, traceparent"


@dataclass(frozen=True, slots=True)
class Frame:
    """One stored frame.

    Attributes:
        run_id: the run it feeds.
        frame_seq: its position in the run's input order, from 1, gap-free.
        frame_id: the caller's idempotency id.
        kind: what it is, e.g. ``"user.message"`` or ``"tool.result"``.
        payload: its JSON content.
        created_at: when it was first appended (database clock).
        traceparent: the W3C trace context of the request that appended it, if any; the
            events its consumption causes carry it.
    """

    run_id: UUID
    frame_seq: int
    frame_id: str
    kind: str
    payload: JSON
    created_at: datetime
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class FrameAppend:
    """Outcome of :func:`append_frame`: the stored frame and whether this call stored it."""

    frame: Frame
    created: bool


async def append_frame(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    *,
    frame_id: str,
    kind: str,
    payload: bytes,
    traceparent: str | None = None,
) -> FrameAppend:
    """Store a frame once; a repeat of ``frame_id`` returns the original.

    Raises:
        RunNotFound: no such run.
        RunTerminal: the run has ended and this ``frame_id`` is new.
    """
    async with conn.pipeline(), conn.transaction():
        lock = await conn.execute(
            "SELECT status, last_frame_seq FROM runs WHERE run_id = %s FOR UPDATE", (run_id,)
        )
        existing = conn.cursor(row_factory=class_row(Frame))
        await existing.execute(
            f"SELECT {_COLUMNS} FROM run_frames WHERE run_id = %s AND frame_id = %s",
            (run_id, frame_id),
        )
        head = await lock.fetchone()
        if head is None:
            raise RunNotFound(run_id)
        # This statement's snapshot was taken after the lock was granted: it sees any
        # frame committed by the appender we waited for.
        found = await existing.fetchone()
        if found is not None:
            return FrameAppend(found, False)
        status, last = str(head[0]), int(head[1])
        if status in TERMINAL_STATUSES:
            raise RunTerminal(run_id, status)
        inserted = conn.cursor(row_factory=class_row(Frame))
        await inserted.execute(
            f"INSERT INTO run_frames (run_id, frame_seq, frame_id, kind, payload, traceparent)"
            f" VALUES (%s, %s, %s, %s, %s::jsonb, %s) RETURNING {_COLUMNS}",
            (run_id, last + 1, frame_id, kind, payload.decode(), traceparent),
        )
        await conn.execute(
            "UPDATE runs SET last_frame_seq = %s, updated_at = now() WHERE run_id = %s",
            (last + 1, run_id),
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (FRAMES_CHANNEL, f"{run_id}:{last + 1}"))
        frame = await inserted.fetchone()
        assert frame is not None
    return FrameAppend(frame, True)


async def read_frames(
    conn: AsyncConnection[TupleRow], run_id: UUID, *, after: int, limit: int
) -> list[Frame]:
    """Frames of ``run_id`` with ``frame_seq > after``, in order, at most ``limit``.

    Raises:
        RunNotFound: no such run (checked only when the page is empty).
    """
    cur = conn.cursor(row_factory=class_row(Frame))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM run_frames WHERE run_id = %s AND frame_seq > %s"
        " ORDER BY frame_seq LIMIT %s",
        (run_id, after, limit),
    )
    frames = await cur.fetchall()
    if not frames:
        exists = await conn.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,))
        if await exists.fetchone() is None:
            raise RunNotFound(run_id)
    return frames
