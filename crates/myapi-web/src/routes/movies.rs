//! The `movies` scope: look-ups and the "new and good" listing (`movies:read`), and writes
//! guarded by ETags (`movies:write`).
//!
//! Conditional requests (RFC 9110 §13): every single-movie response carries a strong `ETag`
//! made of the row version; `PUT`, `PATCH` and `DELETE` need `If-Match` (428 without, 412
//! when it names another version), and the single-movie `GET`s answer 304 to a matching
//! `If-None-Match`. Listing pages carry an `ETag` too (the database's count of changes to
//! the movies), and answer 304 the same way without reading a row. Reads say
//! `Cache-Control: private, no-cache`: a client may keep them but revalidates first.
//! This module reads and writes the headers (actix-web's typed ones): the service compares
//! versions and makes the write conditional on the one it checked.
//!
//! Reads try the service's cache first, on the async worker, after the bearer check and
//! its scope: the data is shared, the permission is not.

use actix_web::guard::GuardContext;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ETag, EntityTag, Header, HeaderMap, HeaderName, HeaderValue};
use actix_web::{
    HttpRequest, HttpResponse, HttpResponseBuilder, delete, get, patch, post, put, web,
};
use myapi_schemas::{MovieSchema, Problem};
use myapi_services::idempotency::{IdempotencyKey, KeyedRequest, StoredResponse};
use myapi_services::movies::cache::Rendered;
use myapi_services::movies::{
    IfMatch, MOVIE_FIELDS, MovieId, PageRead, Version, VersionedMovie, is_field,
};
use myapi_services::{ServiceError, Services};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::blocking::block;
use crate::error::ApiError;
use crate::extract::{Authorized, MoviesRead, MoviesWrite, has_media_type, next_page_link};
use crate::openapi::{
    ConditionalWriteErrors, GuardedErrors, MovieInput, MoviePatch, MovieReadResponses,
};
use crate::query::{self, query_pairs};

/// The body of `POST` and `PUT`.
const JSON: &str = "application/json";
/// The body of `PATCH` (RFC 7396).
const MERGE_PATCH_JSON: &str = "application/merge-patch+json";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/movies")
            .service(get_movie_by_query)
            .service(create_movie)
            .service(new_movies)
            .service(get_movie)
            .service(replace_movie)
            .service(patch_movie)
            .service(delete_movie),
    );
}

