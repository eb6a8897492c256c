ALTER TABLE refresh_tokens DROP COLUMN successor_sealed;
ALTER TABLE refresh_tokens DROP COLUMN successor_hash;
ALTER TABLE refresh_families DROP COLUMN security_stamp;
