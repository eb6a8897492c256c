-- Every committed change to myapi.movies, by anyone (the API on any instance,
-- `myapi-cli import-movies`, plain SQL), raises one counter and sends a notification, so
-- each instance's read cache can drop what changed (myapi-services movies::cache).
--
-- The counter is the listings' ETag: a conditional GET compares it without reading rows.
-- It starts at a random value, so a restored or rebuilt database never repeats a tag a
-- client may still hold.
CREATE TABLE myapi.movie_changes (
    only_row   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    generation BIGINT NOT NULL
);
INSERT INTO myapi.movie_changes (generation)
    VALUES ((floor(random() * 4503599627370496) + 1)::bigint);

-- Before any row: every writing statement locks the counter first. Taken after the rows
-- instead, two transactions that each changed a movie and then wanted the other's would
-- deadlock on it. So writes to movies commit one at a time, each holding the counter's row
-- until its transaction ends.
CREATE FUNCTION myapi.movies_changing() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM myapi.movie_changes FOR UPDATE;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- On channel `myapi_movies`, the JSON
-- {"generation": N, "at": <clock_timestamp() in Unix seconds>, "ids": [ids] or null}.
-- `ids` names the changed movies (old and new ids of an UPDATE) when there are at most
-- 100 of them; null means "any movie may have changed" (a bulk statement, TRUNCATE).
-- pg_notify is transactional: what a transaction sends goes out at its commit, or never.
--
-- At most two messages per transaction, whatever its number of statements: its first
-- changing statement names its ids, a second one says "any", later ones send nothing (the
-- transaction-local setting `myapi.movies_notified` remembers). A transaction about to run
-- many statements (`import-movies`) sets it to 'ids' first, and sends exactly one "any".
CREATE FUNCTION myapi.movies_changed() RETURNS trigger AS $$
DECLARE
    notified TEXT := coalesce(current_setting('myapi.movies_notified', true), '');
    changed BIGINT;
    ids JSON;
    generation BIGINT;
BEGIN
    IF notified = 'all' THEN
        RETURN NULL;
    ELSIF TG_OP = 'TRUNCATE' THEN
        changed := -1;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO changed FROM new_rows;
        IF changed <= 100 AND notified = '' THEN
            SELECT json_agg(movie_id) INTO ids FROM new_rows;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO changed FROM old_rows;
        IF changed <= 100 AND notified = '' THEN
            SELECT json_agg(movie_id) INTO ids FROM old_rows;
        END IF;
    ELSE
        SELECT count(*) INTO changed FROM new_rows;
        IF changed <= 50 AND notified = '' THEN
            SELECT json_agg(DISTINCT movie_id) INTO ids
                FROM (SELECT movie_id FROM new_rows UNION SELECT movie_id FROM old_rows) AS both_rows;
        END IF;
    END IF;
    IF changed = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('myapi.movies_notified', CASE WHEN ids IS NULL THEN 'all' ELSE 'ids' END, true);
    UPDATE myapi.movie_changes SET generation = movie_changes.generation + 1
        RETURNING movie_changes.generation INTO generation;
    PERFORM pg_notify('myapi_movies', json_build_object(
        'generation', generation,
        'at', extract(epoch FROM clock_timestamp()),
        'ids', ids)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER movies_changing BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON myapi.movies
    FOR EACH STATEMENT EXECUTE FUNCTION myapi.movies_changing();
-- A trigger with transition tables takes one event (a PostgreSQL rule), hence four.
CREATE TRIGGER movies_inserted AFTER INSERT ON myapi.movies
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION myapi.movies_changed();
CREATE TRIGGER movies_updated AFTER UPDATE ON myapi.movies
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION myapi.movies_changed();
CREATE TRIGGER movies_deleted AFTER DELETE ON myapi.movies
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION myapi.movies_changed();
CREATE TRIGGER movies_truncated AFTER TRUNCATE ON myapi.movies
    FOR EACH STATEMENT EXECUTE FUNCTION myapi.movies_changed();
