"""Run leases on the database clock, with fencing epochs (DESIGN §6).

* **acquire** succeeds when the run has no lease row or its lease expired by the
  database's ``now()`` — or, with ``reclaim``, when the unexpired lease is the caller's
  own ``owner_node``'s (a crashed incarnation of the same node process: node ids carry a
  boot UUID, so a restarted node never reclaims an old lease); it grants the next epoch
  after the run's high-water mark (``runs.max_epoch``, which never decreases, even when a
  lease row is deleted; migration ``0003_epoch_high_water_mark.sql``). It first locks the
  run row, so it waits for any append in flight, and in the same statement it copies the
  new epoch into ``runs.lease_epoch``, the column appends are fenced on: every later
  append by the
  previous owner, including one already waiting for the row, sees the new epoch and fails
  with ``StaleEpoch``. (A trigger keeps the two epochs equal for any other writer of
  ``run_leases.epoch``; see ``migrations/0002_runs_lease_epoch.sql``.)
* **renew** matches ``run_id``, ``owner_node`` and ``epoch`` on an unexpired lease and
  reports whether a cancel was requested; ``None`` (zero rows) means the lease is lost.
* **release** expires the lease at once (the row stays, so epochs only grow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg.rows import class_row

from runtime.store import _db
from runtime.store._status import TERMINAL_SQL, TERMINAL_STATUSES
from runtime.store.errors import LeaseHeld, RunNotFound, RunTerminal

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = [
    "Lease",
    "LeaseRenewal",
    "acquire_lease",
    "get_lease",
    "release_lease",
    "renew_lease",
    "renew_leases",
]

_COLUMNS = "run_id, owner_node, epoch, acquired_at, renewed_at, expires_at, progress_seq"

# The lease columns come after the run's status, in Lease's field order.
_ACQUIRE = f"""
WITH run AS (
    SELECT run_id, status, max_epoch FROM runs WHERE run_id = %(run_id)s FOR UPDATE
), lease AS (
    -- The next epoch comes from the run's high-water mark, which a deleted lease row
    -- does not take along (migration 0003): an epoch is never granted twice.
    INSERT INTO run_leases AS l
        (run_id, owner_node, epoch, acquired_at, renewed_at, expires_at)
    SELECT run_id, %(owner)s, max_epoch + 1, now(), now(),
           now() + make_interval(secs => %(ttl)s)
    FROM run WHERE status NOT IN ({TERMINAL_SQL})
    ON CONFLICT (run_id) DO UPDATE
        SET owner_node = excluded.owner_node, epoch = excluded.epoch,
            acquired_at = now(), renewed_at = now(), expires_at = excluded.expires_at
        WHERE l.expires_at <= now() OR (%(reclaim)s AND l.owner_node = excluded.owner_node)
    RETURNING {_COLUMNS}
), fenced AS (
    -- The run row carries the epoch appends are fenced on; this row is locked above, so
    -- the new epoch is visible to every append that waited for it (migration 0002).
    UPDATE runs AS r
    SET lease_epoch = lease.epoch, max_epoch = lease.epoch, updated_at = now(),
        status = CASE WHEN r.status = 'pending' THEN 'running' ELSE r.status END
    FROM lease WHERE r.run_id = lease.run_id
)
SELECT (SELECT status FROM run), lease.*
FROM (SELECT 1) AS one LEFT JOIN lease ON true
"""

_RENEW = """
UPDATE run_leases AS l
SET renewed_at = now(), expires_at = now() + make_interval(secs => %(ttl)s),
    progress_seq = greatest(l.progress_seq, coalesce(%(progress)s, l.progress_seq))
FROM runs AS r
WHERE l.run_id = %(run_id)s AND l.owner_node = %(owner)s AND l.epoch = %(epoch)s
  AND l.expires_at > now() AND r.run_id = l.run_id
RETURNING l.expires_at, r.cancel_requested_at IS NOT NULL, r.last_frame_seq
"""

# Many leases of one owner in one statement (a node renews all its runs' leases at once).
# Row locks are taken in run_id order, the order of any other multi-lease statement.
_RENEW_MANY = """
WITH batch AS (
    SELECT b.run_id, b.epoch, b.progress
    FROM unnest(%(run_ids)b::uuid[], %(epochs)b::bigint[], %(progress)b::bigint[])
        AS b(run_id, epoch, progress)
), locked AS (
    SELECT l.run_id FROM run_leases AS l JOIN batch USING (run_id)
    WHERE l.owner_node = %(owner)s AND l.epoch = batch.epoch AND l.expires_at > now()
    ORDER BY l.run_id
    FOR NO KEY UPDATE OF l
)
UPDATE run_leases AS l
SET renewed_at = now(), expires_at = now() + make_interval(secs => %(ttl)s),
    progress_seq = greatest(l.progress_seq, coalesce(batch.progress, l.progress_seq))
FROM locked, batch, runs AS r
WHERE l.run_id = locked.run_id AND batch.run_id = l.run_id AND r.run_id = l.run_id
  AND l.owner_node = %(owner)s AND l.epoch = batch.epoch AND l.expires_at > now()