/// One movie by `movie_id` query parameter (the seed's route, kept for its clients).
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:read"])),
    params(
        ("movie_id" = i64, Query, description = "Movie id", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; 304 when one is current (weak comparison)"),
    ),
    responses(
        MovieReadResponses,
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
    let movie_id = query::required(&query_pairs(&req)?, "movie_id").and_then(query::movie_id);
    let movie_id = movie_id.map_err(ServiceError::from)?;
    find_movie(&req, services, movie_id).await
}

/// One movie by id.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:read"])),
    params(
        ("movie_id" = i64, Path, description = "Movie id", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; 304 when one is current (weak comparison)"),
    ),
    responses(
        MovieReadResponses,
        (status = 422, description = "Non-integer `movie_id`", body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[get("/{movie_id}")]
pub async fn get_movie(
    _user: Authorized<MoviesRead>,
    req: HttpRequest,
    movie_id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = query::movie_id(&movie_id).map_err(ServiceError::from)?;
    find_movie(&req, services, movie_id).await
}

async fn find_movie(
    req: &HttpRequest,
    services: web::Data<Services>,
    movie_id: MovieId,
) -> Result<HttpResponse, ApiError> {
    let found = match services.movies.cached_movie(movie_id) {
        Some(hit) => hit,
        None => block(move || services.movies.movie(movie_id)).await??,
    };
    Ok(read_response(req, &found, |_| {}))
}

/// A read's response: 304 when `If-None-Match` names its tag, else 200 with its body and
/// what `more` adds; both with its `ETag` and `Cache-Control: private, no-cache`.
///
/// Cache hits are answered here on the async worker, so the headers are written as bytes
/// rather than through the typed headers' formatting, which cost more than the hit itself.
fn read_response(
    req: &HttpRequest,
    read: &Rendered,
    more: impl FnOnce(&mut HttpResponseBuilder),
) -> HttpResponse {
    let revalidate = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let etag = entity_tag(read);
    if HeldTags::hold_raw(req, &etag) || HeldTags::of(req).hold(&read.etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header(revalidate)
            .finish();
    }
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::ETAG, etag))
        .insert_header(revalidate)
        .insert_header(header::ContentType::json());
    more(&mut response);
    response.body(read.body.clone())
}

/// `read`'s `ETag` field: `"tag"`, or `W/"tag"` for a weak one.
fn entity_tag(read: &Rendered) -> HeaderValue {
    let prefix: &[u8] = if read.weak_etag { b"W/\"" } else { b"\"" };
    let value = [prefix, read.etag.as_bytes(), b"\""].concat();
    // Our tags are a version or a generation: digits and a letter, never refused.
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// Creates a movie. The server assigns its id: one more than the largest in use.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:write"])),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A quoted string of 1 to 255 characters, unique per request, such as `\"8e03978e-40d5-43e8\"` (draft-ietf-httpapi-idempotency-key-header-07). A repeat with the same key and body gets the first answer and creates nothing, for `idempotency.retention_hours`",
            nullable = false, pattern = r#"^"(?:[ !#-\[\]-~]|\\["\\]){1,255}"$"#),
    ),
    request_body(content = MovieInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (or, for a repeated `Idempotency-Key`, the first request's answer)", body = MovieSchema, headers(
            ("Location" = String, description = "`/movies/{movie_id}` of the new movie"),
            ("ETag" = String, description = "The movie's version (strong)"))),
        (status = 400, description = "The body is not JSON, or `Idempotency-Key` is not a quoted string of 1 to 255 characters", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `movies:write`", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\"`"))),
        (status = 409, description = "No movie id is left, or a request with this `Idempotency-Key` is still running", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds `server.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields missing, unknown, of the wrong type or out of range, or an `Idempotency-Key` sent before with another body; each is named in `errors`",
            body = Problem, content_type = "application/problem+json"),
        GuardedErrors,
    ),
)]
#[post("/")]
pub async fn create_movie(
    user: Authorized<MoviesWrite>,
    req: HttpRequest,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req.headers())?;
    require_media_type(req.headers(), JSON)?;
    let input = read_movie(&body)?;
    let answer = match key {
        None => created_answer(&block(move || services.movies.create(&input)).await??)?,
        Some(key) => {
            let caller = user.0.user.user_id.to_string();
            let request = KeyedRequest::new(caller, "POST /movies/", key, &body);
            block(move || {
                services
                    .movies
                    .create_once(&input, &request, created_answer)
            })
            .await??
        }
    };
    stored_response(&answer)
}

/// The answer to a create: 201 with the movie, its `Location` and `ETag`. Stored as is for
/// an idempotency key's repeats, so they get the same bytes.
fn created_answer(created: &VersionedMovie) -> Result<StoredResponse, ServiceError> {
    Ok(StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        location: Some(format!("/movies/{}", created.movie.movie_id)),
        etag: Some(created.version.to_string()),
        body: serde_json::to_string(&created.movie)
            .map_err(|e| ServiceError::internal("cannot render the movie", e))?,
    })
}

/// The HTTP response of a stored answer. It was read from the database, so a status or
/// header that is not valid HTTP (a row edited by hand) is an internal error, not a panic.
fn stored_response(stored: &StoredResponse) -> Result<HttpResponse, ApiError> {
    let corrupt = |what| ServiceError::internal("stored answer is not valid HTTP", what);
    let status = StatusCode::from_u16(stored.status).map_err(|_| corrupt("status"))?;
    let mut response = HttpResponse::build(status);
    if let Some(location) = &stored.location {
        let location = HeaderValue::from_str(location).map_err(|_| corrupt("Location"))?;
        response.insert_header((header::LOCATION, location));
    }
    if let Some(etag) = &stored.etag {
        // An entity tag's characters (RFC 9110 §8.8.3), which `EntityTag` asserts.
        let valid = |c: char| c == '\x21' || ('\x23'..='\x7e').contains(&c);
        if !etag.chars().all(valid) {
            return Err(corrupt("ETag").into());
        }
        response.insert_header(ETag(EntityTag::new_strong(etag.clone())));
    }
    Ok(response
        .insert_header(header::ContentType::json())
        .body(stored.body.clone()))
}

/// The `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header-07 §2.1): one
/// RFC 9651 item whose value is a string; `None` when absent. Parameters are allowed and
/// ignored, as RFC 9651 §2.1 asks of unknown ones. Sent more than once, it is a list, not
/// an item: refused.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    const NAME: &str = "Idempotency-Key";
    let malformed = |reason: &str| ApiError::MalformedHeader {
        name: NAME,
        reason: reason.to_owned(),
    };
    let mut values = headers.get_all(NAME);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed("must be sent once"));
    }
    let item = sfv::Parser::new(value.as_bytes())
        .parse::<sfv::Item>()
        .map_err(|_| malformed("must be a quoted string, such as \"8e03978e-40d5\""))?;
    let key = item
        .bare_item
        .as_string()
        .ok_or_else(|| malformed("must be a quoted string, such as \"8e03978e-40d5\""))?;
    IdempotencyKey::parse(key.as_str())
        .map(Some)
        .map_err(|invalid| malformed(&invalid.message))
}

