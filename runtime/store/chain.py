"""The event log's hash chain: canonical event bytes, chaining, and verification.

Each event's ``hash`` is ``sha256(prev_hash || canonical_bytes(event))`` and its
``prev_hash`` is the previous event's ``hash`` (32 zero bytes for seq 1). The canonical
bytes are the orjson serialisation, with sorted keys, of::

    {"epoch": e, "payload": p, "run_id": "<uuid>", "schema_version": v, "seq": n, "type": t,
     "writer": {"attempt": a, "node": "<node id>"} | null}

built around the payload's own canonical bytes so a payload is serialised only once.
``writer`` is part of the bytes from schema version 2 on (migration ``0004``); events of
version 1 were hashed without it, and are verified that way.
``created_at`` is not covered (the database assigns it at commit), nor is ``traceparent``
(correlation metadata the caller chose; see ``docs/design/store-operations.md``). Editing
any covered field, deleting or reordering rows breaks the chain from that seq on, and
:func:`verify_chain` reports the first bad seq.

Retention prunes a finished run's events up to ``runs.retention_floor`` and keeps the hash
of the last pruned event as ``runs.retention_anchor``: verification then starts from the
anchor, as if it were the genesis hash, at seq ``floor + 1``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from runtime.store import _codec
from runtime.store.errors import RunNotFound
from runtime.store.events import Writer

if TYPE_CHECKING:
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = [
    "GENESIS_HASH",
    "ChainReport",
    "canonical_bytes",
    "canonical_parts",
    "link",
    "verify_chain",
    "writer_json",
]

_WRITER_VERSION = 2  # events of this schema version on cover their writer
_SORTED = orjson.OPT_SORT_KEYS

GENESIS_HASH = bytes(32)
"""``prev_hash`` of every run's first event."""

_VERIFY_PAGE = 1000


def canonical_bytes(
    *,
    run_id: UUID,
    seq: int,
    type_: str,
    epoch: int,
    schema_version: int,
    payload: bytes,
    writer: Writer | None = None,
) -> bytes:
    """The canonical serialisation of one event (see the module docstring).

    The same bytes as ``head + b"%d" % seq + tail`` from :func:`canonical_parts`, which is
    what the writer and :func:`verify_chain` hash (through :func:`link`).

    Args:
        payload: the payload's canonical bytes, as produced by :func:`_codec.encode`.
    """
    head, tail = canonical_parts(
        run_id=run_id,
        type_json=orjson.dumps(type_),
        epoch=epoch,
        schema_version=schema_version,
        payload=payload,
        writer=writer,
    )
    return b"%s%d%s" % (head, seq, tail)


def canonical_parts(
    *,
    run_id: UUID,
    type_json: bytes,
    epoch: int,
    schema_version: int,
    payload: bytes,
    writer: Writer | None = None,
) -> tuple[bytes, bytes]:
    """The canonical bytes of an event around its seq: ``head + b"%d" % seq + tail``.

    Everything but the seq (and the previous hash) is known before the append reaches
    the database, so an appender builds these once and the writer only joins in the seq.

    Args:
        type_json: the event type as a JSON string (``orjson.dumps(type_)``).
        payload: the payload's canonical bytes, as produced by :func:`_codec.encode`.
    """
    head = b'{"epoch":%d,"payload":%s,"run_id":"%s","schema_version":%d,"seq":' % (
        epoch,
        payload,
        str(run_id).encode(),
        schema_version,
    )
    if schema_version < _WRITER_VERSION:
        return head, b',"type":%s}' % type_json
    return head, b',"type":%s,"writer":%s}' % (type_json, writer_json(writer))


def writer_json(writer: Writer | None) -> bytes:
    """The writer's canonical JSON: ``{"attempt":a,"node":"n"}``, or ``null``."""
    if writer is None:
        return b"null"
    return orjson.dumps({"attempt": writer.attempt, "node": writer.node}, option=_SORTED)


