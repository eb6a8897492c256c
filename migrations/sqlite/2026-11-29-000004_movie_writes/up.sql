-- See the PostgreSQL migration. SQLite cannot add constraints to a table, so the table is
-- rebuilt (https://sqlite.org/lang_altertable.html#otheralter); nothing references it.
-- The constraints are named `movies_<column>_…` so a violation names its field.
CREATE TABLE movies_new (
    -- A rowid alias: an INSERT without an id takes the largest plus one. The upper bound
    -- is PostgreSQL's INTEGER, which the service reads ids as.
    movie_id   INTEGER PRIMARY KEY
               CONSTRAINT movies_movie_id_check CHECK (movie_id BETWEEN 1 AND 2147483647),
    title      TEXT NOT NULL
               CONSTRAINT movies_title_check CHECK (length(title) BETWEEN 1 AND 500)
               -- Unicode Cc: U+0000..U+001F and U+007F..U+009F (length() stops at a NUL).
               CONSTRAINT movies_title_printable_check CHECK (
                   title NOT GLOB ('*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*')
                   AND instr(CAST(title AS BLOB), x'00') = 0),
    released   INTEGER NOT NULL
               CONSTRAINT movies_released_check CHECK (released BETWEEN 1800 AND 3000),
    -- NUMERIC is a binary float here: "one decimal" is checked with a tolerance.
    rating     NUMERIC NOT NULL
               CONSTRAINT movies_rating_check CHECK (
                   rating >= 0 AND rating <= 10
                   AND abs(rating * 10 - round(rating * 10)) < 0.000001),
    version    INTEGER NOT NULL DEFAULT (abs(random() % 4503599627370496) + 1),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO movies_new (movie_id, title, released, rating, created_at, updated_at)
    SELECT movie_id, title, released, rating, created_at, updated_at FROM movies;
DROP TABLE movies;
ALTER TABLE movies_new RENAME TO movies;

CREATE INDEX movies_released_rating_idx ON movies (released, rating, movie_id, title);

-- Replaces movies_touch_updated_at (dropped with the old table): one AFTER UPDATE trigger
-- raises the version and touches updated_at, unless the statement did so itself. Two
-- triggers would fire each other and raise the version twice (recursive_triggers is off,
-- so this one's own UPDATE does not fire it again).
CREATE TRIGGER movies_bump_version AFTER UPDATE ON movies
    FOR EACH ROW WHEN NEW.version <= OLD.version OR NEW.updated_at = OLD.updated_at
    BEGIN
        UPDATE movies
        SET version = max(NEW.version, OLD.version + 1),
            updated_at = CASE WHEN NEW.updated_at = OLD.updated_at
                              THEN CURRENT_TIMESTAMP ELSE NEW.updated_at END
        WHERE movie_id = NEW.movie_id;
    END;
