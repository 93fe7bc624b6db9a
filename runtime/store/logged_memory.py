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
the run. Like an append's, the event carries the trace context of the request the run is
serving (:attr:`MemoryEvent.traceparent`), outside the hash chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

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

__all__ = ["MemoryEvent", "Operation", "delete", "logged", "read", "write"]

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
                        writer_node, writer_attempt, traceparent)
SELECT m.run_id, %(seq)s, %(type)s, %(payload)s::jsonb, %(epoch)s, {SCHEMA_VERSION},
       %(prev)s, %(hash)s, %(node)s, %(attempt)s, %(traceparent)s
FROM moved AS m
CROSS JOIN LATERAL pg_notify('{EVENTS_CHANNEL}', m.run_id::text || ':' || %(seq)s::text) AS n
"""

Outcome = dict[str, "JSON"]
Operation: TypeAlias = "Callable[[AsyncConnection[TupleRow]], Awaitable[Outcome]]"
"""A memory operation on the transaction's connection; returns its outcome (logged)."""


@dataclass(frozen=True, slots=True)
class MemoryEvent:
    """The event a memory operation is logged as, and who writes it.

    ``traceparent`` (the W3C trace context of the request the run is serving) is recorded
    with the event, like an append's, and is not covered by the hash chain.
    """

    run_id: UUID
    epoch: int
    writer: Writer
    type: str
    fields: dict[str, JSON]
    limit: int
    traceparent: str | None = None


async def logged(
    conn: AsyncConnection[TupleRow], event: MemoryEvent, operation: Operation
) -> tuple[int, dict[str, JSON]]:
    """Lock the run row, check the fences, run ``operation`` and log its outcome (merged
    into ``event.fields``) as ``event.type``; return the event's seq and payload.

    Raises:
        RunNotFound, RunTerminal, StaleEpoch, EgressFenced: refused; nothing written.
        PayloadTooLarge: the event's payload is over ``event.limit``; nothing written.
    """
    run_id, epoch = event.run_id, event.epoch
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
        payload = {**event.fields, **await operation(conn)}
        data = _codec.encode(payload, what="payload", of=event.type, limit=event.limit)
        seq = int(last_seq) + 1
        head, tail = canonical_parts(
            run_id=run_id,
            type_json=orjson.dumps(event.type),
            epoch=epoch,
            schema_version=SCHEMA_VERSION,
            payload=data,
            writer=event.writer,
        )
        digest = link(bytes(last_hash), head, seq, tail)
        await conn.execute(
            _APPEND,
            {
                "run_id": run_id,
                "seq": seq,
                "type": event.type,
                "payload": data.decode(),
                "epoch": epoch,
                "prev": bytes(last_hash),
                "hash": digest,
                "node": event.writer.node,
                "attempt": event.writer.attempt,
                "traceparent": event.traceparent,
            },
        )
    return seq, payload


def read(scope: MemoryScope, key: str) -> Operation:
    """Read ``key``; the outcome is ``found``, and ``value`` and ``version``."""

    async def operation(conn: AsyncConnection[TupleRow]) -> Outcome:
        item = await get_memory(conn, scope, key)
        if item is None:
            return {"found": False}
        return {"found": True, "value": item.value, "version": item.version}

    return operation


def write(
    scope: MemoryScope,
    key: str,
    value: bytes,
    *,
    expected_version: int | None,
    ttl: float | None,
) -> Operation:
    """Write ``key``; the outcome is ``version`` (the new one, or ``None``) and
    ``conflict_version`` (the live version that refused the write, or ``None``)."""

    async def operation(conn: AsyncConnection[TupleRow]) -> Outcome:
        try:
            item = await put_memory(
                conn, scope, key, value, expected_version=expected_version, ttl=ttl
            )
        except VersionConflict as conflict:
            return {"version": None, "conflict_version": conflict.actual}
        return {"version": item.version, "conflict_version": None}

    return operation


def delete(scope: MemoryScope, key: str) -> Operation:
    """Delete ``key``; the outcome is whether there was a value (``deleted``)."""

    async def operation(conn: AsyncConnection[TupleRow]) -> Outcome:
        return {"deleted": await delete_memory(conn, scope, key, expected_version=None)}

    return operation
