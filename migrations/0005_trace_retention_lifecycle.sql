-- 0005_trace_retention_lifecycle: trace context, retention, operator queries and the
-- lifecycle feed (DESIGN §10, §11; docs/design/store-operations.md).

-- Trace context (W3C traceparent) of the request that caused a row. Not covered by the
-- hash chain: it is correlation metadata chosen by the caller, not a fact about the run
-- (docs/design/store-operations.md, "Trace context"). Events keep schema_version 2.
ALTER TABLE runs ADD COLUMN traceparent text;
ALTER TABLE run_frames ADD COLUMN traceparent text;
ALTER TABLE run_events ADD COLUMN traceparent text;

-- Retention: the events of a finished run are pruned up to retention_floor (the last
-- pruned seq, 0: nothing pruned); retention_anchor is that event's hash, which the first
-- remaining event's prev_hash must equal, so verify checks the rest of the chain from it.
ALTER TABLE runs
    ADD COLUMN retention_floor bigint NOT NULL DEFAULT 0 CHECK (retention_floor >= 0),
    ADD COLUMN retention_anchor bytea,
    ADD CONSTRAINT runs_retention_floor_below_head CHECK (retention_floor <= last_seq),
    ADD CONSTRAINT runs_retention_anchor_with_floor
        CHECK ((retention_floor = 0) = (retention_anchor IS NULL));
-- The sweep's candidates: finished runs with something left to prune, oldest first.
CREATE INDEX runs_prunable_idx ON runs (finished_at)
    WHERE finished_at IS NOT NULL AND retention_floor < last_seq - 1;

-- Operators' runs list: keyset pagination on (created_at, run_id), either direction.
CREATE INDEX runs_created_at_run_id_idx ON runs (created_at, run_id);
DROP INDEX runs_created_at_idx;

-- A replayed dead letter names the run that replays it.
ALTER TABLE dead_letters
    ADD COLUMN replay_run_id uuid REFERENCES runs (run_id) ON DELETE SET NULL;

-- The lifecycle feed: one row per run created / started / recovered / terminal, written
-- by triggers in the transaction that caused it. xid is that transaction's id: a reader
-- takes rows in (xid, id) order only below its snapshot's xmin, where every transaction
-- has ended, so a row committed late is never passed over (runtime/store/lifecycle.py).
CREATE TABLE run_lifecycle (
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    run_id      uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    type        text NOT NULL,
    status      text NOT NULL,
    seq         bigint,
    traceparent text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, id)
);
CREATE INDEX run_lifecycle_run_id_idx ON run_lifecycle (run_id);
CREATE INDEX run_lifecycle_created_at_idx ON run_lifecycle (created_at);

CREATE FUNCTION run_lifecycle_from_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO run_lifecycle (run_id, type, status, seq, traceparent)
        VALUES (NEW.run_id, 'run.created', NEW.status, NEW.last_seq, NEW.traceparent);
    ELSIF NEW.status = 'running' THEN
        INSERT INTO run_lifecycle (run_id, type, status, seq, traceparent)
        VALUES (NEW.run_id, 'run.started', NEW.status, NEW.last_seq, NEW.traceparent);
    ELSIF NEW.status <> 'pending' THEN  -- a terminal status: run.succeeded, ...
        INSERT INTO run_lifecycle (run_id, type, status, seq, traceparent)
        VALUES (NEW.run_id, 'run.' || NEW.status, NEW.status, NEW.last_seq, NEW.traceparent);
    END IF;
    PERFORM pg_notify('warden_lifecycle', '*');
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_lifecycle_created
    AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION run_lifecycle_from_runs();
-- Only a changed status queues anything: an append that moves a running run's head is
-- filtered by the WHEN clause, without calling the function.
CREATE TRIGGER runs_lifecycle_status
    AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION run_lifecycle_from_runs();

CREATE FUNCTION run_lifecycle_recovered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_lifecycle (run_id, type, status, seq, traceparent)
    SELECT NEW.run_id, 'run.recovered', r.status, NEW.seq, NEW.traceparent
    FROM runs AS r WHERE r.run_id = NEW.run_id;
    PERFORM pg_notify('warden_lifecycle', '*');
    RETURN NULL;
END
$$;

CREATE TRIGGER run_events_lifecycle_recovered
    AFTER INSERT ON run_events
    FOR EACH ROW WHEN (NEW.type = 'run.executor_lost')
    EXECUTE FUNCTION run_lifecycle_recovered();
