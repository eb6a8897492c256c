-- The login budget every instance on this database shares (see
-- crates/myapi-services/src/auth/postgres_budget.rs): leaky buckets of failed logins per
-- client network and per account, and the client networks trusted to pass a throttled
-- account. UNLOGGED: none of it is worth a WAL write, and a crash that empties the tables
-- only resets the budgets. Each step of a login is one statement, a call of one of the
-- functions below, timed by the database clock so that instances agree.
--
-- A bucket is stored as the time it will have leaked empty (GCRA): with `leak` seconds per
-- failure, its level at time t is max(empty_at - t, 0) / leak; a failure moves empty_at to
-- max(empty_at, t) + leak, and a refund moves it back. A row whose empty_at has passed
-- counts as no row; each reservation looks at 32 rows from a random key on and deletes
-- those that leaked empty (pruning), so stale rows stay a small fraction of the table.
-- Nothing but the key is indexed, and pages keep room, so updates stay HOT: a key hammered
-- by every login (one proxy's address, one attacker) does not bloat an index.
CREATE UNLOGGED TABLE myapi.login_budgets (
    -- 'a' || 16-byte account digest, or 'c' || prefix length || network address. Steps
    -- lock an account row before a client row ('a' < 'c'), so two steps never deadlock.
    key      BYTEA PRIMARY KEY,
    empty_at TIMESTAMPTZ NOT NULL
) WITH (fillfactor = 50);

-- A client network that logged in to an account, keyed by a digest of the account's
-- security stamp: a password change (a new stamp) forgets them all.
CREATE UNLOGGED TABLE myapi.login_trusted_networks (
    stamp_digest BYTEA NOT NULL,
    network      BYTEA NOT NULL,
    since        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (stamp_digest, network)
);
CREATE INDEX login_trusted_networks_since_idx ON myapi.login_trusted_networks (since);

-- Locks bucket `k`, creating it empty at `t` when missing, and returns its empty_at.
CREATE FUNCTION myapi.login_budget_lock(k BYTEA, t TIMESTAMPTZ) RETURNS TIMESTAMPTZ
LANGUAGE plpgsql AS $$
DECLARE
    found_empty_at TIMESTAMPTZ;
BEGIN
    LOOP
        SELECT empty_at INTO found_empty_at FROM myapi.login_budgets WHERE key = k FOR UPDATE;
        IF FOUND THEN
            RETURN found_empty_at;
        END IF;
        -- Waits for a concurrent insert of the same key; the next SELECT then sees it.
        INSERT INTO myapi.login_budgets (key, empty_at) VALUES (k, t) ON CONFLICT (key) DO NOTHING;
    END LOOP;
END $$;

-- Reserves one failure against the account and the client network, both or neither, and
-- returns NULL; or returns the seconds to wait. A full client budget refuses; a full
-- account budget refuses unless `stamp` (the account's current security stamp's digest)
-- trusts `client_key` since less than `trusted_secs`. Both rows stay locked until the
-- statement ends, so concurrent reservations (from any instance) queue and cannot
-- over-admit. Prunes: see the table.
CREATE FUNCTION myapi.login_budget_reserve(
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
    account_wait := extract(epoch FROM greatest(account_empty_at, t) - t)
        + account_leak * (1 - account_burst);
    IF account_wait > 0 AND NOT EXISTS (
        SELECT 1 FROM myapi.login_trusted_networks
        WHERE stamp_digest = stamp AND network = client_key
          AND since > t - trusted_secs * interval '1 second')
    THEN
        RETURN account_wait;
    END IF;
    UPDATE myapi.login_budgets
    SET empty_at = greatest(empty_at, t) + account_leak * interval '1 second'
    WHERE key = account_key;
    UPDATE myapi.login_budgets
    SET empty_at = greatest(empty_at, t) + client_leak * interval '1 second'
    WHERE key = client_key;
    RETURN NULL;
END $$;

-- Gives a reservation back and returns how many buckets it found (0 to 2; a bucket that
-- leaked empty may have been pruned). With `stamp`, the password matched: the client
-- network is trusted for the account from now (refreshed at most daily), and up to 16
-- trusts older than `trusted_secs` go.
CREATE FUNCTION myapi.login_budget_release(
    account_key BYTEA, account_leak FLOAT8,
    client_key BYTEA, client_leak FLOAT8,
    stamp BYTEA, trusted_secs FLOAT8
) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    t TIMESTAMPTZ := now();
    refunded INTEGER := 0;
    n INTEGER;
BEGIN
    UPDATE myapi.login_budgets
    SET empty_at = greatest(empty_at - account_leak * interval '1 second', t)
    WHERE key = account_key;
    GET DIAGNOSTICS refunded = ROW_COUNT;
    UPDATE myapi.login_budgets
    SET empty_at = greatest(empty_at - client_leak * interval '1 second', t)
    WHERE key = client_key;
    GET DIAGNOSTICS n = ROW_COUNT;
    refunded := refunded + n;
    -- A daily refresh is enough for a 30-day trust, and spares most logins a write.
    IF stamp IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM myapi.login_trusted_networks
        WHERE stamp_digest = stamp AND network = client_key AND since > t - interval '1 day')
    THEN
        INSERT INTO myapi.login_trusted_networks (stamp_digest, network, since)
        VALUES (stamp, client_key, t)
        ON CONFLICT (stamp_digest, network) DO UPDATE SET since = excluded.since;
        DELETE FROM myapi.login_trusted_networks WHERE (stamp_digest, network) IN (
            SELECT stamp_digest, network FROM myapi.login_trusted_networks
            WHERE since < t - trusted_secs * interval '1 second'
            ORDER BY since LIMIT 16 FOR UPDATE SKIP LOCKED);
    END IF;
    RETURN refunded;
END $$;

-- (PL/pgSQL rather than SQL functions: PostgreSQL keeps their plans per connection.)

-- Seconds the client network `k` must wait, if positive: (level + 1 - burst) * leak. NULL
-- when it has no bucket.
CREATE FUNCTION myapi.login_budget_client_wait(k BYTEA, burst FLOAT8, leak FLOAT8)
RETURNS FLOAT8
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT extract(epoch FROM greatest(empty_at, now()) - now())::float8
                   + leak * (1 - burst)
            FROM myapi.login_budgets WHERE key = k);
END $$;

-- Charges one failure to the client network `k` alone (a bad refresh or revocation token)
-- and returns its level after the charge.
CREATE FUNCTION myapi.login_budget_charge_client(k BYTEA, leak FLOAT8) RETURNS FLOAT8
LANGUAGE plpgsql AS $$
DECLARE
    level FLOAT8;
BEGIN
    INSERT INTO myapi.login_budgets AS b (key, empty_at)
    VALUES (k, now() + leak * interval '1 second')
    ON CONFLICT (key) DO UPDATE
    SET empty_at = greatest(b.empty_at, now()) + leak * interval '1 second'
    RETURNING extract(epoch FROM b.empty_at - now())::float8 / leak INTO level;
    RETURN level;
END $$;
