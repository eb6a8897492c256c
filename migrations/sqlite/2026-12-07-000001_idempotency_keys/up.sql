-- See the PostgreSQL migration.
CREATE TABLE idempotency_keys (
    caller          TEXT NOT NULL,
    operation       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    status          SMALLINT NOT NULL,
    location        TEXT,
    etag            TEXT,
    body            TEXT NOT NULL,
    PRIMARY KEY (caller, operation, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
