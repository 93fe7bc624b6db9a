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
