ALTER TABLE myapi.refresh_families DROP COLUMN client_id;
