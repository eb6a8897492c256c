ALTER TABLE myapi.users DROP COLUMN role;
