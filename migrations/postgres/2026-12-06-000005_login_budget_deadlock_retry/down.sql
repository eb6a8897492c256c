DROP FUNCTION myapi.login_budget_reserve_v2(BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8);
DROP FUNCTION myapi.login_budget_release(BYTEA, FLOAT8, BYTEA, FLOAT8, BYTEA, FLOAT8);
ALTER FUNCTION myapi.login_budget_reserve_v2_attempt(BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8)
    RENAME TO login_budget_reserve_v2;
ALTER FUNCTION myapi.login_budget_release_attempt(BYTEA, FLOAT8, BYTEA, FLOAT8, BYTEA, FLOAT8)
    RENAME TO login_budget_release;
