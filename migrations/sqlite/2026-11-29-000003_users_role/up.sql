-- See the PostgreSQL migration.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'reader'
    CHECK (role IN ('reader', 'editor', 'admin'));
