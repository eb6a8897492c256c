-- myapi's tables live in their own schema, as in the seed.
CREATE SCHEMA IF NOT EXISTS myapi;

CREATE TABLE myapi.movies (
    movie_id   INTEGER PRIMARY KEY CHECK (movie_id > 0),
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    released   INTEGER NOT NULL CHECK (released BETWEEN 1800 AND 3000),
    -- NUMERIC(3,1) holds 0.0 ..= 10.0 (the seed's NUMERIC(2,1) cannot hold 10.0).
    rating     NUMERIC(3, 1) NOT NULL CHECK (rating >= 0 AND rating <= 10),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Serves `released >= ? AND rating >= ? ORDER BY movie_id`: the range scan on
-- (released, rating) returns movie_id and title from the index itself.
CREATE INDEX movies_released_rating_idx
    ON myapi.movies (released, rating) INCLUDE (movie_id, title);

CREATE TABLE myapi.users (
    user_id         SERIAL PRIMARY KEY,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email           TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    hashed_password TEXT NOT NULL,
    -- Bumped on every password change: tokens carrying an older version are revoked.
    token_version   INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Email is unique regardless of letter case.
CREATE UNIQUE INDEX users_email_lower_key ON myapi.users (lower(email));

CREATE FUNCTION myapi.touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER movies_touch_updated_at BEFORE UPDATE ON myapi.movies
    FOR EACH ROW EXECUTE FUNCTION myapi.touch_updated_at();
CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON myapi.users
    FOR EACH ROW EXECUTE FUNCTION myapi.touch_updated_at();
