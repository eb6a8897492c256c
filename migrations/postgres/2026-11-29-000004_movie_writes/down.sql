DROP TRIGGER movies_bump_version ON myapi.movies;
DROP FUNCTION myapi.bump_movie_version();
ALTER TABLE myapi.movies
    DROP CONSTRAINT movies_title_printable_check,
    DROP COLUMN version;
