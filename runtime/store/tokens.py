"""Spent token ids: the gateway's replay table (migration 0006, DESIGN §10).

A mutating gateway request spends its token's ``jti``: :func:`consume_token_id` records
it and answers whether it was fresh. The row lives until the token expires; afterwards
the token is refused for its expiry anyway, and :func:`purge_expired_token_ids` (a
janitor sweep) deletes it in bounded batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = ["MAX_TOKEN_ID_LENGTH", "consume_token_id", "purge_expired_token_ids"]

MAX_TOKEN_ID_LENGTH: Final = 200
"""Longest ``jti`` the table holds (a CHECK constraint of migration 0006)."""

_CONSUME: Final = """
INSERT INTO token_uses (jti, subject, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (jti) DO NOTHING
RETURNING 1
"""

_PURGE: Final = """
DELETE FROM token_uses WHERE jti IN (
    SELECT jti FROM token_uses WHERE expires_at < now() ORDER BY expires_at LIMIT %s
)
"""


async def consume_token_id(
    conn: AsyncConnection[TupleRow], jti: str, *, subject: str, expires_at: datetime
) -> bool:
    """Record ``jti`` as spent; ``True`` if it was fresh, ``False`` if spent before."""
    cur = await conn.execute(_CONSUME, (jti, subject, expires_at))
    return await cur.fetchone() is not None


async def purge_expired_token_ids(conn: AsyncConnection[TupleRow], *, limit: int) -> int:
    """Delete up to ``limit`` rows of expired tokens; return how many."""
    cur = await conn.execute(_PURGE, (limit,))
    return cur.rowcount
