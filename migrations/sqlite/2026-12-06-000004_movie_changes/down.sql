DROP TRIGGER movies_deleted;
DROP TRIGGER movies_updated;
DROP TRIGGER movies_inserted;
DROP TABLE movie_changes;
