-- Accounts people run themselves (README: Accounts). Every account made before this
-- release was made by an operator and counts as verified, so the upgrade locks nobody out;
-- a sign-up is unverified until its mail's token comes back.
ALTER TABLE myapi.users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT TRUE;

-- Single-use tokens that mails carry: only their SHA-256 is stored, one per user and
-- purpose (a new one replaces the old), deleted when used. Times are Unix seconds.
CREATE TABLE myapi.account_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES myapi.users (user_id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    expires_at BIGINT NOT NULL,
    UNIQUE (user_id, purpose)
);
