"""Recovery claims: the janitor's side of the store (DESIGN §9).

:func:`claim_runs` finds runs that need an executor, in one transaction:

1. select up to ``limit`` candidates — non-terminal runs whose lease has run out or was
   released (by the database's ``now()``), and runs never leased that waited longer than
   ``pending_grace`` (or have a cancel request) — oldest first, locking their run rows
   with ``FOR UPDATE SKIP LOCKED``, so two janitors never claim the same run: the other
   skips the rows this one holds;
2. ask the caller which to take (a pure decision, made while the rows stay locked);
3. acquire the lease of each chosen run, with the next epoch, in the same transaction.

A lease reads as *released* when its expiry equals its last renewal — what
:func:`runtime.store.leases.release_lease` writes — and as *expired* when it simply ran
out (``expires_at = renewed_at + ttl`` passed). Released leases are handovers from a
draining node, not lost executors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from runtime.store import leases
from runtime.store.errors import LeaseHeld, RunTerminal

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Collection, Sequence
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = [
    "EXECUTOR_LOST_EVENT",
    "ClaimedRun",
    "LeaseState",
    "claim_runs",
    "release_node_leases",
]

EXECUTOR_LOST_EVENT: Final = "run.executor_lost"
"""Appended by the janitor that takes over a run whose executor's lease ran out."""


class LeaseState(enum.StrEnum):
    """A claimed run's lease, as the database saw it when claimed."""

    #: never leased: no node ever started the run.
    NONE = "none"
    #: released on purpose (a draining node handed the run over).
    RELEASED = "released"
    #: ran out without a renewal: the executor is lost (its node died or stalled).
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run claimed for recovery.

    Attributes:
        run_id: the run.
        lease: its lease's state.
        executor_losses: ``run.executor_lost`` events already in its log.
        cancel_requested: a cancel was recorded for it.
    """

    run_id: UUID
    lease: LeaseState
    executor_losses: int
    cancel_requested: bool


_CLAIM = f"""
SELECT r.run_id,
       CASE WHEN l.run_id IS NULL THEN 'none'
            WHEN l.expires_at = l.renewed_at THEN 'released'
            ELSE 'expired' END,
       (SELECT count(*) FROM run_events AS e
        WHERE e.run_id = r.run_id AND e.type = '{EXECUTOR_LOST_EVENT}'),
       r.cancel_requested_at IS NOT NULL
FROM runs AS r LEFT JOIN run_leases AS l ON l.run_id = r.run_id
WHERE r.status IN ('pending', 'running')
  AND (l.expires_at <= now()
       OR (l.run_id IS NULL
           AND (r.created_at <= now() - make_interval(secs => %(grace)s)
                OR r.cancel_requested_at IS NOT NULL)))
ORDER BY coalesce(l.expires_at, r.created_at), r.run_id
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED
"""

_RELEASE_ALL = """
UPDATE run_leases SET expires_at = now(), renewed_at = now()
WHERE owner_node = %s AND expires_at > now()
RETURNING run_id
"""


async def claim_runs(
    conn: AsyncConnection[TupleRow],
    *,
    owner_node: str,
    ttl: float,
    limit: int,
    pending_grace: float,
    rng: random.Random,
    choose: Callable[[Sequence[ClaimedRun]], Collection[UUID]],
) -> list[tuple[ClaimedRun, leases.Lease]]:
    """Claim runs needing an executor and lease the ones ``choose`` picks.

    Args:
        conn: an autocommit connection; the claim runs in its own transaction.
        owner_node: the claiming node's id (the new lease owner).
        ttl: seconds the new leases live.
        limit: most runs claimed at once.
        pending_grace: seconds a never-leased run waits for the node that created it.
        rng: the store's seeded RNG (for the acquire's retry pause).
        choose: given the claimed runs (oldest first), the ids to lease now; called
            while their rows are locked. Runs it leaves out are released untouched.

    Returns:
        The chosen runs with their new leases (epoch incremented).
    """
    async with conn.transaction():
        cur = await conn.execute(_CLAIM, {"grace": pending_grace, "limit": limit})
        claimed = [
            ClaimedRun(row[0], LeaseState(row[1]), int(row[2]), bool(row[3]))
            for row in await cur.fetchall()
        ]
        if not claimed:
            return []
        chosen = set(choose(claimed))
        taken: list[tuple[ClaimedRun, leases.Lease]] = []
        for run in claimed:
            if run.run_id not in chosen:
                continue
            try:
                lease = await leases.acquire_lease(
                    conn, run.run_id, owner_node=owner_node, ttl=ttl, rng=rng
                )
            except (LeaseHeld, RunTerminal):
                continue  # not expected: this transaction holds the run row's lock
            taken.append((run, lease))
        return taken


async def release_node_leases(conn: AsyncConnection[TupleRow], owner_node: str) -> list[UUID]:
    """Release every live lease ``owner_node`` holds; return their runs.

    A node's last step of a drain, after its run actors stopped: whatever they did not
    release themselves (a run actor killed when its shutdown budget ran out) is handed
    over now, so other nodes resume those runs at once rather than after a lease TTL.
    """
    cur = await conn.execute(_RELEASE_ALL, (owner_node,))
    return [row[0] for row in await cur.fetchall()]
