-- 0006_token_uses: token ids (JWT `jti`) spent by mutating gateway requests (DESIGN §10).
--
-- The gateway refuses a token whose jti was presented before on a mutating request; the
-- table is shared by every node of the cluster, so a token replayed against another node
-- is refused too. A row is kept until the token itself expires (`expires_at`, the token's
-- `exp`), after which the token is refused anyway and the janitor purges the row.

CREATE TABLE token_uses (
    jti        text        PRIMARY KEY CHECK (length(jti) BETWEEN 1 AND 200),
    subject    text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX token_uses_expires_at_idx ON token_uses (expires_at);
