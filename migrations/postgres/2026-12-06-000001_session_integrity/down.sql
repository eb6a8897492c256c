ALTER TABLE myapi.refresh_tokens DROP COLUMN successor_sealed;
ALTER TABLE myapi.refresh_tokens DROP COLUMN successor_hash;
ALTER TABLE myapi.refresh_families DROP COLUMN security_stamp;
