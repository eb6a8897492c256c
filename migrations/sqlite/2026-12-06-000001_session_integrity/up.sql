-- Each refresh-token family is bound to the security stamp its user had when the family
-- started (see the PostgreSQL migration of the same name). Existing families take their
-- user's current stamp, so the upgrade logs nobody out.
ALTER TABLE refresh_families ADD COLUMN security_stamp TEXT NOT NULL DEFAULT '';
UPDATE refresh_families SET security_stamp = coalesce(
    (SELECT security_stamp FROM users WHERE users.user_id = refresh_families.user_id), '');

ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;
