"""Membership: one ``nodes`` row per node process, with a heartbeat (DESIGN §4).

A node registers when it starts (its id carries a boot UUID, so a restarted process is a
new row), beats every heartbeat interval on the database clock, and marks itself stopped
when it shuts down cleanly. A node that died keeps ``stopped_at`` empty and its
heartbeat ages: operators see it, and the janitor of any node recovers its runs once
their leases expire (recovery never trusts membership, only leases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg.rows import class_row

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store import _codec

__all__ = ["NodeRow", "beat", "list_nodes", "mark_stopped", "register_node"]

_COLUMNS = "node_id, boot_id, hostname, pid, started_at, heartbeat_at, stopped_at, metadata"


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node process as the database knows it (database-clock times).

    Attributes:
        node_id: ``<node name>:<boot uuid>``.
        boot_id: the boot UUID.
        hostname: the machine it runs on.
        pid: its process id there.
        started_at: when it registered.
        heartbeat_at: its latest heartbeat.
        stopped_at: when it stopped cleanly; ``None`` while it runs (or if it died).
        metadata: what it published about itself (gateway address, version, bounds).
    """

    node_id: str
    boot_id: UUID
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    metadata: _codec.JSON


async def register_node(
    conn: AsyncConnection[TupleRow],
    *,
    node_id: str,
    boot_id: UUID,
    hostname: str,
    pid: int,
    metadata: bytes,
) -> NodeRow:
    """Insert the node's row (or refresh it, should the same id register again)."""
    async with conn.cursor(row_factory=class_row(NodeRow)) as cur:
        await cur.execute(
            f"INSERT INTO nodes (node_id, boot_id, hostname, pid, metadata)"
            f" VALUES (%s, %s, %s, %s, %s::jsonb)"
            f" ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL,"
            f" metadata = excluded.metadata"
            f" RETURNING {_COLUMNS}",
            (node_id, boot_id, hostname, pid, metadata.decode()),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def beat(conn: AsyncConnection[TupleRow], node_id: str) -> bool:
    """Record a heartbeat now; ``False`` if the row is gone or marked stopped."""
    cur = await conn.execute(
        "UPDATE nodes SET heartbeat_at = now() WHERE node_id = %s AND stopped_at IS NULL",
        (node_id,),
    )
    return cur.rowcount == 1


async def mark_stopped(conn: AsyncConnection[TupleRow], node_id: str) -> None:
    """Record a clean stop (idempotent)."""
    await conn.execute(
        "UPDATE nodes SET stopped_at = now(), heartbeat_at = now()"
        " WHERE node_id = %s AND stopped_at IS NULL",
        (node_id,),
    )


async def list_nodes(
    conn: AsyncConnection[TupleRow], *, include_stopped: bool = False, limit: int
) -> list[NodeRow]:
    """Nodes by latest heartbeat first; stopped ones only with ``include_stopped``."""
    where = "" if include_stopped else " WHERE stopped_at IS NULL"
    async with conn.cursor(row_factory=class_row(NodeRow)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM nodes{where} ORDER BY heartbeat_at DESC LIMIT %s",
            (limit,),
        )
        return await cur.fetchall()
