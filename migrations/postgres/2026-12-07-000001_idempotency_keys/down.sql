DROP TABLE IF EXISTS myapi.idempotency_keys;
