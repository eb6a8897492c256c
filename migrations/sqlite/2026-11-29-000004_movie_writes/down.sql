CREATE TABLE movies_old (
    movie_id   INTEGER PRIMARY KEY CHECK (movie_id > 0),
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    released   INTEGER NOT NULL CHECK (released BETWEEN 1800 AND 3000),
    rating     NUMERIC NOT NULL CHECK (rating >= 0 AND rating <= 10),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO movies_old (movie_id, title, released, rating, created_at, updated_at)
    SELECT movie_id, title, released, rating, created_at, updated_at FROM movies;
DROP TABLE movies;
ALTER TABLE movies_old RENAME TO movies;

CREATE INDEX movies_released_rating_idx ON movies (released, rating, movie_id, title);
CREATE TRIGGER movies_touch_updated_at AFTER UPDATE ON movies
    FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
    BEGIN UPDATE movies SET updated_at = CURRENT_TIMESTAMP WHERE movie_id = NEW.movie_id; END;
