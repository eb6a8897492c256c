DROP FUNCTION myapi.rate_limit_lease(BYTEA, FLOAT8, FLOAT8, INTEGER);
DROP FUNCTION myapi.rate_limit_lease_many(BYTEA[], FLOAT8[], FLOAT8[], INTEGER[]);
-- The function as the rate_limits migration made it.
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
