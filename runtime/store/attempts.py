"""Execution attempts and dead letters (DESIGN §5, policies).

An attempt is one execution of a run by one lease holder; its outcome and error class
feed the retry policy. A run that exhausts its policy gets one open dead letter, which an
operator may mark replayed (the replay itself is the run actor's business).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from psycopg.rows import class_row

from runtime.store._status import TerminalStatus
from runtime.store.errors import DeadLetterNotFound, DeadLetterReplayed, RunNotFound
from runtime.store.runs import COLUMNS as RUN_COLUMNS
from runtime.store.runs import Run

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "DeadLetter",
    "begin_attempt",
    "finish_attempt",
    "list_attempts",
    "list_dead_letters",
    "mark_dead_letter_replayed",
    "record_dead_letter",
    "replay_dead_letter",
    "start_attempt",
]

AttemptOutcome = Literal[TerminalStatus, "lost"]
"""How an attempt ended: like its run, or ``lost`` (its executor went away)."""

_ATTEMPT_COLUMNS = (
    "run_id, attempt, node_id, epoch, started_at, finished_at, outcome, error_class,"
    " error_type, error_message"
)
DL_COLUMNS = (
    "dead_letter_id, run_id, reason, error_class, error_message, attempts, created_at,"
    " replayed_at, replayed_by, replay_run_id"
)
_MAX_MESSAGE = 4000  # error reports are bounded (DESIGN §11)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One execution attempt of a run; ``finished_at`` is ``None`` while it runs."""

    run_id: UUID
    attempt: int
    node_id: str
    epoch: int
    started_at: datetime
    finished_at: datetime | None
    outcome: AttemptOutcome | None
    error_class: str | None
    error_type: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A run that exhausted its policy; ``replayed_at`` is set once an operator replays it,
    and ``replay_run_id`` names the new run when it was replayed by
    :func:`replay_dead_letter`."""

    dead_letter_id: int
    run_id: UUID
    reason: str
    error_class: str | None
    error_message: str | None
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replayed_by: str | None
    replay_run_id: UUID | None = None


_ATTEMPT_ROWS = class_row(Attempt)
_DL_ROWS = class_row(DeadLetter)


def _bounded(message: str | None) -> str | None:
    return None if message is None else message[:_MAX_MESSAGE]


async def start_attempt(
    conn: AsyncConnection[TupleRow], run_id: UUID, *, node_id: str, epoch: int
) -> Attempt:
    """Record the start of the run's next attempt (numbered from 1).

    Raises:
        RunNotFound: no such run.
    """
    async with conn.transaction():
        lock = await conn.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
        if await lock.fetchone() is None:
            raise RunNotFound(run_id)
        cur = conn.cursor(row_factory=_ATTEMPT_ROWS)
        await cur.execute(
            f"INSERT INTO run_attempts (run_id, attempt, node_id, epoch)"
            f" SELECT %s, coalesce(max(attempt), 0) + 1, %s, %s FROM run_attempts"
            f" WHERE run_id = %s RETURNING {_ATTEMPT_COLUMNS}",
            (run_id, node_id, epoch, run_id),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


_BEGIN: Final = f"""
WITH run AS (
    SELECT run_id FROM runs WHERE run_id = %(run_id)s FOR UPDATE
), lost AS (
    UPDATE run_attempts SET finished_at = now(), outcome = 'lost'
    WHERE run_id = %(run_id)s AND finished_at IS NULL AND EXISTS (SELECT 1 FROM run)
), prior AS (
    -- The snapshot before "lost": attempts it closes were unfinished, so not failed.
    SELECT coalesce(max(attempt), 0) AS top, count(*) FILTER (WHERE outcome = 'failed') AS failed
    FROM run_attempts WHERE run_id = %(run_id)s
), started AS (
    INSERT INTO run_attempts (run_id, attempt, node_id, epoch)
    SELECT run.run_id, prior.top + 1, %(node)s, %(epoch)s FROM run, prior
    RETURNING {_ATTEMPT_COLUMNS}
)
SELECT started.*, prior.failed FROM started, prior
"""


async def begin_attempt(
    conn: AsyncConnection[TupleRow], run_id: UUID, *, node_id: str, epoch: int
) -> tuple[Attempt, int]:
    """Start the run's next attempt, closing the ones earlier executors left unfinished as
    ``lost``, in one statement; return it and how many earlier attempts ``failed``.

    Raises:
        RunNotFound: no such run.
    """
    cur = await conn.execute(_BEGIN, {"run_id": run_id, "node": node_id, "epoch": epoch})
    row = await cur.fetchone()
    if row is None:
        raise RunNotFound(run_id)
    return Attempt(*row[:-1]), int(row[-1])


async def finish_attempt(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    attempt: int,
    *,
    outcome: AttemptOutcome,
    error_class: str | None,
    error_type: str | None,
    error_message: str | None,
) -> Attempt:
    """Record how an attempt ended (once; a second call returns the first record).

    Raises:
        RunNotFound: no such attempt.
    """
    cur = conn.cursor(row_factory=_ATTEMPT_ROWS)
    await cur.execute(
        f"UPDATE run_attempts SET finished_at = now(), outcome = %s, error_class = %s,"
        f" error_type = %s, error_message = %s"
        f" WHERE run_id = %s AND attempt = %s AND finished_at IS NULL"
        f" RETURNING {_ATTEMPT_COLUMNS}",
        (outcome, error_class, error_type, _bounded(error_message), run_id, attempt),
    )
    row = await cur.fetchone()
    if row is None:
        cur = conn.cursor(row_factory=_ATTEMPT_ROWS)
        await cur.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM run_attempts WHERE run_id = %s AND attempt = %s",
            (run_id, attempt),
        )
        row = await cur.fetchone()
        if row is None:
            raise RunNotFound(run_id)
    return row


async def list_attempts(conn: AsyncConnection[TupleRow], run_id: UUID) -> list[Attempt]:
    """The run's attempts, first to last (bounded by the retry policy)."""
    cur = conn.cursor(row_factory=_ATTEMPT_ROWS)
    await cur.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM run_attempts WHERE run_id = %s ORDER BY attempt",
        (run_id,),
    )
    return await cur.fetchall()


