DROP FUNCTION myapi.login_budget_charge_client(BYTEA, FLOAT8);
DROP FUNCTION myapi.login_budget_client_wait(BYTEA, FLOAT8, FLOAT8);
DROP FUNCTION myapi.login_budget_release(BYTEA, FLOAT8, BYTEA, FLOAT8, BYTEA, FLOAT8);
DROP FUNCTION myapi.login_budget_reserve(BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8);
DROP FUNCTION myapi.login_budget_lock(BYTEA, TIMESTAMPTZ);
DROP TABLE myapi.login_trusted_networks;
DROP TABLE myapi.login_budgets;
