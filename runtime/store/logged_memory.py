"""Memory operations an executor logs as events: the operation and its event in one fenced
transaction (run execution's ``ctx.memory``).

A run's handler reads and writes memory through its context, and each call is logged so a
replay answers from the log. Done as two statements, a crash between them would repeat a
write on replay, and an executor that had lost its lease could still write memory. Here
both happen in one transaction that first locks the run row and checks the same fences as
an append (the run exists and is not terminal, the writer's epoch is the lease's, no
cancel was requested): the memory changes if and only if its event is committed, and a
fenced executor changes nothing.

The event goes in outside the group-commit writer (like ``request_cancel``'s), under the
run row's lock, so seqs stay gap-free; the store then drops the writer's cached head of
the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import orjson

from runtime.store import _codec
from runtime.store._status import TERMINAL_STATUSES
from runtime.store.chain import canonical_parts, link
from runtime.store.errors import (
    EgressFenced,
    RunNotFound,
    RunTerminal,
    StaleEpoch,
    VersionConflict,
)
from runtime.store.events import EVENTS_CHANNEL, SCHEMA_VERSION
from runtime.store.memory import delete_memory, get_memory, put_memory

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store._codec import JSON
    from runtime.store.events import Writer
    from runtime.store.memory import MemoryScope

__all__ = ["logged_delete", "logged_get", "logged_put"]

_LOCK: Final = (
    "SELECT status, lease_epoch, last_seq, last_hash, cancel_requested_at IS NOT NULL"
    " FROM runs WHERE run_id = %s FOR UPDATE"
)
# The head moves and the event goes in with one statement (one round trip), and wakes the
# run's readers; the row is locked by _LOCK already.
_APPEND: Final = f"""
WITH moved AS (
    UPDATE runs SET last_seq = %(seq)s, last_hash = %(hash)s, updated_at = now()
    WHERE run_id = %(run_id)s RETURNING run_id
)
INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, prev_hash, hash,
                        writer_node, writer_attempt)
SELECT m.run_id, %(seq)s, %(type)s, %(payload)s::jsonb, %(epoch)s, {SCHEMA_VERSION},
       %(prev)s, %(hash)s, %(node)s, %(attempt)s
FROM moved AS m
CROSS JOIN LATERAL pg_notify('{EVENTS_CHANNEL}', m.run_id::text || ':' || %(seq)s::text) AS n
"""

Outcome = dict[str, "JSON"]


async def _logged(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    epoch: int,
    writer: Writer,
    event_type: str,
    fields: dict[str, JSON],
    operation: Callable[[], Awaitable[Outcome]],
    limit: int,
) -> tuple[int, dict[str, JSON]]:
    """Lock the run row, check the fences, run ``operation`` and log its outcome (merged
    into ``fields``) as ``event_type``; return the event's seq and payload."""
    async with conn.transaction():
        cur = await conn.execute(_LOCK, (run_id,))
        row = await cur.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        status, lease_epoch, last_seq, last_hash, cancel_requested = row
        if status in TERMINAL_STATUSES:
            raise RunTerminal(run_id, str(status))
        if epoch <= 0 or lease_epoch != epoch:
            raise StaleEpoch(run_id, epoch, int(lease_epoch) or None)
        if cancel_requested:
            raise EgressFenced(run_id, "cancel_requested")
        payload = {**fields, **await operation()}
        data = _codec.encode(payload, what="payload", of=event_type, limit=limit)
        seq = int(last_seq) + 1
        head, tail = canonical_parts(
            run_id=run_id,
            type_json=orjson.dumps(event_type),
            epoch=epoch,
            schema_version=SCHEMA_VERSION,
            payload=data,
            writer=writer,
        )
        digest = link(bytes(last_hash), head, seq, tail)
        await conn.execute(
            _APPEND,
            {
                "run_id": run_id,
                "seq": seq,
                "type": event_type,
                "payload": data.decode(),
                "epoch": epoch,
                "prev": bytes(last_hash),
                "hash": digest,
                "node": writer.node,
                "attempt": writer.attempt,
            },
        )
    return seq, payload


async def logged_get(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    epoch: int,
    writer: Writer,
    scope: MemoryScope,
    key: str,
    *,
    event_type: str,
    fields: dict[str, JSON],
    limit: int,
) -> tuple[int, dict[str, JSON]]:
    """Read ``key`` and log what was read: ``found``, and ``value`` and ``version``."""

    async def read() -> Outcome:
        item = await get_memory(conn, scope, key)
        if item is None:
            return {"found": False}
        return {"found": True, "value": item.value, "version": item.version}

    return await _logged(conn, run_id, epoch, writer, event_type, fields, read, limit)


async def logged_put(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    epoch: int,
    writer: Writer,
    scope: MemoryScope,
    key: str,
    value: bytes,
    *,
    expected_version: int | None,
    ttl: float | None,
    event_type: str,
    fields: dict[str, JSON],
    limit: int,
) -> tuple[int, dict[str, JSON]]:
    """Write ``key`` and log the outcome: ``version`` (the new one, or ``None``) and
    ``conflict_version`` (the live version that refused the write, or ``None``)."""

    async def write() -> Outcome:
        try:
            item = await put_memory(
                conn, scope, key, value, expected_version=expected_version, ttl=ttl
            )
        except VersionConflict as conflict:
            return {"version": None, "conflict_version": conflict.actual}
        return {"version": item.version, "conflict_version": None}

    return await _logged(conn, run_id, epoch, writer, event_type, fields, write, limit)


async def logged_delete(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    epoch: int,
    writer: Writer,
    scope: MemoryScope,
    key: str,
    *,
    event_type: str,
    fields: dict[str, JSON],
    limit: int,
) -> tuple[int, dict[str, JSON]]:
    """Delete ``key`` and log whether there was a value (``deleted``)."""

    async def delete() -> Outcome:
        return {"deleted": await delete_memory(conn, scope, key, expected_version=None)}

    return await _logged(conn, run_id, epoch, writer, event_type, fields, delete, limit)