def link(prev_hash: bytes, head: bytes, seq: int, tail: bytes) -> bytes:
    """The hash of event ``seq`` that follows ``prev_hash``: ``sha256(prev_hash ||
    canonical bytes)``, the canonical bytes given as :func:`canonical_parts` of it.

    The one place a hash is chained: the group-commit writer, ``request_cancel`` and
    :func:`verify_chain` all call it.
    """
    return hashlib.sha256(b"%s%s%d%s" % (prev_hash, head, seq, tail)).digest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of :func:`verify_chain`.

    Attributes:
        run_id: the run checked.
        events: how many events were read.
        last_seq: the run row's ``last_seq``.
        floor: the run's retention floor: events up to it were pruned, and the chain was
            checked from the anchor hash kept for it (0: from the genesis hash).
        first_bad_seq: the first seq whose row breaks the chain (a gap, a wrong
            ``prev_hash`` or a ``hash`` that does not match its content), or ``None``.
        reason: what was wrong at ``first_bad_seq``.
    """

    run_id: UUID
    events: int
    last_seq: int
    first_bad_seq: int | None
    reason: str | None
    floor: int = 0

    @property
    def ok(self) -> bool:
        """Whether the whole chain verified."""
        return self.first_bad_seq is None


async def verify_chain(conn: AsyncConnection[TupleRow], run_id: UUID) -> ChainReport:
    """Recompute ``run_id``'s chain from its rows and report the first bad seq.

    Reads the log in pages in one repeatable-read snapshot, so concurrent appends cannot
    produce a false alarm.

    Raises:
        RunNotFound: no such run.
    """
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = await conn.execute(
            "SELECT last_seq, last_hash, retention_floor, retention_anchor FROM runs"
            " WHERE run_id = %s",
            (run_id,),
        )
        head = await cur.fetchone()
        if head is None:
            raise RunNotFound(run_id)
        last_seq = int(head[0])
        last_hash = bytes(head[1])
        floor = int(head[2])
        # Pruned runs chain on from the anchor; the schema keeps it set with a floor.
        prev = GENESIS_HASH if head[3] is None else bytes(head[3])
        expected_seq = floor + 1
        count = 0
        after = floor
        while True:
            cur = await conn.execute(
                "SELECT seq, type, payload::text, epoch, schema_version, prev_hash, hash,"
                " writer_node, writer_attempt"
                " FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (run_id, after, _VERIFY_PAGE),
            )
            rows = await cur.fetchall()
            for seq_o, type_o, payload_o, epoch_o, version_o, prev_o, hash_o, node, attempt in rows:
                seq = int(seq_o)
                count += 1
                problem = None
                if seq != expected_seq:
                    problem = f"expected seq {expected_seq}, found {seq} (gap or reorder)"
                    seq = expected_seq
                elif bytes(prev_o) != prev:
                    problem = "prev_hash does not match the previous event's hash"
                else:
                    head_bytes, tail = canonical_parts(
                        run_id=run_id,
                        type_json=orjson.dumps(str(type_o)),
                        epoch=int(epoch_o),
                        schema_version=int(version_o),
                        payload=_codec.canonical(_codec.decode(str(payload_o))),
                        writer=None if node is None else Writer(str(node), attempt),
                    )
                    if link(prev, head_bytes, seq, tail) != bytes(hash_o):
                        problem = "hash does not match the event's content"
                if problem is not None:
                    return ChainReport(run_id, count, last_seq, seq, problem, floor)
                prev = bytes(hash_o)
                expected_seq += 1
            if len(rows) < _VERIFY_PAGE:
                break
            after = int(rows[-1][0])
        if expected_seq - 1 != last_seq:
            return ChainReport(
                run_id, count, last_seq, expected_seq, f"run row says last_seq {last_seq}", floor
            )
        if prev != last_hash:
            return ChainReport(
                run_id,
                count,
                last_seq,
                last_seq,
                "run row's last_hash differs from the chain",
                floor,
            )
        return ChainReport(run_id, count, last_seq, None, None, floor)