async def record_dead_letter(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    *,
    reason: str,
    error_class: str | None,
    error_message: str | None,
    attempts: int,
) -> tuple[DeadLetter, bool]:
    """Dead-letter a run; if it already has an open dead letter, return that one.

    Returns:
        ``(dead_letter, created)``.

    Raises:
        RunNotFound: no such run.
    """
    cur = conn.cursor(row_factory=_DL_ROWS)
    await cur.execute(
        f"INSERT INTO dead_letters (run_id, reason, error_class, error_message, attempts)"
        f" SELECT run_id, %s, %s, %s, %s FROM runs WHERE run_id = %s"
        f" ON CONFLICT (run_id) WHERE replayed_at IS NULL DO NOTHING RETURNING {DL_COLUMNS}",
        (reason, error_class, _bounded(error_message), attempts, run_id),
    )
    row = await cur.fetchone()
    if row is not None:
        return row, True
    cur = conn.cursor(row_factory=_DL_ROWS)
    await cur.execute(
        f"SELECT {DL_COLUMNS} FROM dead_letters WHERE run_id = %s AND replayed_at IS NULL",
        (run_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise RunNotFound(run_id)
    return row, False


async def list_dead_letters(
    conn: AsyncConnection[TupleRow], *, include_replayed: bool, after_id: int, limit: int
) -> list[DeadLetter]:
    """Dead letters with ``dead_letter_id > after_id``, oldest first, at most ``limit``."""
    cur = conn.cursor(row_factory=_DL_ROWS)
    await cur.execute(
        f"SELECT {DL_COLUMNS} FROM dead_letters WHERE dead_letter_id > %s"
        f" AND (%s OR replayed_at IS NULL) ORDER BY dead_letter_id LIMIT %s",
        (after_id, include_replayed, limit),
    )
    return await cur.fetchall()


async def mark_dead_letter_replayed(
    conn: AsyncConnection[TupleRow], dead_letter_id: int, *, replayed_by: str
) -> tuple[DeadLetter, bool]:
    """Mark a dead letter replayed, once.

    Returns:
        ``(dead_letter, marked)``: ``marked`` is ``False`` if it had been replayed before
        (an operator's double click replays nothing twice).

    Raises:
        DeadLetterNotFound: no such dead letter.
    """
    cur = conn.cursor(row_factory=_DL_ROWS)
    await cur.execute(
        f"UPDATE dead_letters SET replayed_at = now(), replayed_by = %s"
        f" WHERE dead_letter_id = %s AND replayed_at IS NULL RETURNING {DL_COLUMNS}",
        (replayed_by, dead_letter_id),
    )
    row = await cur.fetchone()
    if row is not None:
        return row, True
    cur = conn.cursor(row_factory=_DL_ROWS)
    await cur.execute(
        f"SELECT {DL_COLUMNS} FROM dead_letters WHERE dead_letter_id = %s", (dead_letter_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise DeadLetterNotFound(dead_letter_id)
    return row, False


_REPLAY_LOCK: Final = (
    "SELECT replayed_at IS NOT NULL, replay_run_id, replayed_by, run_id FROM dead_letters"
    " WHERE dead_letter_id = %s FOR UPDATE"
)


async def replay_dead_letter(
    conn: AsyncConnection[TupleRow],
    dead_letter_id: int,
    *,
    replay_run_id: UUID,
    replayed_by: str,
    traceparent: str | None,
) -> tuple[DeadLetter, Run]:
    """Replay a dead letter: create a new, pending run with the dead run's owner, run type,
    input and session, and mark the dead letter replayed by it, in one transaction.

    The dead letter's row is locked first, so of two concurrent replays one creates the
    run and the other finds it replayed.

    Returns:
        ``(dead_letter, run)``: the dead letter as marked, and the new run.

    Raises:
        DeadLetterNotFound: no such dead letter.
        DeadLetterReplayed: it was replayed already; nothing created.
    """
    async with conn.transaction():
        cur = await conn.execute(_REPLAY_LOCK, (dead_letter_id,))
        row = await cur.fetchone()
        if row is None:
            raise DeadLetterNotFound(dead_letter_id)
        replayed, earlier_run, earlier_by, dead_run = row
        if replayed:
            raise DeadLetterReplayed(dead_letter_id, earlier_run, earlier_by)
        runs = conn.cursor(row_factory=class_row(Run))
        # The dead run's row cannot be gone: deleting it would have deleted its letter.
        await runs.execute(
            f"INSERT INTO runs (run_id, owner, session_id, run_type, input, traceparent)"
            f" SELECT %s, owner, session_id, run_type, input, %s FROM runs WHERE run_id = %s"
            f" RETURNING {RUN_COLUMNS}",
            (replay_run_id, traceparent, dead_run),
        )
        run = await runs.fetchone()
        assert run is not None
        marked = conn.cursor(row_factory=_DL_ROWS)
        await marked.execute(
            f"UPDATE dead_letters SET replayed_at = now(), replayed_by = %s, replay_run_id = %s"
            f" WHERE dead_letter_id = %s RETURNING {DL_COLUMNS}",
            (replayed_by, replay_run_id, dead_letter_id),
        )
        letter = await marked.fetchone()
        assert letter is not None
    return letter, run
