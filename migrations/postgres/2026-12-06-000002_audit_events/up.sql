-- The audit trail: one row per security-relevant event, written in the transaction of the
-- change it records (see crates/myapi-services/src/audit). No foreign key to users: a
-- deleted user's trail stays. `id` is the paging cursor; `at` is Unix seconds, as in the
-- session tables. Throttled answers are counted, one row per client network and minute,
-- with `count` saying how many.
CREATE TABLE myapi.audit_events (
    id              BIGSERIAL PRIMARY KEY,
    at              BIGINT NOT NULL,
    event           TEXT NOT NULL,
    -- The acting user's id, `cli` or `anonymous`.
    actor           TEXT NOT NULL,
    subject_user_id INTEGER,
    -- The subject's email, or `sha256:` and a digest prefix of a username no account has.
    subject         TEXT,
    -- The resolved client address (or network, for throttled answers).
    client          TEXT,
    request_id      TEXT,
    count           INTEGER NOT NULL DEFAULT 1 CHECK (count > 0),
    detail          TEXT
);
CREATE INDEX audit_events_subject_user_idx ON myapi.audit_events (subject_user_id, id);
CREATE INDEX audit_events_event_idx ON myapi.audit_events (event, id);
CREATE INDEX audit_events_at_idx ON myapi.audit_events (at);
