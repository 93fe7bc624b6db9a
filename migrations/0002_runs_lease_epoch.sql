-- 0002_runs_lease_epoch: the fencing epoch moves into the run row (docs/store.md, "Fencing").
--
-- An append is fenced by one UPDATE of the run row whose WHERE clause names the writer's
-- epoch. PostgreSQL re-checks an UPDATE's conditions against the newest row version after
-- waiting for a concurrent transaction's row lock (EvalPlanQual), so a takeover that
-- committed while the append waited is seen, and the stale append updates nothing. That
-- only holds for columns of the row being updated: an epoch read from run_leases by a
-- join would come from the statement's snapshot. run_leases stays the lease's source of
-- truth (owner, expiry, renewals); runs.lease_epoch mirrors its epoch (0: never leased).

ALTER TABLE runs ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0);

UPDATE runs AS r SET lease_epoch = l.epoch FROM run_leases AS l WHERE l.run_id = r.run_id;

-- Lease acquire writes both epochs in one statement. This trigger keeps them equal for any
-- other writer of run_leases.epoch too (an operator's SQL, a node still on the previous
-- build during a rolling upgrade), so no path can leave the run row's fence behind the
-- lease. When acquire already wrote the run row the UPDATE matches nothing and writes
-- nothing. A deleted lease row fences every writer (0 is never a lease's epoch).
CREATE FUNCTION runs_sync_lease_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE runs SET lease_epoch = 0 WHERE run_id = OLD.run_id AND lease_epoch <> 0;
        RETURN OLD;
    END IF;
    UPDATE runs SET lease_epoch = NEW.epoch
    WHERE run_id = NEW.run_id AND lease_epoch <> NEW.epoch;
    RETURN NEW;
END
$$;

CREATE TRIGGER run_leases_sync_epoch
    AFTER INSERT OR DELETE OR UPDATE OF epoch ON run_leases
    FOR EACH ROW EXECUTE FUNCTION runs_sync_lease_epoch();
