-- 0003_epoch_high_water_mark: a fencing epoch is never handed out twice.
--
-- Until now the highest epoch lived only in the lease row. A lease row deleted by an
-- operator or a cleanup job took it along: the next acquire started again from epoch 1,
-- and a zombie still holding epoch 1 could write again. The run row now keeps the highest
-- epoch ever granted for it (runs.max_epoch), which never decreases. Acquire takes the
-- next epoch from it, and a trigger makes any other writer of run_leases.epoch (an
-- operator's SQL, a node on the previous build during a rolling upgrade) do the same.
-- runs.lease_epoch stays the fence appends check; a deleted lease row still sets it to 0,
-- which fences every writer.

ALTER TABLE runs ADD COLUMN max_epoch bigint NOT NULL DEFAULT 0 CHECK (max_epoch >= 0);

-- Every epoch this database has seen for a run: its lease, its fence, its log.
UPDATE runs AS r
SET max_epoch = greatest(
    r.lease_epoch,
    coalesce((SELECT l.epoch FROM run_leases AS l WHERE l.run_id = r.run_id), 0),
    coalesce((SELECT max(e.epoch) FROM run_events AS e WHERE e.run_id = r.run_id), 0)
);

-- A new lease row, or a changed epoch, at or below the run's high-water mark gets the
-- next epoch instead: an epoch can only be granted once.
CREATE FUNCTION run_leases_next_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    high bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.epoch = OLD.epoch THEN
        RETURN NEW;
    END IF;
    SELECT max_epoch INTO high FROM runs WHERE run_id = NEW.run_id FOR UPDATE;
    IF NEW.epoch <= high THEN
        NEW.epoch := high + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER run_leases_next_epoch
    BEFORE INSERT OR UPDATE OF epoch ON run_leases
    FOR EACH ROW EXECUTE FUNCTION run_leases_next_epoch();

-- The fence follows the lease (as in 0002), and the high-water mark only ever rises.
CREATE OR REPLACE FUNCTION runs_sync_lease_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE runs SET lease_epoch = 0 WHERE run_id = OLD.run_id AND lease_epoch <> 0;
        RETURN OLD;
    END IF;
    UPDATE runs SET lease_epoch = NEW.epoch, max_epoch = greatest(max_epoch, NEW.epoch)
    WHERE run_id = NEW.run_id AND (lease_epoch <> NEW.epoch OR max_epoch < NEW.epoch);
    RETURN NEW;
END
$$;
