-- See the PostgreSQL migration.
CREATE TABLE audit_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              BIGINT NOT NULL,
    event           TEXT NOT NULL,
    actor           TEXT NOT NULL,
    subject_user_id INTEGER,
    subject         TEXT,
    client          TEXT,
    request_id      TEXT,
    count           INTEGER NOT NULL DEFAULT 1 CHECK (count > 0),
    detail          TEXT
);
CREATE INDEX audit_events_subject_user_idx ON audit_events (subject_user_id, id);
CREATE INDEX audit_events_event_idx ON audit_events (event, id);
CREATE INDEX audit_events_at_idx ON audit_events (at);
