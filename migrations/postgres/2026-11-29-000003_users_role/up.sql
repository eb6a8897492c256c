-- What a user may do: a reader reads, an editor also writes movies, an admin does all.
-- The scopes a token carries are narrowed to what the current role allows.
ALTER TABLE myapi.users ADD COLUMN role TEXT NOT NULL DEFAULT 'reader'
    CHECK (role IN ('reader', 'editor', 'admin'));
