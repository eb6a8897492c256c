ALTER TABLE refresh_families DROP COLUMN client_id;
