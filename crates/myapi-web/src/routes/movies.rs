//! The `movies` scope: look-ups and the "new and good" listing, all behind the bearer guard.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use myapi_schemas::{MovieSchema, Problem};
use myapi_services::Services;
use myapi_services::movies::{MovieId, NewMoviesQuery};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;
use crate::extract::{Authorized, MoviesRead, query_pairs};
use crate::openapi::GuardedErrors;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/movies")
            .service(get_movie_by_query)
            .service(new_movies)
            .service(get_movie),
    );
}

/// One movie by `movie_id` query parameter (the seed's route, kept for its clients).
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:read"])),
    params(("movie_id" = i64, Query, description = "Movie id", minimum = 1)),
    responses(
        (status = 200, description = "The movie", body = MovieSchema),
        (status = 404, description = "No such movie", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or non-integer `movie_id`", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/")]
pub async fn get_movie_by_query(
    _user: Authorized<MoviesRead>,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = MovieId::from_query(&query_pairs(&req)?)?;
    find_movie(services, movie_id).await
}

/// One movie by id.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:read"])),
    params(("movie_id" = i64, Path, description = "Movie id", minimum = 1)),
    responses(
        (status = 200, description = "The movie", body = MovieSchema),
        (status = 404, description = "No such movie", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Non-integer `movie_id`", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/{movie_id}")]
pub async fn get_movie(
    _user: Authorized<MoviesRead>,
    movie_id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = MovieId::parse(&movie_id).map_err(myapi_services::ServiceError::from)?;
    find_movie(services, movie_id).await
}

async fn find_movie(
    services: web::Data<Services>,
    movie_id: MovieId,
) -> Result<HttpResponse, ApiError> {
    let movie = web::block(move || services.movies.get(movie_id)).await??;
    Ok(HttpResponse::Ok().json(movie))
}

/// Movies released in or after `year` with a rating of at least `rating`, ordered by
/// `movie_id`, one page at a time. When more follow, a `Link: <…>; rel="next"` header
/// gives the next page's URL.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:read"])),
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
#[get("/new")]
pub async fn new_movies(
    _user: Authorized<MoviesRead>,
    req: HttpRequest,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let query = NewMoviesQuery::parse(&query_pairs(&req)?, services.movies.settings())?;
    let page = {
        let query = query.clone();
        web::block(move || services.movies.released_since(&query)).await??
    };
    let mut response = HttpResponse::Ok();
    if let Some(next) = page.next_offset {
        response.insert_header((
            header::LINK,
            format!(
                "</movies/new?year={}&rating={}&limit={}&offset={next}>; rel=\"next\"",
                query.year(),
                query.min_rating(),
                query.limit()
            ),
        ));
    }
    Ok(response.json(page.movies))
}
