-- The request limits every instance on this database shares (see
-- crates/myapi-services/src/limits/): one bucket per caller and class. UNLOGGED: none of it
-- is worth a WAL write, and a crash or a failover that empties the table only refills the
-- buckets. Instances take requests from a bucket in leases, one call of the function below
-- each, timed by the database clock so that instances agree.
--
-- A bucket is stored as the time it will be full again (GCRA): with `step` seconds per
-- request it holds floor((burst * step - max(full_at - t, 0)) / step) requests at time t,
-- and a lease of n moves full_at to max(full_at, t) + n * step. A row whose full_at has
-- passed counts as no row; one lease in 16 deletes such rows among the 32 from a random key
-- of its own kind on (same class, caller kind and first byte: user ids or network prefix
-- length), so stale rows stay a small fraction of the table. Only the key is indexed and pages keep
-- room, so updates stay HOT.
CREATE UNLOGGED TABLE myapi.rate_limits (
    -- The class ('r' or 'w'), then 'u' || user id, or 'n' || prefix length || network.
    key     BYTEA PRIMARY KEY,
    full_at TIMESTAMPTZ NOT NULL
) WITH (fillfactor = 50);

-- Takes up to `want` requests from bucket `k` and returns {granted, backlog}: what it
-- granted (0 when the bucket is empty) and the seconds until the bucket is full again.
CREATE FUNCTION myapi.rate_limit_lease(k BYTEA, step FLOAT8, burst FLOAT8, want INTEGER)
RETURNS FLOAT8[]
LANGUAGE plpgsql AS $$
DECLARE
    found_full_at TIMESTAMPTZ;
    t TIMESTAMPTZ;
    backlog FLOAT8;
    granted INTEGER;
BEGIN
    LOOP
        SELECT full_at INTO found_full_at FROM myapi.rate_limits WHERE key = k FOR UPDATE;
        EXIT WHEN FOUND;
        -- Waits for a concurrent insert of the same key; the next SELECT then sees it.
        INSERT INTO myapi.rate_limits (key, full_at) VALUES (k, clock_timestamp())
            ON CONFLICT (key) DO NOTHING;
    END LOOP;
    -- The clock after the lock: a lease that queued behind others must not use the time
    -- its statement began.
    t := clock_timestamp();
    backlog := greatest(extract(epoch FROM found_full_at - t), 0);
    -- The epsilon keeps a float's last bit from losing a whole request.
    granted := least(want, greatest(floor((burst * step - backlog) / step + 1e-9), 0))::INTEGER;
    backlog := backlog + granted * step;
    IF granted > 0 THEN
        UPDATE myapi.rate_limits SET full_at = t + make_interval(secs => backlog) WHERE key = k;
    END IF;
    -- Pruning skips rows others hold, so it never waits (nor deadlocks).
    IF random() < 0.0625 THEN
        DELETE FROM myapi.rate_limits WHERE key IN (
            SELECT key FROM myapi.rate_limits
            WHERE key = ANY (ARRAY(
                    SELECT key FROM myapi.rate_limits
                    WHERE key >= substring(k FROM 1 FOR 3) || decode(md5(random()::text), 'hex')
                    ORDER BY key LIMIT 32))
              AND full_at < t AND key <> k
            FOR UPDATE SKIP LOCKED);
    END IF;
    RETURN ARRAY[granted, backlog];
END $$;