RETURNING l.run_id, l.expires_at, r.cancel_requested_at IS NOT NULL, r.last_frame_seq
"""

_RELEASE = """
UPDATE run_leases SET expires_at = now(), renewed_at = now()
WHERE run_id = %s AND owner_node = %s AND epoch = %s AND expires_at > now()
"""
# The same, recording how the releasing executor's attempt ended (one round trip).
_RELEASE_FINISHING = """
WITH finished AS (
    UPDATE run_attempts SET finished_at = now(), outcome = %(outcome)s
    WHERE run_id = %(run_id)s AND attempt = %(attempt)s AND finished_at IS NULL
)
UPDATE run_leases SET expires_at = now(), renewed_at = now()
WHERE run_id = %(run_id)s AND owner_node = %(owner)s AND epoch = %(epoch)s
  AND expires_at > now()
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease row. All times are the database's.

    Attributes:
        run_id: the leased run.
        owner_node: the node id (with its boot UUID) that holds or last held it.
        epoch: the fencing epoch; every append must carry it.
        acquired_at, renewed_at, expires_at: database-clock timestamps.
        progress_seq: the last seq the owner reported as processed.
    """

    run_id: UUID
    owner_node: str
    epoch: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    progress_seq: int


@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    """A successful renewal.

    Attributes:
        expires_at: the new expiry (database clock).
        cancel_requested: a cancel was requested for the run; stop and cancel now.
        last_frame_seq: the run's latest frame (0: none yet), so a holder that missed a
            frame's wake-up learns of it at its next renewal.
    """

    expires_at: datetime
    cancel_requested: bool
    last_frame_seq: int = 0


async def get_lease(conn: AsyncConnection[TupleRow], run_id: UUID) -> Lease | None:
    """The run's lease row, expired or not, or ``None`` if it was never leased."""
    cur = conn.cursor(row_factory=class_row(Lease))
    await cur.execute(f"SELECT {_COLUMNS} FROM run_leases WHERE run_id = %s", (run_id,))
    return await cur.fetchone()


async def acquire_lease(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    *,
    owner_node: str,
    ttl: float,
    rng: random.Random,
    reclaim: bool = False,
) -> Lease:
    """Take the run's lease for ``ttl`` seconds, with the next epoch.

    With ``reclaim``, a lease ``owner_node`` itself still holds is taken over too (for a
    restarted executor of the same node process, whose predecessor ended without
    releasing it); the new epoch fences whatever the predecessor still had in flight.

    Acquire locks the run row, then the lease row; the group-commit writer's multi-run
    statements lock run rows in their plan's order, so under frequent takeovers an acquire
    can be picked as a deadlock victim. Its statement is one autocommit transaction that
    was rolled back whole, so it is retried (:func:`runtime.store._db.retry_rolled_back`,
    pauses drawn from ``rng``).

    Raises:
        RunNotFound: no such run.
        RunTerminal: the run has ended.
        LeaseHeld: another (or this) owner's lease has not expired yet.
        TransactionConflict: rolled back by deadlocks every time it was tried; nothing
            changed.
    """
    params = {"run_id": run_id, "owner": owner_node, "ttl": ttl, "reclaim": reclaim}

    async def attempt() -> TupleRow | None:
        cur = await conn.execute(_ACQUIRE, params)
        return await cur.fetchone()

    row = await _db.retry_rolled_back(attempt, rng=rng, run_ids=lambda: (run_id,))
    assert row is not None
    status = row[0]
    if status is None:
        raise RunNotFound(run_id)
    if row[1] is not None:
        return Lease(*row[1:])
    if status in TERMINAL_STATUSES:
        raise RunTerminal(run_id, str(status))
    current = await get_lease(conn, run_id)
    assert current is not None, "acquire refused without a lease row"
    raise LeaseHeld(run_id, current.owner_node, current.epoch)


async def renew_lease(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    *,
    owner_node: str,
    epoch: int,
    ttl: float,
    progress_seq: int | None,
) -> LeaseRenewal | None:
    """Extend the lease by ``ttl`` seconds from the database's now.

    Returns:
        The renewal, or ``None`` when no unexpired lease matches ``run_id``,
        ``owner_node`` and ``epoch``: the lease is lost and the caller must fence itself.
    """
    cur = await conn.execute(
        _RENEW,
        {
            "run_id": run_id,
            "owner": owner_node,
            "epoch": epoch,
            "ttl": ttl,
            "progress": progress_seq,
        },
    )
    row = await cur.fetchone()
    return None if row is None else LeaseRenewal(row[0], bool(row[1]), row[2])


async def renew_leases(
    conn: AsyncConnection[TupleRow],
    leases: Sequence[tuple[UUID, int, int | None]],
    *,
    owner_node: str,
    ttl: float,
) -> dict[UUID, LeaseRenewal]:
    """Extend many leases of ``owner_node`` by ``ttl`` seconds, in one statement.

    Args:
        leases: ``(run_id, epoch, progress_seq)`` per lease (``progress_seq`` may be
            ``None``); each run at most once.

    Returns:
        The renewal of each lease still held, by run id. A lease missing from it is lost:
        its holder must fence itself.
    """
    cur = await conn.execute(
        _RENEW_MANY,
        {
            "run_ids": [run_id for run_id, _, _ in leases],
            "epochs": [epoch for _, epoch, _ in leases],
            "progress": [progress for _, _, progress in leases],
            "owner": owner_node,
            "ttl": ttl,
        },
    )
    return {row[0]: LeaseRenewal(row[1], bool(row[2]), row[3]) for row in await cur.fetchall()}


async def release_lease(
    conn: AsyncConnection[TupleRow],
    run_id: UUID,
    *,
    owner_node: str,
    epoch: int,
    attempt: int | None = None,
    outcome: str | None = None,
) -> bool:
    """Expire the lease now if this owner and epoch still hold it; return whether it did.

    With ``attempt`` and ``outcome``, that attempt is finished with that outcome (if it
    is not finished yet) in the same statement.
    """
    if attempt is None or outcome is None:
        cur = await conn.execute(_RELEASE, (run_id, owner_node, epoch))
    else:
        cur = await conn.execute(
            _RELEASE_FINISHING,
            {
                "run_id": run_id,
                "owner": owner_node,
                "epoch": epoch,
                "attempt": attempt,
                "outcome": outcome,
            },
        )
    return cur.rowcount == 1
