-- The OAuth client a login was made for (see the PostgreSQL migration of the same name).
ALTER TABLE refresh_families ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
