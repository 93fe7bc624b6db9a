-- 0004_run_event_writers: every event records who wrote it (DESIGN §7, issue 9 item 4).
--
-- writer_node is the executor's node id, "<node name>:<boot uuid>"; writer_attempt the
-- attempt (run_attempts.attempt) it was executing. Both are covered by the event's hash
-- from schema_version 2 on (runtime/store/chain.py), so the writer of an event cannot be
-- changed without breaking the chain. Events written before this migration keep
-- schema_version 1 and NULL writers, and verify as they were written. Events written from
-- outside an executor (run.cancel_requested) have no writer either.

ALTER TABLE run_events
    ADD COLUMN writer_node text,
    ADD COLUMN writer_attempt integer CHECK (writer_attempt >= 1),
    ADD CONSTRAINT run_events_writer_attempt_has_node
        CHECK (writer_attempt IS NULL OR writer_node IS NOT NULL);

-- Who wrote what, for checkers and operators ("every event of executor X").
CREATE INDEX run_events_writer_node_idx ON run_events (writer_node) WHERE writer_node IS NOT NULL;
