-- A random value per user, replaced on every password change. Access tokens carry it,
-- so no token outlives a password change, and a database that is reset while the signing
-- key is kept never accepts an old token for a new user with the same id (a version
-- counter would start again at 0 and match).
ALTER TABLE myapi.users ADD COLUMN security_stamp TEXT NOT NULL DEFAULT gen_random_uuid()::text;
ALTER TABLE myapi.users ALTER COLUMN security_stamp DROP DEFAULT;
ALTER TABLE myapi.users DROP COLUMN token_version;
