-- The mail outbox: each mail is a row, written in the transaction that made what it
-- carries (a verification or reset token), so a mail is never lost once that commits. A
-- sender in each instance claims due rows for `mail.lease_secs` (`claimed_until`), sends
-- outside the claiming transaction and marks them sent; see crates/myapi-services/src/mail.rs.
-- Times are Unix seconds.
CREATE TABLE myapi.mail_outbox (
    -- The mail's `Message-ID`, kept across retries, so a receiver can drop a duplicate.
    message_id      TEXT PRIMARY KEY,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    -- Plain text. It may hold a live single-use token: never logged from here.
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    -- When the next attempt may start (backoff after a failure).
    next_attempt_at BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- A sender's lease: no other sender takes the row before this.
    claimed_until   BIGINT,
    sent_at         BIGINT,
    -- Set when `mail.max_attempts` ran out; the reason is `last_error`.
    failed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due_idx ON myapi.mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
