DROP TRIGGER movies_truncated ON myapi.movies;
DROP TRIGGER movies_deleted ON myapi.movies;
DROP TRIGGER movies_updated ON myapi.movies;
DROP TRIGGER movies_inserted ON myapi.movies;
DROP TRIGGER movies_changing ON myapi.movies;
DROP FUNCTION myapi.movies_changed();
DROP FUNCTION myapi.movies_changing();
DROP TABLE myapi.movie_changes;