/// Replaces a movie (never creates one). `If-Match` must name its current `ETag`, or be `*`.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:write"])),
    params(
        ("movie_id" = i64, Path, description = "Movie id", minimum = 1),
        ("If-Match" = String, Header, description = "The movie's current `ETag` (strong comparison: a weak tag never matches), or `*`"),
    ),
    request_body(content = MovieInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The movie as replaced", body = MovieSchema,
            headers(("ETag" = String, description = "The movie's new version (strong)"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds `server.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Non-integer `movie_id`, or fields missing, unknown, of the wrong type or out of range; each is named in `errors`",
            body = Problem, content_type = "application/problem+json"),
        ConditionalWriteErrors,
        GuardedErrors,
    ),
)]
#[put("/{movie_id}", guard = "names_a_movie")]
pub async fn replace_movie(
    _user: Authorized<MoviesWrite>,
    req: HttpRequest,
    movie_id: web::Path<String>,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = query::movie_id(&movie_id).map_err(ServiceError::from)?;
    let condition = if_match(&req);
    let media_type = require_media_type(req.headers(), JSON);
    let replaced = block(move || {
        services
            .movies
            .update(movie_id, condition.as_ref(), |_current| {
                media_type?;
                read_movie(&body)
            })
    })
    .await??;
    Ok(with_etag(HttpResponse::Ok(), &replaced).json(replaced.movie))
}

/// Changes some fields of a movie with an RFC 7396 merge patch: fields present are set,
/// absent ones are kept. `If-Match` must name its current `ETag`, or be `*`.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:write"])),
    params(
        ("movie_id" = i64, Path, description = "Movie id", minimum = 1),
        ("If-Match" = String, Header, description = "The movie's current `ETag` (strong comparison: a weak tag never matches), or `*`"),
    ),
    request_body(content = MoviePatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The movie as patched", body = MovieSchema,
            headers(("ETag" = String, description = "The movie's new version (strong)"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds `server.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/merge-patch+json`", body = Problem, content_type = "application/problem+json",
            headers(("Accept-Patch" = String, description = "`application/merge-patch+json`"))),
        (status = 422, description = "Non-integer `movie_id`, or the patched movie has fields missing (`null` removes), unknown, of the wrong type or out of range; each is named in `errors`",
            body = Problem, content_type = "application/problem+json"),
        ConditionalWriteErrors,
        GuardedErrors,
    ),
)]
#[patch("/{movie_id}", guard = "names_a_movie")]
pub async fn patch_movie(
    _user: Authorized<MoviesWrite>,
    req: HttpRequest,
    movie_id: web::Path<String>,
    body: web::Bytes,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = query::movie_id(&movie_id).map_err(ServiceError::from)?;
    let condition = if_match(&req);
    let media_type = require_media_type(req.headers(), MERGE_PATCH_JSON);
    let patched = block(move || {
        services
            .movies
            .update(movie_id, condition.as_ref(), |current| {
                media_type?;
                let patch = serde_json::from_slice::<Value>(&body)
                    .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
                Ok::<_, ApiError>(patched(current, &patch))
            })
    })
    .await??;
    Ok(with_etag(HttpResponse::Ok(), &patched).json(patched.movie))
}

/// Deletes a movie. `If-Match` must name its current `ETag`, or be `*`.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:write"])),
    params(
        ("movie_id" = i64, Path, description = "Movie id", minimum = 1),
        ("If-Match" = String, Header, description = "The movie's current `ETag` (strong comparison: a weak tag never matches), or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 422, description = "Non-integer `movie_id`", body = Problem, content_type = "application/problem+json"),
        ConditionalWriteErrors,
        GuardedErrors,
    ),
)]
#[delete("/{movie_id}", guard = "names_a_movie")]
pub async fn delete_movie(
    _user: Authorized<MoviesWrite>,
    req: HttpRequest,
    movie_id: web::Path<String>,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    let movie_id = query::movie_id(&movie_id).map_err(ServiceError::from)?;
    let condition = if_match(&req);
    block(move || services.movies.delete(movie_id, condition.as_ref())).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Movies released in or after `year` with a rating of at least `rating`, ordered by
/// `movie_id`, one page at a time. When more follow, a `Link: <…>; rel="next"` header
/// gives the next page's URL, which continues with the cursor `after` (the last `movie_id`
/// of this page) even when this page was asked for with `offset`.
///
/// `after` costs the same at any depth; `offset` makes the database read and drop every
/// skipped row, so it is capped by `movies.max_offset` (10,000 by default). Offsets past
/// the cap are refused with 422.
#[utoipa::path(
    tag = "movies",
    security(("oauth2" = ["movies:read"])),
    params(
        ("year" = i64, Query, description = "Earliest release year", minimum = 0, maximum = 9999),
        ("rating" = f64, Query, description = "Lowest rating", minimum = 0, maximum = 10),
        ("limit" = Option<i64>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("after" = Option<i64>, Query, description = "Cursor: the page holds movies with ids above this one, as the `Link` header gives it (the last `movie_id` of the previous page). Costs the same at any depth. Not with `offset`", minimum = 0, maximum = 2_147_483_647),
        ("offset" = Option<i64>, Query, description = "Movies to skip (default 0). At most `movies.max_offset` (`MYAPI_MOVIES__MAX_OFFSET`, default 10,000): larger offsets are refused with 422 (page with `after` instead). Not with `after`", minimum = 0, maximum = 10_000),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds for this URL; 304 when one is current (weak comparison)"),
    ),
    responses(
        (status = 200, description = "One page of movies; `[]` and no `Link` past the last one", body = Vec<MovieSchema>, headers(
            ("Link" = String, description = "`</movies/new?year=Y&rating=R&limit=L&after=ID>; rel=\"next\"` when another page follows"),
            ("ETag" = String, description = "The movies' version (weak): it changes with any change to any movie"),
            ("Cache-Control" = String, description = "`private, no-cache`: keep it, but ask again (`If-None-Match`) before using it"))),
        (status = 304, description = "`If-None-Match` names the current version; no row was read", headers(
            ("ETag" = String, description = "The movies' version (weak)"),
            ("Cache-Control" = String, description = "`private, no-cache`"))),
        (status = 422, description = "A parameter is missing, malformed or out of range, `offset` is above `movies.max_offset` (the message names `after`), or `after` and `offset` are both given; each is named in `errors`", body = Problem,
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
    let query = query::new_movies(&query_pairs(&req)?, services.movies.settings())?;
    let page = match services.movies.cached_page(&query) {
        Some(hit) => hit,
        None => {
            let (query, held) = (query.clone(), HeldTags::of(&req));
            let read = block(move || services.movies.page(&query, |etag| held.hold(etag)));
            match read.await?? {
                PageRead::Page(page) => page,
                PageRead::Unchanged(etag) => {
                    let unchanged = Rendered {
                        etag,
                        weak_etag: true,
                        ..Rendered::default()
                    };
                    return Ok(read_response(&req, &unchanged, |_| {}));
                }
            }
        }
    };
    Ok(read_response(&req, &page, |response| {
        if let Some(after) = page.next_after {
            response.insert_header(next_page_link(
                "/movies/new",
                &[
                    ("year", query.year().to_string()),
                    ("rating", query.min_rating().to_string()),
                    ("limit", query.limit().to_string()),
                    ("after", after.to_string()),
                ],
            ));
        }
    }))
}

