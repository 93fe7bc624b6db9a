"""The SQL text of the group-commit writer's statements (see :mod:`runtime.store._writer`).

Statements are built once, at import, as bytes: the writer sends them as they are. The
terminal statuses come from :mod:`runtime.store._status`.
"""

from __future__ import annotations

from typing import Final

from runtime.store._status import TERMINAL_SQL
from runtime.store.events import EVENTS_CHANNEL, SCHEMA_VERSION

__all__ = [
    "APPEND_NOTIFY",
    "APPEND_ONE_NOTIFY",
    "APPEND_ONE_QUIET",
    "APPEND_QUIET",
    "HEADS",
    "LOCK_HEADS",
]

# The fence for a batch: every run's head moves from the expected seq to the new one only
# if the lease epoch, a live status and the cancel fence (no cancel requested, or nothing
# but cancellation bookkeeping appended) still hold on the newest row version
# (EvalPlanQual re-checks them after waiting for a concurrent transaction). The events are
# inserted for exactly the runs that moved. One row comes back: the runs that moved, and
# the NOTIFY.
_APPEND: Final = f"""
WITH moved AS (
    UPDATE runs AS r
    SET last_seq = h.last_seq, last_hash = h.last_hash, updated_at = now(),
        status = coalesce(h.status, r.status),
        finished_at = CASE WHEN h.status IS NULL THEN r.finished_at ELSE now() END
    FROM unnest(%(runs)b::uuid[], %(epochs)b::bigint[], %(expected)b::bigint[],
                %(seqs)b::bigint[], %(hashes)b::bytea[], %(statuses)b::text[],
                %(bookkeeping)b::boolean[])
         AS h(run_id, epoch, expected, last_seq, last_hash, status, bookkeeping)
    WHERE r.run_id = h.run_id AND r.lease_epoch = h.epoch AND h.epoch > 0
      AND r.last_seq = h.expected
      AND r.status NOT IN ({TERMINAL_SQL})
      AND (r.cancel_requested_at IS NULL OR h.bookkeeping)
    RETURNING r.run_id, r.last_seq
), inserted AS (
    INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                            prev_hash, hash, writer_node, writer_attempt, traceparent)
    SELECT e.run_id, e.seq, e.type, e.payload::jsonb, e.epoch, {SCHEMA_VERSION},
           e.terminal, e.prev_hash, e.hash, e.writer_node, e.writer_attempt::integer,
           e.traceparent
    FROM unnest(%(e_runs)b::uuid[], %(e_seqs)b::bigint[], %(e_types)b::text[],
                %(e_payloads)b::text[], %(e_epochs)b::bigint[], %(e_terminal)b::boolean[],
                %(e_prev)b::bytea[], %(e_hashes)b::bytea[], %(e_nodes)b::text[],
                %(e_attempts)b::text[], %(e_traces)b::text[])
         AS e(run_id, seq, type, payload, epoch, terminal, prev_hash, hash, writer_node,
              writer_attempt, traceparent)
    WHERE e.run_id IN (SELECT run_id FROM moved)
)
SELECT array_agg(m.run_id){{notify}} FROM moved AS m
"""
APPEND_NOTIFY: Final = _APPEND.replace(
    "{notify}",
    f",\n       CASE WHEN count(*) > 0 THEN pg_notify('{EVENTS_CHANNEL}',"
    " string_agg(m.run_id::text || ':' || m.last_seq::text, ',')) END",
).encode()
APPEND_QUIET: Final = _APPEND.replace("{notify}", "").encode()
# The same for a batch of one event: scalar (positional) parameters, no arrays. The
# INSERT's row count tells whether the head moved; the NOTIFY joins the moved row, so it is
# sent only then, and no result set comes back.
_APPEND_ONE: Final = f"""
WITH moved AS (
    UPDATE runs
    SET last_seq = %b, last_hash = %b, updated_at = now(),
        status = coalesce(%b::text, status),
        finished_at = CASE WHEN %b::text IS NULL THEN finished_at ELSE now() END
    WHERE run_id = %b AND lease_epoch = %b AND %b > 0 AND last_seq = %b
      AND status NOT IN ({TERMINAL_SQL})
      AND (cancel_requested_at IS NULL OR %b::boolean)
    RETURNING run_id, last_seq
)
INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                        prev_hash, hash, writer_node, writer_attempt, traceparent)
SELECT m.run_id, m.last_seq, %b::text, %b::text::jsonb, %b, {SCHEMA_VERSION},
       %b::text IS NOT NULL, %b, %b, %b::text, %b::integer, %b::text
FROM moved AS m{{notify}}
"""
APPEND_ONE_NOTIFY: Final = _APPEND_ONE.replace(
    "{notify}",
    f"\n     CROSS JOIN LATERAL pg_notify('{EVENTS_CHANNEL}',"
    " m.run_id::text || ':' || m.last_seq::text) AS n",
).encode()
APPEND_ONE_QUIET: Final = _APPEND_ONE.replace("{notify}", "").encode()
HEADS: Final = (
    "SELECT run_id, status, lease_epoch, last_seq, last_hash, cancel_requested_at IS NOT NULL"
    " FROM runs WHERE run_id = ANY(%b::uuid[])"
)
LOCK_HEADS: Final = HEADS + " ORDER BY run_id FOR UPDATE"
