DROP TABLE IF EXISTS myapi.refresh_tokens;
DROP TABLE IF EXISTS myapi.refresh_families;