/// Routes `/{movie_id}` writes only to ids: `/movies/new` is a listing, so a write to it
/// is a 405 naming `GET`, not a 422 for the id `new`.
fn names_a_movie(ctx: &GuardContext<'_>) -> bool {
    ctx.head().uri.path().trim_end_matches('/') != "/movies/new"
}

/// A movie's `ETag`: its version (a strong validator).
fn etag(version: Version) -> ETag {
    ETag(EntityTag::new_strong(version.to_string()))
}

fn with_etag(mut response: HttpResponseBuilder, movie: &VersionedMovie) -> HttpResponseBuilder {
    response.insert_header(etag(movie.version));
    response
}

/// `If-Match` as the service reads it; `None` when absent. Strong comparison: weak tags
/// never match, and a tag that is not one of our versions names none, so a field with no
/// tag actix-web can read matches nothing (412). actix-web splits at every comma, even one
/// inside a quoted tag (`"a,b"`), and drops the pieces that are not tags: such a tag is
/// never one of our versions, so no answer changes.
fn if_match(req: &HttpRequest) -> Option<IfMatch> {
    if !req.headers().contains_key(header::IF_MATCH) {
        return None;
    }
    let tags = match header::IfMatch::parse(req) {
        Ok(header::IfMatch::Any) => return Some(IfMatch::Any),
        Ok(header::IfMatch::Items(tags)) => tags,
        Err(_) => obs_text_tags(req.headers(), &header::IF_MATCH),
    };
    Some(IfMatch::AnyOf(
        tags.iter()
            .filter(|tag| !tag.weak)
            .filter_map(|tag| tag.tag().parse().ok())
            .collect(),
    ))
}

