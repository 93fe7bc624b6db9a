"""Scoped key/value memory with optimistic versions and a TTL (DESIGN §5).

A key lives in a scope: a run, a session or a user. Every write bumps the row's version;
a write may state the version it expects (``0`` = "must not exist") and fails with
``VersionConflict`` otherwise. Expiry uses the database clock; an expired row reads as
absent (version 0), but a rewrite continues its version count, so a writer holding a
version from before the expiry can never overwrite a newer value by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

from runtime.store._codec import decode
from runtime.store.errors import VersionConflict

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._codec import JSON

__all__ = [
    "MemoryItem",
    "MemoryScope",
    "ScopeKind",
    "delete_memory",
    "get_memory",
    "purge_expired_memory",
    "put_memory",
]

ScopeKind = Literal["run", "session", "user"]
_SCOPE_KINDS: Final = frozenset(get_args(ScopeKind))

_LIVE = "(expires_at IS NULL OR expires_at > now())"

_PUT = f"""
WITH current AS (
    SELECT version, {_LIVE} AS live FROM memory
    WHERE scope_kind = %(kind)s AND scope_id = %(id)s AND key = %(key)s
), written AS (
    INSERT INTO memory AS m (scope_kind, scope_id, key, value, version, expires_at)
    SELECT %(kind)s, %(id)s, %(key)s, %(value)s::jsonb, 1,
           now() + make_interval(secs => %(ttl)s)
    -- A caller expecting version n > 0 of an absent key must not create it.
    WHERE %(expected)s::bigint IS NULL OR %(expected)s = 0 OR EXISTS (SELECT 1 FROM current)
    ON CONFLICT (scope_kind, scope_id, key) DO UPDATE
        SET value = excluded.value, version = m.version + 1,
            expires_at = excluded.expires_at, updated_at = now()
        WHERE %(expected)s::bigint IS NULL
           OR (CASE WHEN m.expires_at IS NULL OR m.expires_at > now() THEN m.version ELSE 0 END)
              = %(expected)s
    RETURNING version, expires_at, created_at, updated_at
)
SELECT written.*, (SELECT CASE WHEN live THEN version ELSE 0 END FROM current)
FROM (SELECT 1) AS one LEFT JOIN written ON true
"""


@dataclass(frozen=True, slots=True)
class MemoryScope:
    """Where a key lives: ``MemoryScope("session", session_id)``.

    Raises:
        ValueError: ``kind`` is not ``"run"``, ``"session"`` or ``"user"``, or ``id`` is
            empty.
    """

    kind: ScopeKind
    id: str

    def __post_init__(self) -> None:
        if self.kind not in _SCOPE_KINDS:
            kinds = ", ".join(repr(k) for k in sorted(_SCOPE_KINDS))
            raise ValueError(f"memory scope kind must be one of {kinds}, not {self.kind!r}")
        if not self.id:
            raise ValueError("memory scope id must not be empty")

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """A live memory value.

    Attributes:
        scope: its scope.
        key: its key.
        value: the JSON value.
        version: bumped by every write, from 1.
        expires_at: when it stops being visible (database clock), or ``None``.
        created_at, updated_at: database-clock timestamps.
    """

    scope: MemoryScope
    key: str
    value: JSON
    version: int
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


async def get_memory(
    conn: AsyncConnection[TupleRow], scope: MemoryScope, key: str
) -> MemoryItem | None:
    """The live value at ``scope``/``key``, or ``None`` if absent or expired."""
    cur = await conn.execute(
        f"SELECT value, version, expires_at, created_at, updated_at FROM memory"
        f" WHERE scope_kind = %s AND scope_id = %s AND key = %s AND {_LIVE}",
        (scope.kind, scope.id, key),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return MemoryItem(scope, key, row[0], int(row[1]), row[2], row[3], row[4])


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
            or expired; ``n`` only if the live version is ``n``.
        ttl: seconds until the value expires (database clock), or ``None`` for never.

    Raises:
        VersionConflict: the live version is not ``expected_version``; nothing written.
    """
    cur = await conn.execute(
        _PUT,
        {
            "kind": scope.kind,
            "id": scope.id,
            "key": key,
            "value": value.decode(),
            "ttl": ttl,
            "expected": expected_version,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    version, expires_at, created_at, updated_at, before = row
    if version is None:
        raise VersionConflict(str(scope), key, expected_version or 0, int(before or 0))
    return MemoryItem(scope, key, decode(value), int(version), expires_at, created_at, updated_at)


_DELETE_ATTEMPTS = 3
"""Tries of a versioned delete whose row was rewritten with the same version meanwhile."""


async def delete_memory(
    conn: AsyncConnection[TupleRow],
    scope: MemoryScope,
    key: str,
    *,
    expected_version: int | None,
) -> bool:
    """Delete the live value; return whether one was deleted.

    Args:
        expected_version: ``None`` deletes whatever is there; ``n`` only version ``n``;
            ``0`` means "absent" as everywhere else, so deleting an absent (or expired)
            key with ``0`` succeeds and deletes nothing, and a live key conflicts.

    Raises:
        VersionConflict: ``expected_version`` was given and the live version differs.
    """
    for _ in range(_DELETE_ATTEMPTS):
        cur = await conn.execute(
            f"DELETE FROM memory WHERE scope_kind = %s AND scope_id = %s AND key = %s"
            f" AND {_LIVE} AND (%s::bigint IS NULL OR version = %s) RETURNING version",
            (scope.kind, scope.id, key, expected_version, expected_version),
        )
        if await cur.fetchone() is not None:
            return True
        if expected_version is None:
            return False
        current = await get_memory(conn, scope, key)
        actual = 0 if current is None else current.version
        if actual != expected_version:
            raise VersionConflict(str(scope), key, expected_version, actual)
        if actual == 0:
            return False  # expected absent, and it is
        # The expected version is live now, but the DELETE did not see it: the row it
        # waited for was deleted and written again (same version) by a transaction that
        # committed meanwhile. Try again on the newer row.
    assert expected_version is not None  # the loop returned otherwise
    raise VersionConflict(str(scope), key, expected_version, actual)


async def purge_expired_memory(conn: AsyncConnection[TupleRow], *, limit: int) -> int:
    """Delete up to ``limit`` expired rows (for the janitor); return how many."""
    cur = await conn.execute(
        "DELETE FROM memory WHERE ctid = ANY(ARRAY(SELECT ctid FROM memory"
        " WHERE expires_at <= now() LIMIT %s FOR UPDATE SKIP LOCKED))",
        (limit,),
    )
    return cur.rowcount
