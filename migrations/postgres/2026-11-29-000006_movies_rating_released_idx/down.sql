DROP INDEX myapi.movies_rating_released_idx;
