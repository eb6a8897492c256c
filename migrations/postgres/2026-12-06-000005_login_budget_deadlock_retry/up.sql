-- A login budget step that PostgreSQL picks as a deadlock's victim is retried, inside the
-- database, instead of failing the login with 503. Steps lock an account's bucket before a
-- client's and take no other lock they would wait for, yet CI once saw a release fail with
-- "deadlock detected" under eight racing instances; its cycle was not captured and did not
-- recur in hundreds of runs. Each attempt runs in its own subtransaction, so a victim's
-- locks go at once (which lets the other side finish) and its writes are undone before the
-- retry, which comes after a pause of 50 ms, then 100 ms. Three attempts; a third
-- deadlock is raised. Each retry is logged by the server with the cycle PostgreSQL found
-- (the error's DETAIL), which the caught error would lose.
--
-- The bodies keep their code under a new name and the callers' names become the retrying
-- wrappers, so instances of the previous release get the retry as well.
ALTER FUNCTION myapi.login_budget_reserve_v2(BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8, FLOAT8, BYTEA, FLOAT8)
    RENAME TO login_budget_reserve_v2_attempt;
ALTER FUNCTION myapi.login_budget_release(BYTEA, FLOAT8, BYTEA, FLOAT8, BYTEA, FLOAT8)
    RENAME TO login_budget_release_attempt;

CREATE FUNCTION myapi.login_budget_reserve_v2(
    account_key BYTEA, account_burst FLOAT8, account_leak FLOAT8,
    client_key BYTEA, client_burst FLOAT8, client_leak FLOAT8,
    stamp BYTEA, trusted_secs FLOAT8
) RETURNS FLOAT8
LANGUAGE plpgsql AS $$
DECLARE
    -- The processes and locks of the cycle, for the server log.
    cycle TEXT;
BEGIN
    FOR attempt IN 1..3 LOOP
        BEGIN
            RETURN myapi.login_budget_reserve_v2_attempt($1, $2, $3, $4, $5, $6, $7, $8);
        EXCEPTION WHEN deadlock_detected THEN
            IF attempt = 3 THEN
                RAISE;
            END IF;
            GET STACKED DIAGNOSTICS cycle = PG_EXCEPTION_DETAIL;
            RAISE LOG 'login budget reservation retried after a deadlock: %', cycle;
            -- A moment for the transaction that won to take the lock it waited for: an
            -- immediate retry takes it back first and meets it in the same cycle.
            PERFORM pg_sleep(0.05 * attempt);
        END;
    END LOOP;
END $$;

CREATE FUNCTION myapi.login_budget_release(
    account_key BYTEA, account_leak FLOAT8,
    client_key BYTEA, client_leak FLOAT8,
    stamp BYTEA, trusted_secs FLOAT8
) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    -- The processes and locks of the cycle, for the server log.
    cycle TEXT;
BEGIN
    FOR attempt IN 1..3 LOOP
        BEGIN
            RETURN myapi.login_budget_release_attempt($1, $2, $3, $4, $5, $6);
        EXCEPTION WHEN deadlock_detected THEN
            IF attempt = 3 THEN
                RAISE;
            END IF;
            GET STACKED DIAGNOSTICS cycle = PG_EXCEPTION_DETAIL;
            RAISE LOG 'login budget release retried after a deadlock: %', cycle;
            -- A moment for the transaction that won to take the lock it waited for: an
            -- immediate retry takes it back first and meets it in the same cycle.
            PERFORM pg_sleep(0.05 * attempt);
        END;
    END LOOP;
END $$;
