//! The `movies` scope: look-ups and the "new and good" listing, all behind the bearer guard.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use myapi_schemas::{MovieSchema, Problem};
use myapi_services::movies::NewMoviesQuery;
use myapi_services::{ServiceError, Services};

use crate::error::ApiError;
use crate::extract::{BearerUser, QueryParams};
use crate::openapi::GuardedErrors;
use crate::routes::ApiScope;

/// Mounts `/movies/`, `/movies/new` and `/movies/{movie_id}`.
pub fn configure(scopes: &mut Vec<ApiScope>) {
    scopes.push(
        ApiScope::new("/movies")
            .route(Method::GET, "/", get_movie_by_query)
            .route(Method::GET, "/new", new_movies)
            .route(Method::GET, "/{movie_id}", get_movie),
    );
}

/// One movie by `movie_id` query parameter (the seed's route, kept for its clients).
#[utoipa::path(
    get,
    path = "/movies/",
    tag = "movies",
    security(("oauth2" = [])),
    params(("movie_id" = i64, Query, description = "Movie id", minimum = 1)),
    responses(
        (status = 200, description = "The movie", body = MovieSchema),
        (status = 404, description = "No such movie", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or non-integer `movie_id`", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
pub async fn get_movie_by_query(
    _user: BearerUser,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let mut params = QueryParams::parse(req.query_string())?;
    let movie_id = params.required_int("movie_id");
    params.finish()?;
    find_movie(services, movie_id.unwrap_or_default()).await
}

/// One movie by id.
#[utoipa::path(
    get,
    path = "/movies/{movie_id}",
    tag = "movies",
    security(("oauth2" = [])),
    params(("movie_id" = i64, Path, description = "Movie id", minimum = 1)),
    responses(
        (status = 200, description = "The movie", body = MovieSchema),
        (status = 404, description = "No such movie", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Non-integer `movie_id`", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
pub async fn get_movie(
    _user: BearerUser,
    movie_id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = movie_id
        .trim()
        .parse::<i64>()
        .map_err(|_| ServiceError::invalid("movie_id", "must be an integer"))?;
    find_movie(services, movie_id).await
}

async fn find_movie(
    services: web::Data<Services>,
    movie_id: i64,
) -> Result<HttpResponse, ApiError> {
    let movie = web::block(move || services.movies.get(movie_id)).await??;
    Ok(HttpResponse::Ok().json(movie))
}

/// Movies released in or after `year` with a rating of at least `rating`, ordered by
/// `movie_id`, one page at a time. When more follow, a `Link: <…>; rel="next"` header
/// gives the next page's URL.
#[utoipa::path(
    get,
    path = "/movies/new",
    tag = "movies",
    security(("oauth2" = [])),
    params(
        ("year" = i64, Query, description = "Earliest release year", minimum = 0, maximum = 9999),
        ("rating" = f64, Query, description = "Lowest rating", minimum = 0, maximum = 10),
        ("limit" = Option<i64>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("offset" = Option<i64>, Query, description = "Movies to skip (default 0)", minimum = 0, maximum = 1_000_000_000),
    ),
    responses(
        (status = 200, description = "One page of movies", body = Vec<MovieSchema>,
            headers(("Link" = String, description = "`<url>; rel=\"next\"` when another page follows"))),
        (status = 422, description = "A parameter is missing, malformed or out of range", body = Problem,
            content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
pub async fn new_movies(
    _user: BearerUser,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let mut params = QueryParams::parse(req.query_string())?;
    let (year, rating) = (
        params.required_int("year"),
        params.required_number("rating"),
    );
    let (limit, offset) = (params.optional_int("limit"), params.optional_int("offset"));
    params.finish()?;
    let (year, rating) = (year.unwrap_or_default(), rating.unwrap_or_default());
    let query = NewMoviesQuery::new(year, rating, limit, offset, services.movies.settings())?;
    let page_size = query.limit();
    let page = web::block(move || services.movies.released_since(&query)).await??;
    let mut response = HttpResponse::Ok();
    if let Some(next) = page.next_offset {
        response.insert_header((
            header::LINK,
            format!("</movies/new?year={year}&rating={rating}&limit={page_size}&offset={next}>; rel=\"next\""),
        ));
    }
    Ok(response.json(page.movies))
}
