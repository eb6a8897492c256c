-- See the PostgreSQL migration: a counter every change to movies raises, the listings'
-- ETag. SQLite has no notifications (the server watches `PRAGMA data_version` instead) and
-- only row triggers, so each changed row raises it.
CREATE TABLE movie_changes (
    only_row   INTEGER PRIMARY KEY CHECK (only_row = 1),
    generation INTEGER NOT NULL
);
INSERT INTO movie_changes (only_row, generation) VALUES (1, abs(random() % 4503599627370496) + 1);

CREATE TRIGGER movies_inserted AFTER INSERT ON movies
    BEGIN UPDATE movie_changes SET generation = generation + 1; END;
CREATE TRIGGER movies_updated AFTER UPDATE ON movies
    BEGIN UPDATE movie_changes SET generation = generation + 1; END;
CREATE TRIGGER movies_deleted AFTER DELETE ON movies
    BEGIN UPDATE movie_changes SET generation = generation + 1; END;
