-- Movie writes over HTTP: a row version for ETags and If-Match, and the title rule the
-- service checks (no control characters) as a constraint too. Every new column has a
-- default, so an INSERT naming only movie_id, title, released and rating still works.
--
-- The version starts at a random value, so a movie deleted and re-created under the same
-- id never repeats an ETag a client may still hold; each update raises it (below).
ALTER TABLE myapi.movies
    ADD COLUMN version BIGINT NOT NULL
        DEFAULT (floor(random() * 4503599627370496) + 1)::bigint,
    -- Unicode Cc: U+0001..U+001F and U+007F..U+009F (PostgreSQL text cannot hold NUL).
    ADD CONSTRAINT movies_title_printable_check CHECK (title !~ '[\x01-\x1f\x7f-\x9f]');

-- Every UPDATE raises the version, whoever runs it: the API, `import-movies --on-existing
-- update`, or plain SQL. A statement that raises it itself keeps its value.
CREATE FUNCTION myapi.bump_movie_version() RETURNS trigger AS $$
BEGIN
    NEW.version = GREATEST(NEW.version, OLD.version + 1);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER movies_bump_version BEFORE UPDATE ON myapi.movies
    FOR EACH ROW EXECUTE FUNCTION myapi.bump_movie_version();
