ALTER TABLE myapi.users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE myapi.users DROP COLUMN security_stamp;