/// The tags of `If-None-Match`, read on the async worker and taken along to the blocking
/// read.
enum HeldTags {
    Any,
    Tags(Vec<EntityTag>),
}

impl HeldTags {
    fn of(req: &HttpRequest) -> Self {
        if !req.headers().contains_key(header::IF_NONE_MATCH) {
            return Self::Tags(Vec::new());
        }
        match header::IfNoneMatch::parse(req) {
            Ok(header::IfNoneMatch::Any) => Self::Any,
            Ok(header::IfNoneMatch::Items(tags)) => Self::Tags(tags),
            Err(_) => Self::Tags(obs_text_tags(req.headers(), &header::IF_NONE_MATCH)),
        }
    }

    /// Whether the one `If-None-Match` field is `etag` alone, weak or strong (weak
    /// comparison): what a client revalidating sends, decided without parsing the field.
    /// `false` leaves any other field to [`Self::of`].
    fn hold_raw<'a>(req: &'a HttpRequest, etag: &'a HeaderValue) -> bool {
        let mut fields = req.headers().get_all(header::IF_NONE_MATCH);
        let (Some(field), None) = (fields.next(), fields.next()) else {
            return false;
        };
        let opaque = |tag: &'a [u8]| tag.strip_prefix(b"W/").unwrap_or(tag);
        opaque(field.as_bytes().trim_ascii()) == opaque(etag.as_bytes())
    }

    /// Whether the client holds the representation tagged `current` (weak comparison).
    fn hold(&self, current: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|tag| tag.tag() == current),
        }
    }
}

/// The entity-tags of a field actix-web refused because a line holds a byte outside visible
/// ASCII. RFC 9110 §8.8.3 allows such bytes (obs-text) in an entity-tag, so actix-web is
/// wrong there: `If-None-Match: "é", "7"` must match version 7 (304), and `If-Match: "é", "7"`
/// must let the write go ahead. Each such byte is read as `!`, another etagc character: a tag
/// holding one stays none of our versions (which are digits), and the others are read as sent.
fn obs_text_tags(headers: &HeaderMap, name: &HeaderName) -> Vec<EntityTag> {
    let visible: Vec<HeaderValue> = headers
        .get_all(name)
        .filter_map(|line| {
            let bytes: Vec<u8> = line
                .as_bytes()
                .iter()
                .map(|b| if *b >= 0x80 { b'!' } else { *b })
                .collect();
            HeaderValue::from_bytes(&bytes).ok()
        })
        .collect();
    header::from_comma_delimited(visible.iter()).unwrap_or_default()
}

/// 415 unless the body is `expected` (parameters such as `charset` are ignored). A PATCH
/// 415 names the patch format in `Accept-Patch`.
fn require_media_type(headers: &HeaderMap, expected: &'static str) -> Result<(), MediaTypeError> {
    has_media_type(headers, expected)
        .then_some(())
        .ok_or(MediaTypeError(expected))
}

