-- Leases for many buckets in one statement: each instance gathers the leases it takes ahead
-- of need for a few milliseconds and sends them together (crates/myapi-services/src/limits/),
-- so a fleet of busy callers costs the database a few statements a second, not one per
-- lease. The rule is the one of the `rate_limits` migration, which this moves here.
--
-- Rows are locked in key order, whatever order the keys come in, so two batches that share
-- buckets queue on each other and never deadlock; pruning comes last and skips locked rows,
-- so it never waits. Answers {granted, backlog} for each key in turn, in the order given.
CREATE FUNCTION myapi.rate_limit_lease_many(
    keys BYTEA[], steps FLOAT8[], bursts FLOAT8[], wants INTEGER[])
RETURNS FLOAT8[]
LANGUAGE plpgsql AS $$
DECLARE
    answer FLOAT8[] := array_fill(0::FLOAT8, ARRAY[2 * cardinality(keys)]);
    i INTEGER;
    found_full_at TIMESTAMPTZ;
    t TIMESTAMPTZ;
    backlog FLOAT8;
    granted INTEGER;
BEGIN
    IF cardinality(steps) <> cardinality(keys) OR cardinality(bursts) <> cardinality(keys)
            OR cardinality(wants) <> cardinality(keys) THEN
        RAISE EXCEPTION 'rate_limit_lease_many: the four arrays differ in length';
    END IF;
    FOR i IN SELECT n FROM generate_subscripts(keys, 1) AS n ORDER BY keys[n] LOOP
        LOOP
            SELECT full_at INTO found_full_at FROM myapi.rate_limits
                WHERE key = keys[i] FOR UPDATE;
            EXIT WHEN FOUND;
            -- Waits for a concurrent insert of the same key; the next SELECT then sees it.
            INSERT INTO myapi.rate_limits (key, full_at) VALUES (keys[i], clock_timestamp())
                ON CONFLICT (key) DO NOTHING;
        END LOOP;
        -- The clock after the lock: a lease that queued behind others must not use the
        -- time its statement began.
        t := clock_timestamp();
        backlog := greatest(extract(epoch FROM found_full_at - t), 0);
        -- The epsilon keeps a float's last bit from losing a whole request.
        granted := least(wants[i],
            greatest(floor((bursts[i] * steps[i] - backlog) / steps[i] + 1e-9), 0))::INTEGER;
        backlog := backlog + granted * steps[i];
        IF granted > 0 THEN
            UPDATE myapi.rate_limits SET full_at = t + make_interval(secs => backlog)
                WHERE key = keys[i];
        END IF;
        answer[2 * i - 1] := granted;
        answer[2 * i] := backlog;
    END LOOP;
    -- One lease in 16 deletes spent rows among the 32 from a random key of its own kind.
    t := clock_timestamp();
    FOR i IN 1 .. cardinality(keys) LOOP
        CONTINUE WHEN random() >= 0.0625;
        DELETE FROM myapi.rate_limits WHERE key IN (
            SELECT key FROM myapi.rate_limits
            WHERE key = ANY (ARRAY(
                    SELECT key FROM myapi.rate_limits
                    WHERE key >= substring(keys[i] FROM 1 FOR 3) || decode(md5(random()::text), 'hex')
                    ORDER BY key LIMIT 32))
              AND full_at < t AND key <> ALL (keys)
            FOR UPDATE SKIP LOCKED);
    END LOOP;
    RETURN answer;
END $$;

-- Instances of the previous release call this during a rolling deploy.
CREATE OR REPLACE FUNCTION myapi.rate_limit_lease(k BYTEA, step FLOAT8, burst FLOAT8, want INTEGER)
RETURNS FLOAT8[]
LANGUAGE sql AS $$
    SELECT myapi.rate_limit_lease_many(ARRAY[k], ARRAY[step], ARRAY[burst], ARRAY[want]);
$$;
