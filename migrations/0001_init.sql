-- 0001_init: the durable store (DESIGN §4-§7). Released migrations are immutable.

-- Membership: one row per node process; node_id carries a boot UUID (DESIGN §6).
CREATE TABLE nodes (
    node_id      text PRIMARY KEY,
    boot_id      uuid NOT NULL,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX nodes_heartbeat_at_idx ON nodes (heartbeat_at);

-- Runs. last_seq/last_hash are the head of the event log, allocated only inside the
-- appending transaction under this row's lock. last_frame_seq orders frames the same way.
CREATE TABLE runs (
    run_id              uuid PRIMARY KEY,
    owner               text NOT NULL,
    session_id          text NOT NULL,
    run_type            text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled', 'timed_out')),
    input               jsonb NOT NULL DEFAULT 'null'::jsonb,
    idempotency_key     text,
    last_seq            bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_hash           bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
    last_frame_seq      bigint NOT NULL DEFAULT 0 CHECK (last_frame_seq >= 0),
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    -- Idempotency keys are scoped per owner principal: two tenants may reuse a key.
    CONSTRAINT runs_owner_idempotency_key_key UNIQUE (owner, idempotency_key)
);
CREATE INDEX runs_status_idx ON runs (status);
CREATE INDEX runs_run_type_idx ON runs (run_type);
CREATE INDEX runs_session_id_idx ON runs (session_id);
CREATE INDEX runs_created_at_idx ON runs (created_at);

-- The per-run event log: gap-free seq from 1, hash-chained, one terminal event at most.
CREATE TABLE run_events (
    run_id         uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq            bigint NOT NULL CHECK (seq >= 1),
    type           text NOT NULL,
    payload        jsonb NOT NULL,
    epoch          bigint NOT NULL CHECK (epoch >= 0),
    schema_version smallint NOT NULL DEFAULT 1,
    terminal       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX run_events_one_terminal_idx ON run_events (run_id) WHERE terminal;
CREATE INDEX run_events_created_at_idx ON run_events (created_at);

-- A run's inputs, idempotent by the caller's frame_id, ordered by frame_seq.
CREATE TABLE run_frames (
    run_id     uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    frame_seq  bigint NOT NULL CHECK (frame_seq >= 1),
    frame_id   text NOT NULL,
    kind       text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, frame_seq),
    CONSTRAINT run_frames_run_id_frame_id_key UNIQUE (run_id, frame_id)
);

-- One lease row per run, kept across owners so the epoch only ever grows. Times come
-- from the database clock.
CREATE TABLE run_leases (
    run_id       uuid PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    owner_node   text NOT NULL,
    epoch        bigint NOT NULL CHECK (epoch >= 1),
    acquired_at  timestamptz NOT NULL,
    renewed_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    progress_seq bigint NOT NULL DEFAULT 0 CHECK (progress_seq >= 0)
);
CREATE INDEX run_leases_expires_at_idx ON run_leases (expires_at);
CREATE INDEX run_leases_owner_node_idx ON run_leases (owner_node);

-- Execution attempts, for retry policies and operators.
CREATE TABLE run_attempts (
    run_id        uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    attempt       integer NOT NULL CHECK (attempt >= 1),
    node_id       text NOT NULL,
    epoch         bigint NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    outcome       text CHECK (outcome IN ('succeeded', 'failed', 'canceled', 'timed_out', 'lost')),
    error_class   text,
    error_type    text,
    error_message text,
    PRIMARY KEY (run_id, attempt)
);
CREATE INDEX run_attempts_started_at_idx ON run_attempts (started_at);

-- Runs that exhausted their policy; an operator may replay them.
CREATE TABLE dead_letters (
    dead_letter_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    reason         text NOT NULL,
    error_class    text,
    error_message  text,
    attempts       integer NOT NULL CHECK (attempts >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at    timestamptz,
    replayed_by    text
);
-- At most one dead letter per run awaits replay.
CREATE UNIQUE INDEX dead_letters_open_run_idx ON dead_letters (run_id) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_created_at_idx ON dead_letters (created_at);

-- Scoped key/value memory with optimistic versions and a TTL on the database clock.
CREATE TABLE memory (
    scope_kind text NOT NULL CHECK (scope_kind IN ('run', 'session', 'user')),
    scope_id   text NOT NULL,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    version    bigint NOT NULL CHECK (version >= 1),
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_kind, scope_id, key)
);
CREATE INDEX memory_expires_at_idx ON memory (expires_at) WHERE expires_at IS NOT NULL;

-- Fenced, hash-chained append of a batch of events in one statement (one round trip).
-- The caller serialises every event canonically (orjson) and passes, per event, the
-- canonical bytes before and after the seq digits; this function allocates seqs from the
-- locked runs rows and chains hash = sha256(prev_hash || head || seq || tail). Appends are
-- checked one by one, in order: an unknown run, a terminal run or an epoch that differs
-- from the lease row's refuses that append alone and writes nothing for it.
-- Returns one row per append: outcome 'ok' | 'not_found' | 'terminal' | 'stale'.
CREATE FUNCTION warden_append_events(
    p_appends  integer[],  -- per event: index of the append it belongs to (ascending)
    p_run_ids  uuid[],
    p_epochs   bigint[],
    p_types    text[],
    p_payloads text[],     -- canonical JSON text
    p_heads    bytea[],
    p_tails    bytea[],
    p_statuses text[],     -- terminal status the event sets, or NULL
    p_version  smallint,   -- schema version stamped on every event
    p_channel  text        -- NOTIFY channel, or NULL to notify elsewhere
) RETURNS TABLE (append_index integer, outcome text, first_seq bigint, last_seq bigint,
                 current_epoch bigint, run_status text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids      uuid[];
    v_status   text[];
    v_seq      bigint[];
    v_hash     bytea[];
    v_epoch    bigint[];
    v_advanced boolean[];
    v_k        integer;
    v_append   integer := -1;
    v_ok       boolean := false;
    v_new_seq  bigint;
    v_new_hash bytea;
    v_notify   text;
    e_run uuid[] := '{}'; e_seq bigint[] := '{}'; e_type text[] := '{}';
    e_payload text[] := '{}'; e_epoch bigint[] := '{}'; e_terminal boolean[] := '{}';
    e_prev bytea[] := '{}'; e_hash bytea[] := '{}';
    r_index integer[] := '{}'; r_outcome text[] := '{}'; r_first bigint[] := '{}';
    r_last bigint[] := '{}'; r_epoch bigint[] := '{}'; r_status text[] := '{}';
BEGIN
    -- Lock the runs rows in run_id order (no deadlocks between batches). Lease acquire
    -- locks the same row first, so it waits for this transaction, and the next statement
    -- (a fresh snapshot under READ COMMITTED) sees any acquire that committed before.
    PERFORM 1 FROM runs WHERE run_id = ANY(p_run_ids) ORDER BY run_id FOR UPDATE;
    SELECT array_agg(r.run_id ORDER BY r.run_id), array_agg(r.status ORDER BY r.run_id),
           array_agg(r.last_seq ORDER BY r.run_id), array_agg(r.last_hash ORDER BY r.run_id),
           array_agg(l.epoch ORDER BY r.run_id), array_agg(false ORDER BY r.run_id)
      INTO v_ids, v_status, v_seq, v_hash, v_epoch, v_advanced
      FROM runs AS r LEFT JOIN run_leases AS l ON l.run_id = r.run_id
     WHERE r.run_id = ANY(p_run_ids);

    FOR i IN 1 .. coalesce(array_length(p_appends, 1), 0) LOOP
        v_k := array_position(v_ids, p_run_ids[i]);
        IF p_appends[i] <> v_append THEN
            v_append := p_appends[i];
            r_index := r_index || v_append;
            IF v_k IS NULL THEN
                r_outcome := r_outcome || 'not_found'::text;
            ELSIF v_status[v_k] IN ('succeeded', 'failed', 'canceled', 'timed_out') THEN
                r_outcome := r_outcome || 'terminal'::text;
            ELSIF v_epoch[v_k] IS DISTINCT FROM p_epochs[i] THEN
                r_outcome := r_outcome || 'stale'::text;
            ELSE
                r_outcome := r_outcome || 'ok'::text;
            END IF;
            v_ok := r_outcome[array_length(r_outcome, 1)] = 'ok';
            r_first := r_first || CASE WHEN v_ok THEN v_seq[v_k] + 1 END;
            r_last := r_last || NULL::bigint;
            r_epoch := r_epoch || CASE WHEN v_k IS NOT NULL THEN v_epoch[v_k] END;
            r_status := r_status || CASE WHEN v_k IS NOT NULL THEN v_status[v_k] END;
        END IF;
        IF v_ok THEN
            v_new_seq := v_seq[v_k] + 1;
            v_new_hash := sha256(v_hash[v_k] || p_heads[i]
                                 || convert_to(v_new_seq::text, 'UTF8') || p_tails[i]);
            e_run := e_run || p_run_ids[i];
            e_seq := e_seq || v_new_seq;
            e_type := e_type || p_types[i];
            e_payload := e_payload || p_payloads[i];
            e_epoch := e_epoch || p_epochs[i];
            e_terminal := e_terminal || (p_statuses[i] IS NOT NULL);
            e_prev := e_prev || v_hash[v_k];
            e_hash := e_hash || v_new_hash;
            v_seq[v_k] := v_new_seq;
            v_hash[v_k] := v_new_hash;
            v_advanced[v_k] := true;
            IF p_statuses[i] IS NOT NULL THEN
                v_status[v_k] := p_statuses[i];
            END IF;
            r_last[array_length(r_last, 1)] := v_new_seq;
            r_status[array_length(r_status, 1)] := v_status[v_k];
        END IF;
    END LOOP;

    IF array_length(e_run, 1) > 0 THEN
        INSERT INTO run_events (run_id, seq, type, payload, epoch, schema_version, terminal,
                                prev_hash, hash)
        SELECT u.r, u.s, u.t, u.p::jsonb, u.e, p_version, u.f, u.ph, u.h
          FROM unnest(e_run, e_seq, e_type, e_payload, e_epoch, e_terminal, e_prev, e_hash)
               AS u(r, s, t, p, e, f, ph, h);
        UPDATE runs AS r
           SET last_seq = u.s, last_hash = u.h, status = u.st, updated_at = now(),
               finished_at = CASE WHEN u.st <> r.status THEN now() ELSE r.finished_at END
          FROM unnest(v_ids, v_seq, v_hash, v_status, v_advanced) AS u(id, s, h, st, adv)
         WHERE u.adv AND r.run_id = u.id;
        IF p_channel IS NOT NULL THEN
            SELECT string_agg(u.id::text || ':' || u.s::text, ',') INTO v_notify
              FROM unnest(v_ids, v_seq, v_advanced) AS u(id, s, adv) WHERE u.adv;
            PERFORM pg_notify(p_channel, CASE WHEN length(v_notify) < 7900 THEN v_notify
                                              ELSE '*' END);
        END IF;
    END IF;

    RETURN QUERY SELECT * FROM unnest(r_index, r_outcome, r_first, r_last, r_epoch, r_status);
END;
$fn$;
