-- Idempotency keys (draft-ietf-httpapi-idempotency-key-header-07): the answer to a keyed
-- request, stored in the transaction that did its work, so every instance replays it to
-- a repeat. See crates/myapi-services/src/idempotency. `created_at` is Unix seconds; a row
-- older than `idempotency.retention_hours` counts as absent, and `myapi-cli
-- purge-idempotency-keys` deletes it. A logged table: a stored answer survives a crash.
CREATE TABLE myapi.idempotency_keys (
    -- The caller's user id: keys are per caller.
    caller          TEXT NOT NULL,
    -- The route the key was sent to, such as `POST /movies/`.
    operation       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- SHA-256 of the request body, hex: a repeat must send the same body.
    fingerprint     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    status          SMALLINT NOT NULL,
    location        TEXT,
    etag            TEXT,
    body            TEXT NOT NULL,
    PRIMARY KEY (caller, operation, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at_idx ON myapi.idempotency_keys (created_at);
