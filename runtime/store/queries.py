"""Operator queries: runs and dead letters a page at a time, behind opaque cursors.

Pages are keyset-paginated, never by ``OFFSET``: a runs page ends at a ``(created_at,
run_id)`` position and the next one starts strictly after it, in the chosen direction, so
rows inserted meanwhile never shift a page, repeat a run or hide one that was there; the
run id breaks ties between runs created in the same microsecond. The index
``runs_created_at_run_id_idx`` (migration ``0005``) serves both directions.

A cursor is opaque to callers (URL-safe base64 of a small JSON object) and names the
query it belongs to: one presented with other filters or another sort is refused with
``InvalidCursor`` rather than answered with a page of something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import orjson
from psycopg import sql
from psycopg.rows import class_row

from runtime.store.attempts import DL_COLUMNS, DeadLetter
from runtime.store.errors import InvalidCursor
from runtime.store.runs import COLUMNS, Run

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._status import RunStatus

__all__ = [
    "DeadLettersPage",
    "RunFilters",
    "RunsPage",
    "list_dead_letters_page",
    "list_runs_page",
]

_MAX_CURSOR: Final = 1024


@dataclass(frozen=True, slots=True)
class RunFilters:
    """Filters of a runs page; ``None`` matches anything. Times bound ``created_at``:
    ``created_after`` inclusive, ``created_before`` exclusive."""

    status: RunStatus | None = None
    run_type: str | None = None
    session_id: str | None = None
    owner: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def digest(self, sort: str) -> str:
        """A short fingerprint of these filters and ``sort``, carried in cursors."""
        parts = [
            self.status,
            self.run_type,
            self.session_id,
            self.owner,
            None if self.created_after is None else self.created_after.isoformat(),
            None if self.created_before is None else self.created_before.isoformat(),
            sort,
        ]
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RunsPage:
    """One page of runs and the cursor of the next (``None``: this was the last)."""

    runs: list[Run]
    next: str | None


@dataclass(frozen=True, slots=True)
class DeadLettersPage:
    """One page of dead letters, oldest first, and the cursor of the next."""

    dead_letters: list[DeadLetter]
    next: str | None


def _encode_cursor(fields: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(fields)).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> dict[str, object]:
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str, not {type(cursor).__name__}")
    if not cursor or len(cursor) > _MAX_CURSOR:
        raise InvalidCursor("cursor", "is not a cursor this store issued")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor("cursor", "is not a cursor this store issued") from None
    if not isinstance(fields, dict) or fields.get("k") != kind:
        raise InvalidCursor("cursor", f"is not a cursor of a {kind} page")
    return fields


def _runs_position(cursor: str, digest: str) -> tuple[datetime, uuid.UUID]:
    fields = _decode_cursor(cursor, "runs")
    if fields.get("q") != digest:
        raise InvalidCursor("cursor", "was issued for other filters or another sort")
    try:
        created_at = datetime.fromisoformat(str(fields["c"]))
        run_id = uuid.UUID(str(fields["r"]))
    except (KeyError, ValueError):
        raise InvalidCursor("cursor", "is not a cursor this store issued") from None
    if created_at.tzinfo is None:
        raise InvalidCursor("cursor", "is not a cursor this store issued")
    return created_at, run_id


async def list_runs_page(
    conn: AsyncConnection[TupleRow],
    filters: RunFilters,
    *,
    descending: bool,
    limit: int,
    cursor: str | None,
) -> RunsPage:
    """Runs matching ``filters`` sorted by ``(created_at, run_id)``, at most ``limit``,
    after ``cursor`` (a previous page's ``next``).

    Raises:
        InvalidCursor: ``cursor`` was not issued by this query (other filters or sort).
    """
    sort = "-created_at" if descending else "created_at"
    digest = filters.digest(sort)
    conditions: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, object] = {"limit": limit + 1}
    for column in ("status", "run_type", "session_id", "owner"):
        value = getattr(filters, column)
        if value is not None:
            conditions.append(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
            )
            params[column] = value
    if filters.created_after is not None:
        conditions.append(sql.SQL("created_at >= %(created_after)s"))
        params["created_after"] = filters.created_after
    if filters.created_before is not None:
        conditions.append(sql.SQL("created_at < %(created_before)s"))
        params["created_before"] = filters.created_before
    if cursor is not None:
        params["c"], params["r"] = _runs_position(cursor, digest)
        conditions.append(
            sql.SQL("(created_at, run_id) < (%(c)s, %(r)s)")
            if descending
            else sql.SQL("(created_at, run_id) > (%(c)s, %(r)s)")
        )
    order = sql.SQL("DESC" if descending else "ASC")
    query = sql.SQL(
        "SELECT {columns} FROM runs WHERE {where}"
        " ORDER BY created_at {order}, run_id {order} LIMIT %(limit)s"
    ).format(
        columns=sql.SQL(COLUMNS),
        where=sql.SQL(" AND ").join(conditions),
        order=order,
    )
    cur = conn.cursor(row_factory=class_row(Run))
    await cur.execute(query, params)
    runs = await cur.fetchall()
    following = None
    if len(runs) > limit:
        runs = runs[:limit]
        last = runs[-1]
        following = _encode_cursor(
            {"k": "runs", "q": digest, "c": last.created_at.isoformat(), "r": str(last.run_id)}
        )
    return RunsPage(runs, following)


async def list_dead_letters_page(
    conn: AsyncConnection[TupleRow],
    *,
    include_replayed: bool,
    limit: int,
    cursor: str | None,
) -> DeadLettersPage:
    """Dead letters oldest first, at most ``limit``, after ``cursor``.

    Raises:
        InvalidCursor: ``cursor`` was not issued by this query.
    """
    after = 0
    if cursor is not None:
        fields = _decode_cursor(cursor, "dead_letters")
        position = fields.get("i")
        if fields.get("x") != include_replayed or not isinstance(position, int):
            raise InvalidCursor("cursor", "was issued for another dead-letter query")
        after = position
    cur = conn.cursor(row_factory=class_row(DeadLetter))
    await cur.execute(
        f"SELECT {DL_COLUMNS} FROM dead_letters WHERE dead_letter_id > %s"
        f" AND (%s OR replayed_at IS NULL) ORDER BY dead_letter_id LIMIT %s",
        (after, include_replayed, limit + 1),
    )
    rows = await cur.fetchall()
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        following = _encode_cursor(
            {"k": "dead_letters", "x": include_replayed, "i": rows[-1].dead_letter_id}
        )
    return DeadLettersPage(rows, following)
