-- See the PostgreSQL migration. SQLite cannot add a column with a per-row default, so
-- existing rows get their stamp in a second step.
ALTER TABLE users ADD COLUMN security_stamp TEXT NOT NULL DEFAULT '';
UPDATE users SET security_stamp = lower(hex(randomblob(16)));
ALTER TABLE users DROP COLUMN token_version;