/// A wrong `Content-Type`, kept until the precondition has been checked (415 comes after
/// 404, 428 and 412).
#[derive(Debug, Clone, Copy)]
struct MediaTypeError(&'static str);

impl From<MediaTypeError> for ApiError {
    fn from(MediaTypeError(expected): MediaTypeError) -> Self {
        Self::UnsupportedMediaType {
            expected,
            accept_patch: expected == MERGE_PATCH_JSON,
        }
    }
}

/// A `POST` or `PUT` body: malformed JSON is 400; the service names every field it refuses
/// (422).
fn read_movie(body: &[u8]) -> Result<Value, ApiError> {
    let document = serde_json::from_slice::<Value>(body)
        .map_err(|error| ApiError::MalformedBody(error.to_string()))?;
    if document.is_object() {
        serde_json::from_slice::<NoFieldRepeated>(body)
            .map_err(|error| ServiceError::invalid("body", error.to_string()))?;
    }
    Ok(document)
}

/// A JSON object in which no movie field is repeated: serde_json keeps the last of them
/// silently, but which one the client meant cannot be known, so the body is refused.
struct NoFieldRepeated;

impl<'de> Deserialize<'de> for NoFieldRepeated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(NoFieldRepeated)
    }
}

impl<'de> Visitor<'de> for NoFieldRepeated {
    type Value = Self;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if let Some(field) = MOVIE_FIELDS.iter().find(|field| field.name == name) {
                if seen.contains(&field.name) {
                    return Err(de::Error::duplicate_field(field.name));
                }
                seen.push(field.name);
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(self)
    }
}

/// `patch` applied to the movie's writable fields. A `null` for a member no movie has
/// removes nothing, but is no more a movie field than any other unknown member: it is kept,
/// so the service names it.
fn patched(movie: &MovieSchema, patch: &Value) -> Value {
    let mut fields = serde_json::to_value(movie).unwrap_or_default();
    if let Value::Object(fields) = &mut fields {
        fields.retain(|name, _| is_field(name));
    }
    merge_patch(&mut fields, patch);
    if let (Value::Object(fields), Value::Object(patch)) = (&mut fields, patch) {
        for (name, value) in patch {
            if value.is_null() && !is_field(name) {
                fields.insert(name.clone(), Value::Null);
            }
        }
    }
    fields
}

/// RFC 7396 §2: objects merge member by member, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (name, value) in patch {
            if value.is_null() {
                target.remove(name);
            } else {
                merge_patch(target.entry(name).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "{patch}");
        }
    }

    #[test]
    fn patches_apply_to_the_writable_fields() {
        let movie = MovieSchema {
            movie_id: 7,
            title: "A".into(),
            released: 1994,
            rating: 9.2,
        };
        assert_eq!(
            patched(&movie, &json!({"rating": 9.3})),
            json!({"title": "A", "released": 1994, "rating": 9.3})
        );
        assert_eq!(
            patched(&movie, &json!({"title": null, "x": null, "": null, "y": 1})),
            json!({"released": 1994, "rating": 9.2, "x": null, "": null, "y": 1})
        );
        assert_eq!(patched(&movie, &json!([1])), json!([1]));
    }

    #[test]
    fn bodies_are_json_documents_with_no_field_repeated() {
        let read = |body: &str| read_movie(body.as_bytes());
        assert_eq!(
            read(r#"{"title": 5, "x": [1], "title2": {"a": null}}"#).unwrap(),
            json!({"title": 5, "x": [1], "title2": {"a": null}})
        );
        assert!(!read("[1]").unwrap().is_object());
        assert!(!read(r#""x""#).unwrap().is_object());
        match read(r#"{"title": "A", "title": "B", "released": 1994, "rating": 9}"#) {
            Err(ApiError::Service(ServiceError::Invalid(fields))) => {
                assert_eq!(fields[0].field, "body");
                assert!(fields[0].message.starts_with("duplicate field `title`"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(read(r#"{"x": 1, "x": 2}"#).unwrap(), json!({"x": 2}));
        for malformed in [
            "",
            "{",
            r#"{"title": "A",}"#,
            "nul",
            r#"{"title": "\ud800"}"#,
            "[1,",
        ] {
            assert!(
                matches!(read(malformed), Err(ApiError::MalformedBody(_))),
                "{malformed}"
            );
        }
    }
}
