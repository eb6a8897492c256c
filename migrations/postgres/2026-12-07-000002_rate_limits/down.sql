DROP FUNCTION myapi.rate_limit_lease(BYTEA, FLOAT8, FLOAT8, INTEGER);
DROP TABLE myapi.rate_limits;
