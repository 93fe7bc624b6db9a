"""Runs: idempotent creation, snapshots, listing and cancel requests (DESIGN §5, §8)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import orjson
from psycopg.rows import class_row

from runtime.store._codec import canonical
from runtime.store._status import TERMINAL_STATUSES, RunStatus
from runtime.store.chain import canonical_parts, link
from runtime.store.errors import RunConflict, RunNotFound
from runtime.store.events import EVENTS_CHANNEL, SCHEMA_VERSION

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from runtime.store import _codec

__all__ = [
    "CANCELS_CHANNEL",
    "CANCEL_REQUESTED_EVENT",
    "CancelRequest",
    "Run",
    "RunStatus",
    "TERMINAL_STATUSES",
    "create_run",
    "get_run",
    "list_runs",
    "request_cancel",
]

CANCELS_CHANNEL: Final = "warden_cancels"
"""NOTIFY channel for cancel requests (payload ``run_id:seq``): a run's executor listens
here rather than to every event of its own run."""

CANCEL_REQUESTED_EVENT: Final = "run.cancel_requested"
"""Event appended by :func:`request_cancel`, written with epoch 0 (not by an executor)."""

COLUMNS = (
    "run_id, owner, session_id, run_type, status, input, idempotency_key, last_seq,"
    " cancel_requested_at, created_at, updated_at, finished_at, retention_floor, traceparent"
)
_BY_ID = f"SELECT {COLUMNS} FROM runs WHERE run_id = %s"


@dataclass(frozen=True, slots=True)
class Run:
    """A snapshot of one run row.

    Attributes:
        run_id: the run's id.
        owner: the principal that started it; idempotency keys are scoped to it.
        session_id: the session it belongs to.
        run_type: which handler runs it.
        status: ``pending`` until leased, ``running`` once leased, then terminal.
        input: the input it was started with.
        idempotency_key: the caller's key, if any.
        last_seq: seq of its latest event (0 before the first).
        cancel_requested_at: when a cancel was first requested (database clock).
        created_at, updated_at, finished_at: database-clock timestamps.
        retention_floor: the last seq retention pruned (0: nothing pruned); reading
            events after a lower cursor raises ``StaleCursor``.
        traceparent: the W3C trace context of the request that created the run, if any.
    """

    run_id: uuid.UUID
    owner: str
    session_id: str
    run_type: str
    status: RunStatus
    input: _codec.JSON
    idempotency_key: str | None
    last_seq: int
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    retention_floor: int = 0
    traceparent: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the run has ended."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Outcome of :func:`request_cancel`.

    Attributes:
        run: the run after the request.
        requested: ``True`` if this call recorded the cancel (and appended the event);
            ``False`` if one was already recorded or the run had already ended.
        seq: the ``run.cancel_requested`` event's seq when ``requested``.
    """

    run: Run
    requested: bool
    seq: int | None


async def _one_run(
    conn: AsyncConnection[TupleRow], query: str, params: tuple[object, ...]
) -> Run | None:
    cur = conn.cursor(row_factory=class_row(Run))
    await cur.execute(query, params)
    return await cur.fetchone()


_CREATE_ATTEMPTS: Final = 3
"""Tries of a create whose conflicting row vanished before it could be read (deleted)."""


async def create_run(
    conn: AsyncConnection[TupleRow],
    *,
    owner: str,
    session_id: str,
    run_type: str,
    input_: bytes,
    idempotency_key: str | None,
    run_id: uuid.UUID | None,
    traceparent: str | None = None,
) -> tuple[Run, bool]:
    """Insert a run, or return the one this same request created earlier.

    A repeat is the same request when the owner, idempotency key, session, run type and
    input are equal, and, if the caller chose ``run_id``, the id too (the trace context
    may differ: a retry is a new request of the same trace or another). Idempotency keys are
    scoped per owner (the schema's unique ``(owner, idempotency_key)``).

    Returns:
        ``(run, created)``: ``created`` is ``False`` when the earlier run was returned.

    Raises:
        RunConflict: the key or the chosen ``run_id`` is taken by a different request
            (another owner's run is never returned nor described); nothing changed.
    """
    new_id = run_id or uuid.uuid4()
    for _ in range(_CREATE_ATTEMPTS):
        inserted = await _one_run(
            conn,
            f"INSERT INTO runs (run_id, owner, session_id, run_type, input, idempotency_key,"
            f" traceparent) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)"
            f" ON CONFLICT DO NOTHING RETURNING {COLUMNS}",
            (new_id, owner, session_id, run_type, input_.decode(), idempotency_key, traceparent),
        )
        if inserted is not None:
            return inserted, True
        # The conflicting insert has committed (the unique check waited for it), so a new
        # statement's snapshot sees it. The conflict is on (owner, idempotency_key) or, when
        # the caller chose the run_id, on the run_id itself.
        existing: Run | None = None
        if idempotency_key is not None:
            existing = await _one_run(
                conn,
                f"SELECT {COLUMNS} FROM runs WHERE owner = %s AND idempotency_key = %s",
                (owner, idempotency_key),
            )
        if existing is None and run_id is not None:
            existing = await _one_run(conn, _BY_ID, (run_id,))
            if existing is not None and (
                existing.owner != owner or existing.idempotency_key != idempotency_key
            ):
                # Someone else's run, or this owner's run from a request with another
                # key: say only that the id is taken.
                raise RunConflict(run_id, "the run_id is already taken")
        if existing is None:
            continue  # the conflicting run was deleted meanwhile: insert again
        mismatch = _differences(
            existing,
            session_id=session_id,
            run_type=run_type,
            input_=input_,
            run_id=run_id,
        )
        if mismatch:
            raise RunConflict(existing.run_id if run_id is None else run_id, mismatch)
        return existing, False
    raise RunConflict(new_id, "the conflicting run kept changing; retry")


