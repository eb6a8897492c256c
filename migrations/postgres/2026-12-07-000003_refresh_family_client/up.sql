-- The OAuth client a login was made for (RFC 9068 `client_id`), kept with its refresh-token
-- family so that every access token the family refreshes to names the same client. Families
-- from before this column have '', read as `auth.default_client_id`.
ALTER TABLE myapi.refresh_families ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
