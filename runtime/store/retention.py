"""Retention: pruning the events of runs that finished long enough ago (DESIGN §10).

One sweep is one transaction, bounded by a budget of events:

1. lock up to ``budget`` finished runs whose window has passed and that still have events
   before their terminal one, oldest finish first, with ``FOR UPDATE SKIP LOCKED``: two
   sweeps (two nodes' janitors) never work on the same run, and neither waits;
2. for each, delete its events from the floor up, never its last (terminal) event, until
   the budget is spent, and record the last pruned seq as ``runs.retention_floor`` and
   that event's hash as ``runs.retention_anchor``.

The run row, its terminal event (and every event after the floor) stay. The first
remaining event's ``prev_hash`` equals the anchor, so :func:`runtime.store.chain.verify_chain`
checks the remaining chain from it, and a read below the floor raises ``StaleCursor``.
Lifecycle-feed entries older than the longest window go in the same sweep (bounded too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = ["PruneReport", "prune_events"]

_CANDIDATES: Final = """
SELECT r.run_id, r.retention_floor, r.last_seq
FROM runs AS r
LEFT JOIN unnest(%(types)s::text[], %(windows)s::float8[]) AS w(run_type, secs)
       ON w.run_type = r.run_type
WHERE r.finished_at IS NOT NULL AND r.retention_floor < r.last_seq - 1
  AND r.finished_at < now() - make_interval(secs => coalesce(w.secs, %(default)s))
ORDER BY r.finished_at, r.run_id
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED
"""
_ANCHOR: Final = "SELECT hash FROM run_events WHERE run_id = %s AND seq = %s"
_DELETE: Final = "DELETE FROM run_events WHERE run_id = %s AND seq > %s AND seq <= %s"
_FLOOR: Final = "UPDATE runs SET retention_floor = %s, retention_anchor = %s WHERE run_id = %s"
_LIFECYCLE: Final = """
DELETE FROM run_lifecycle WHERE (xid, id) IN (
    SELECT xid, id FROM run_lifecycle
    WHERE created_at < now() - make_interval(secs => %s)
    ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)
"""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one sweep pruned.

    Attributes:
        runs: runs whose floor moved.
        events: events deleted.
        lifecycle: lifecycle-feed entries deleted.
        skipped: runs left alone because their log has a hole where the anchor should be
            (``warden verify`` names it); nothing of theirs was deleted.
        exhausted: the budget ran out: more may be prunable now.
    """

    runs: int
    events: int
    lifecycle: int
    skipped: tuple[UUID, ...]
    exhausted: bool


async def prune_events(
    conn: AsyncConnection[TupleRow],
    *,
    default_window: float,
    windows: Mapping[str, float],
    budget: int,
) -> PruneReport:
    """Prune events of finished runs past their window; at most ``budget`` events.

    Args:
        conn: an autocommit connection; the sweep runs in its own transaction.
        default_window: seconds after its finish a run's events are kept by default.
        windows: per run type, seconds that replace the default.
        budget: most events (and most lifecycle entries) deleted.
    """
    types = list(windows)
    pruned_runs = events = 0
    skipped: list[UUID] = []
    async with conn.transaction():
        cur = await conn.execute(
            _CANDIDATES,
            {
                "types": types,
                "windows": [float(windows[name]) for name in types],
                "default": float(default_window),
                "limit": budget,
            },
        )
        candidates = await cur.fetchall()
        left = budget
        for run_id, floor_o, last_o in candidates:
            if left <= 0:
                break
            floor = int(floor_o)
            target = min(int(last_o) - 1, floor + left)
            anchor = await (await conn.execute(_ANCHOR, (run_id, target))).fetchone()
            if anchor is None:
                skipped.append(run_id)
                continue
            deleted = await conn.execute(_DELETE, (run_id, floor, target))
            await conn.execute(_FLOOR, (target, bytes(anchor[0]), run_id))
            events += deleted.rowcount
            left -= target - floor
            pruned_runs += 1
        longest = max((default_window, *windows.values()))
        lifecycle = await conn.execute(_LIFECYCLE, (float(longest), budget))
        lifecycle_deleted = lifecycle.rowcount
    exhausted = left <= 0 or lifecycle_deleted >= budget
    return PruneReport(pruned_runs, events, lifecycle_deleted, tuple(skipped), exhausted)
