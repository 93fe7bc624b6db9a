"""Scoped key/value memory with optimistic versions and a TTL (DESIGN §5).

A key lives in a scope: a run, a session or a user. Every write bumps the key's version;
a write may state the version it expects (``0`` = "must not exist") and fails with
``VersionConflict`` otherwise. Expiry uses the database clock; an expired key reads as
absent (version 0).

**Versions never go back while a key has history.** A key's row is never deleted by a
write: deleting a key leaves a tombstone (the row, expired at once, its value cleared, its
version bumped), and writing an absent or expired key continues the row's version count.
So a writer holding a version from before a delete or an expiry can never overwrite a
newer value by accident, and every conditional write is one statement on the key's one
row: the row lock orders concurrent writers, PostgreSQL re-checks the expected version on
the newest row (EvalPlanQual), and exactly one of two writers expecting the same version
wins. The loser's ``VersionConflict`` names the version that is live after the winner
(read afresh, never from the loser's own snapshot). History ends only when
:func:`purge_expired_memory` removes expired rows and tombstones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

from psycopg.rows import kwargs_row

from runtime.store._args import identifier
from runtime.store._codec import decode
from runtime.store.errors import InvalidArgument, VersionConflict

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._codec import JSON

__all__ = [
    "MemoryItem",
    "MemoryScope",
    "ScopeKind",
    "check_key",
    "delete_memory",
    "get_memory",
    "purge_expired_memory",
    "put_memory",
]

ScopeKind = Literal["run", "session", "user"]
_SCOPE_KINDS: Final = frozenset(get_args(ScopeKind))

_ATTEMPTS: Final = 3
"""Tries of a conditional write whose row was replaced at the same version meanwhile
(only SQL from outside the store can do that)."""

_LIVE = "(m.expires_at IS NULL OR m.expires_at > now())"
_KEY = "m.scope_kind = %(kind)s AND m.scope_id = %(id)s AND m.key = %(key)s"
_RETURNING = "RETURNING m.version, m.expires_at, m.created_at, m.updated_at"
_SET = (
    "value = %(value)s::jsonb, version = m.version + 1,"
    " expires_at = now() + make_interval(secs => %(ttl)s), updated_at = now(),"
    f" created_at = CASE WHEN {_LIVE} THEN m.created_at ELSE now() END"
)
# Unconditional, or only over an absent (or expired, or deleted) key: one upsert.
_UPSERT = f"""
INSERT INTO memory AS m (scope_kind, scope_id, key, value, version, expires_at)
VALUES (%(kind)s, %(id)s, %(key)s, %(value)s::jsonb, 1,
        now() + make_interval(secs => %(ttl)s))
ON CONFLICT (scope_kind, scope_id, key) DO UPDATE SET {_SET}
"""
_PUT_ANY = f"{_UPSERT} {_RETURNING}"
_PUT_ABSENT = f"{_UPSERT} WHERE NOT {_LIVE} {_RETURNING}"
# Over a live version n: an update of that row alone, which never creates one.
_PUT_VERSION = (
    f"UPDATE memory AS m SET {_SET} WHERE {_KEY} AND {_LIVE} AND m.version = %(expected)s"
    f" {_RETURNING}"
)
# A delete leaves a tombstone: expired now, value cleared, version bumped.
_DELETE = (
    "UPDATE memory AS m SET value = 'null'::jsonb, version = m.version + 1,"
    f" expires_at = now(), updated_at = now() WHERE {_KEY} AND {_LIVE}"
    " AND (%(expected)s::bigint IS NULL OR m.version = %(expected)s) RETURNING m.version"
)
_LIVE_VERSION = f"SELECT m.version FROM memory AS m WHERE {_KEY} AND {_LIVE}"
_GET = (
    "SELECT m.value, m.version, m.expires_at, m.created_at, m.updated_at FROM memory AS m"
    f" WHERE {_KEY} AND {_LIVE}"
)


@dataclass(frozen=True, slots=True)
class MemoryScope:
    """Where a key lives: ``MemoryScope("session", session_id)``.

    Raises:
        ValueError: ``kind`` is not ``"run"``, ``"session"`` or ``"user"``; ``id`` is
            empty, holds NUL or is longer than 256 characters (``InvalidArgument``).
    """

    kind: ScopeKind
    id: str

    def __post_init__(self) -> None:
        if self.kind not in _SCOPE_KINDS:
            kinds = ", ".join(repr(k) for k in sorted(_SCOPE_KINDS))
            raise InvalidArgument("memory scope kind", f"must be one of {kinds}, not {self.kind!r}")
        identifier(self.id, "memory scope id")

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """A live memory value.

    Attributes:
        scope: its scope.
        key: its key.
        value: the JSON value.
        version: bumped by every write of the key (deletes included), from 1.
        expires_at: when it stops being visible (database clock), or ``None``.
        created_at, updated_at: database-clock timestamps (``created_at``: when this
            value was written over an absent key).
    """

    scope: MemoryScope
    key: str
    value: JSON
    version: int
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


def check_key(scope: object, key: object) -> None:
    """Refuse a scope that is not a :class:`MemoryScope` or a bad key, before any SQL.

    Raises:
        TypeError: not a ``MemoryScope``, or a key that is not a str.
        InvalidArgument: an empty key, one holding NUL or longer than 256 characters.
    """
    if not isinstance(scope, MemoryScope):
        raise TypeError(f"scope must be a MemoryScope, not {type(scope).__name__}")
    identifier(key, "memory key")


def _params(scope: MemoryScope, key: str, **more: object) -> dict[str, object]:
    return {"kind": scope.kind, "id": scope.id, "key": key, **more}


async def _live_version(conn: AsyncConnection[TupleRow], scope: MemoryScope, key: str) -> int:
    """The key's live version now (0 if absent), read in a statement of its own: after a
    conditional write lost, this sees the winner, never the loser's snapshot."""
    cur = await conn.execute(_LIVE_VERSION, _params(scope, key))
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def get_memory(
    conn: AsyncConnection[TupleRow], scope: MemoryScope, key: str
) -> MemoryItem | None:
    """The live value at ``scope``/``key``, or ``None`` if absent, expired or deleted."""
    cur = conn.cursor(row_factory=kwargs_row(functools.partial(MemoryItem, scope, key)))
    await cur.execute(_GET, _params(scope, key))
    return await cur.fetchone()


