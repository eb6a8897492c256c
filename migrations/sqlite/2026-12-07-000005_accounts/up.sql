-- See the PostgreSQL migration.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT 1;

CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    expires_at BIGINT NOT NULL,
    UNIQUE (user_id, purpose)
);