def _differences(
    existing: Run, *, session_id: str, run_type: str, input_: bytes, run_id: uuid.UUID | None
) -> str:
    """What differs between an earlier run of this owner and key and a repeat request."""
    differs = [
        name
        for name, same in (
            ("run_id", run_id is None or run_id == existing.run_id),
            ("session_id", existing.session_id == session_id),
            ("run_type", existing.run_type == run_type),
            ("input", canonical(existing.input) == input_),
        )
        if not same
    ]
    if not differs:
        return ""
    key = existing.idempotency_key
    what = "the run_id" if key is None else f"idempotency key {key!r}"
    return f"{what} was used with a different {', '.join(differs)}"


async def get_run(conn: AsyncConnection[TupleRow], run_id: uuid.UUID) -> Run:
    """The run's current row.

    Raises:
        RunNotFound: no such run.
    """
    run = await _one_run(conn, _BY_ID, (run_id,))
    if run is None:
        raise RunNotFound(run_id)
    return run


async def list_runs(
    conn: AsyncConnection[TupleRow],
    *,
    status: RunStatus | None,
    run_type: str | None,
    session_id: str | None,
    owner: str | None,
    before: datetime | None,
    limit: int,
) -> list[Run]:
    """Runs matching every given filter, newest first, at most ``limit``.

    Page by passing the last run's ``created_at`` as ``before``.
    """
    cur = conn.cursor(row_factory=class_row(Run))
    await cur.execute(
        f"SELECT {COLUMNS} FROM runs"
        " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(run_type)s::text IS NULL OR run_type = %(run_type)s)"
        " AND (%(session_id)s::text IS NULL OR session_id = %(session_id)s)"
        " AND (%(owner)s::text IS NULL OR owner = %(owner)s)"
        " AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s)"
        " ORDER BY created_at DESC, run_id LIMIT %(limit)s",
        {
            "status": status,
            "run_type": run_type,
            "session_id": session_id,
            "owner": owner,
            "before": before,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def request_cancel(
    conn: AsyncConnection[TupleRow],
    run_id: uuid.UUID,
    *,
    reason: bytes,
    traceparent: str | None = None,
) -> CancelRequest:
    """Record a cancel request, append ``run.cancel_requested`` and wake the owner.

    Idempotent: a second request, or one for a run that already ended, changes nothing.
    The owner learns of it from the NOTIFY, and at the latest from its next lease renewal,
    which reports the flag (DESIGN §6, §8). The event is written with epoch 0: it comes
    from outside the lease, and it locks the run row exactly like a fenced append, so
    seqs stay gap-free.

    Raises:
        RunNotFound: no such run.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT status, cancel_requested_at IS NOT NULL, last_seq, last_hash"
            " FROM runs WHERE run_id = %s FOR UPDATE",
            (run_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise RunNotFound(run_id)
        status, already, last_seq, last_hash = str(row[0]), bool(row[1]), int(row[2]), row[3]
        if status in TERMINAL_STATUSES or already:
            return CancelRequest(await get_run(conn, run_id), False, None)
        seq = last_seq + 1
        head, tail = canonical_parts(
            run_id=run_id,
            type_json=orjson.dumps(CANCEL_REQUESTED_EVENT),
            epoch=0,
            schema_version=SCHEMA_VERSION,
            payload=reason,
        )
        digest = link(bytes(last_hash), head, seq, tail)
        await conn.execute(
            "INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version,"
            " prev_hash, hash, traceparent) VALUES (%s, %s, %s, %s::jsonb, 0, %s, %s, %s, %s)",
            (
                run_id,
                seq,
                CANCEL_REQUESTED_EVENT,
                reason.decode(),
                SCHEMA_VERSION,
                bytes(last_hash),
                digest,
                traceparent,
            ),
        )
        await conn.execute(
            "UPDATE runs SET cancel_requested_at = now(), last_seq = %s, last_hash = %s,"
            " updated_at = now() WHERE run_id = %s",
            (seq, digest, run_id),
        )
        # Readers of the log, and the run's executor, which listens for cancels alone.
        await conn.execute(
            "SELECT pg_notify(%s, %s), pg_notify(%s, %s)",
            (EVENTS_CHANNEL, f"{run_id}:{seq}", CANCELS_CHANNEL, f"{run_id}:{seq}"),
        )
    return CancelRequest(await get_run(conn, run_id), True, seq)