async def put_memory(
    conn: AsyncConnection[TupleRow],
    scope: MemoryScope,
    key: str,
    value: bytes,
    *,
    expected_version: int | None,
    ttl: float | None,
) -> MemoryItem:
    """Write ``value`` (canonical JSON bytes), optionally only over ``expected_version``.

    Args:
        expected_version: ``None`` writes unconditionally; ``0`` only if the key is absent
            (or expired, or deleted); ``n`` only if the live version is ``n``.
        ttl: seconds until the value expires (database clock), or ``None`` for never.

    Raises:
        VersionConflict: the live version is not ``expected_version``; nothing written.
    """
    if expected_version is None:
        statement = _PUT_ANY
    elif expected_version == 0:
        statement = _PUT_ABSENT
    else:
        statement = _PUT_VERSION
    params = _params(scope, key, value=value.decode(), ttl=ttl, expected=expected_version)
    actual = 0
    for _ in range(_ATTEMPTS):
        cur = await conn.execute(statement, params)
        row = await cur.fetchone()
        if row is not None:
            version, expires_at, created_at, updated_at = row
            return MemoryItem(
                scope, key, decode(value), version, expires_at, created_at, updated_at
            )
        assert expected_version is not None  # an unconditional write always writes
        actual = await _live_version(conn, scope, key)
        if actual != expected_version:
            break
        # The expected version is live now, but the statement did not see it: the row was
        # replaced at the same version meanwhile (SQL from outside). Try the new row.
    assert expected_version is not None
    raise VersionConflict(str(scope), key, expected_version, actual)


async def delete_memory(
    conn: AsyncConnection[TupleRow],
    scope: MemoryScope,
    key: str,
    *,
    expected_version: int | None,
) -> bool:
    """Delete the live value (leaving a tombstone); return whether one was deleted.

    Args:
        expected_version: ``None`` deletes whatever is there; ``n`` only version ``n``;
            ``0`` means "absent" as everywhere else, so deleting an absent (or expired)
            key with ``0`` succeeds and deletes nothing, and a live key conflicts.

    Raises:
        VersionConflict: ``expected_version`` was given and the live version differs.
    """
    if expected_version == 0:
        actual = await _live_version(conn, scope, key)
        if actual:
            raise VersionConflict(str(scope), key, 0, actual)
        return False  # expected absent, and it is
    params = _params(scope, key, expected=expected_version)
    actual = 0
    for _ in range(_ATTEMPTS):
        cur = await conn.execute(_DELETE, params)
        if await cur.fetchone() is not None:
            return True
        if expected_version is None:
            return False
        actual = await _live_version(conn, scope, key)
        if actual != expected_version:
            break
        # Replaced at the same version meanwhile, as in put_memory: try the new row.
    assert expected_version is not None
    raise VersionConflict(str(scope), key, expected_version, actual)


async def purge_expired_memory(conn: AsyncConnection[TupleRow], *, limit: int) -> int:
    """Delete up to ``limit`` expired rows and tombstones (for the janitor); return how
    many. The keys' version history ends here."""
    cur = await conn.execute(
        "DELETE FROM memory WHERE ctid = ANY(ARRAY(SELECT ctid FROM memory"
        " WHERE expires_at <= now() LIMIT %s FOR UPDATE SKIP LOCKED))",
        (limit,),
    )
    return cur.rowcount
