CREATE TABLE movies (
    movie_id   INTEGER PRIMARY KEY CHECK (movie_id > 0),
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    released   INTEGER NOT NULL CHECK (released BETWEEN 1800 AND 3000),
    -- SQLite stores NUMERIC as a binary float; the service rounds it back to one decimal.
    rating     NUMERIC NOT NULL CHECK (rating >= 0 AND rating <= 10),
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX movies_released_rating_idx ON movies (released, rating, movie_id, title);

CREATE TABLE users (
    user_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email           TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    hashed_password TEXT NOT NULL,
    token_version   INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TRIGGER movies_touch_updated_at AFTER UPDATE ON movies
    FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
    BEGIN UPDATE movies SET updated_at = CURRENT_TIMESTAMP WHERE movie_id = NEW.movie_id; END;
CREATE TRIGGER users_touch_updated_at AFTER UPDATE ON users
    FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
    BEGIN UPDATE users SET updated_at = CURRENT_TIMESTAMP WHERE user_id = NEW.user_id; END;
