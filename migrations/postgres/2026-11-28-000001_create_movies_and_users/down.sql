DROP TABLE IF EXISTS myapi.users;
DROP TABLE IF EXISTS myapi.movies;
DROP FUNCTION IF EXISTS myapi.touch_updated_at();
