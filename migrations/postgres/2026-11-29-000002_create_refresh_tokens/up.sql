-- Refresh tokens (RFC 6749 §6), one family per password login. A refresh marks its token
-- used and adds the next one to the family; presenting a used token again revokes the
-- whole family (RFC 9700 §4.14.2). Only a token's SHA-256 is stored. Times are Unix
-- seconds, the same on both backends.
CREATE TABLE myapi.refresh_families (
    family_id  TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES myapi.users (user_id) ON DELETE CASCADE,
    -- What the password grant granted; a refresh may only narrow it.
    scope      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user_idx ON myapi.refresh_families (user_id);

CREATE TABLE myapi.refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES myapi.refresh_families (family_id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family_idx ON myapi.refresh_tokens (family_id);
