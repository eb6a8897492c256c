DROP TABLE myapi.account_tokens;
ALTER TABLE myapi.users DROP COLUMN email_verified;
