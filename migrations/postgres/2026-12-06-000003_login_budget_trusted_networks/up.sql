-- login_budget_reserve, except that a client network trusted for an account (it logged in
-- under the account's current security stamp) is charged its own failures only, never the
-- account's: a device at home retrying a stale password must not lock the account for
-- everyone else. Its own bucket still bounds its guessing. Returns NULL when both buckets
-- were charged, 0 when only the client's was (trusted), or else the seconds to wait.
-- A new name, so instances of the previous release keep calling the old function during
-- a rolling upgrade; a later migration can drop that one.
CREATE FUNCTION myapi.login_budget_reserve_v2(
    account_key BYTEA, account_burst FLOAT8, account_leak FLOAT8,
    client_key BYTEA, client_burst FLOAT8, client_leak FLOAT8,
    stamp BYTEA, trusted_secs FLOAT8
) RETURNS FLOAT8
LANGUAGE plpgsql AS $$
DECLARE
    t TIMESTAMPTZ := now();
    account_empty_at TIMESTAMPTZ;
    client_empty_at TIMESTAMPTZ;
    -- (level + 1 - burst) * leak: positive when one more failure is over the burst.
    account_wait FLOAT8;
    client_wait FLOAT8;
    trusted BOOLEAN;
BEGIN
    account_empty_at := myapi.login_budget_lock(account_key, t);
    client_empty_at := myapi.login_budget_lock(client_key, t);
    -- Pruning skips rows others hold, so it never waits (nor deadlocks).
    DELETE FROM myapi.login_budgets WHERE key IN (
        SELECT key FROM myapi.login_budgets
        WHERE key = ANY (ARRAY(
                SELECT key FROM myapi.login_budgets
                WHERE key >= decode(CASE WHEN random() < 0.5 THEN '61' ELSE '63' END
                                    || md5(random()::text), 'hex')
                ORDER BY key LIMIT 32))
          AND empty_at < t AND key <> account_key AND key <> client_key
        FOR UPDATE SKIP LOCKED);
    client_wait := extract(epoch FROM greatest(client_empty_at, t) - t)
        + client_leak * (1 - client_burst);
    IF client_wait > 0 THEN
        RETURN client_wait;
    END IF;
    trusted := stamp IS NOT NULL AND EXISTS (
        SELECT 1 FROM myapi.login_trusted_networks
        WHERE stamp_digest = stamp AND network = client_key
          AND since > t - trusted_secs * interval '1 second');
    account_wait := extract(epoch FROM greatest(account_empty_at, t) - t)
        + account_leak * (1 - account_burst);
    IF account_wait > 0 AND NOT trusted THEN
        RETURN account_wait;
    END IF;
    IF NOT trusted THEN
        UPDATE myapi.login_budgets
        SET empty_at = greatest(empty_at, t) + account_leak * interval '1 second'
        WHERE key = account_key;
    END IF;
    UPDATE myapi.login_budgets
    SET empty_at = greatest(empty_at, t) + client_leak * interval '1 second'
    WHERE key = client_key;
    RETURN CASE WHEN trusted THEN 0 END;
END $$;
