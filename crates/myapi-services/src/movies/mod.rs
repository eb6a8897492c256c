//! The `movies` service: look-ups, the "new and good" listing, CSV import, and writes
//! guarded by row versions (optimistic concurrency).
//!
//! Blocking: every method that touches the database must run off the async workers,
//! except the cache look-ups ([`MovieService::cached_movie`], [`MovieService::cached_page`]).

pub mod cache;
mod data;
mod fields;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::str::FromStr;
use std::sync::Arc;

pub use data::{ImportCounts, Listing, ListingPlans, MovieDataManager, OnExisting};
pub use fields::{
    FieldKind, MOVIE_FIELDS, MovieField, RATINGS, RELEASE_YEARS, Rating, TITLE_CHARS, is_field,
};

use cache::{Change, MovieCache, Rendered};
use fields::{check_released, check_title};

use myapi_models::BigDecimal;
use myapi_models::rows::{MovieRow, VersionedMovieRow};
use myapi_schemas::MovieSchema;
use serde_json::Value;

use crate::audit::unix_now;
use crate::config::{IdempotencySettings, MoviesSettings, Settings};
use crate::database::Database;
use crate::hooks::{Hooks, Point};
use crate::idempotency::{self, KeyedRequest, StoredResponse};
use crate::{InvalidField, ServiceError};

/// CSV errors reported before the importer stops listing them.
const MAX_REPORTED_ERRORS: usize = 50;
/// Times a write reads a movie that other writes keep changing between its read and its
/// conditional write before it gives up with 412. Only `If-Match: *` retries: a named
/// version no longer matches on the second read.
const WRITE_ATTEMPTS: usize = 3;

/// A checked `GET /movies/new` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMoviesQuery {
    year: i32,
    min_rating: BigDecimal,
    limit: u32,
    /// The page starts after this id (0 = from the first movie; stored ids are positive).
    after: i32,
    /// Matching movies skipped after `after`; never set together with a cursor.
    offset: i64,
}

impl NewMoviesQuery {
    /// A query for movies released in or after `year`, rated at least `min_rating`, `limit`
    /// at a time, after the id `after` (0: from the first) or skipping `offset` of them.
    /// Web checks the ranges as it reads them; a `min_rating` that is not finite is refused.
    pub fn new(
        year: i32,
        min_rating: f64,
        limit: u32,
        after: i32,
        offset: i64,
    ) -> Result<Self, InvalidField> {
        // As the decimal of the shortest `f64` form, so `8.55` means 8.55.
        let min_rating = BigDecimal::from_str(&min_rating.to_string())
            .map_err(|_| InvalidField::new("rating", "must be a finite number"))?;
        Ok(Self {
            year,
            min_rating,
            limit,
            after,
            offset,
        })
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn min_rating(&self) -> &BigDecimal {
        &self.min_rating
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The cursor: the page holds ids above it (0 when the client sent none).
    pub fn after(&self) -> i32 {
        self.after
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The query in one canonical form (the same page, the same key), for the cache.
    fn cache_key(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.year,
            self.min_rating.normalized(),
            self.limit,
            self.after,
            self.offset
        )
    }
}

/// A movie id as a client sends it: any integer (ids outside the stored range are simply
/// not found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovieId(pub i64);

/// A movie's row version: set by the database, raised by every update. Web sends it as the
/// movie's `ETag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(i64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Version {
    type Err = std::num::ParseIntError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.parse().map(Self)
    }
}

/// The versions a write may replace (web reads them from `If-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// Whatever version the movie has (`*`).
    Any,
    /// One of these; empty matches nothing.
    AnyOf(Vec<Version>),
}

impl IfMatch {
    pub fn matches(&self, version: Version) -> bool {
        match self {
            Self::Any => true,
            Self::AnyOf(versions) => versions.contains(&version),
        }
    }
}

/// A movie and the version it was read or written at.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedMovie {
    pub movie: MovieSchema,
    pub version: Version,
}

/// One page of movies, and where the next one starts (if there is one).
#[derive(Debug, Clone, PartialEq)]
pub struct MoviePage {
    /// The movies of this page, by id.
    pub movies: Vec<MovieSchema>,
    /// The cursor for the next page (this page's last id); `None` on the last page.
    pub next_after: Option<i32>,
}

/// A listing page read for a client that may hold it already.
#[derive(Debug, Clone, PartialEq)]
pub enum PageRead {
    /// The client's tag is current: answer 304 with this `ETag`. No row was read.
    Unchanged(String),
    Page(Arc<Rendered>),
}

/// Movies: look-ups, listing and import.
#[derive(Debug, Clone)]
pub struct MovieService {
    movies: MovieDataManager,
    settings: MoviesSettings,
    idempotency: IdempotencySettings,
    cache: MovieCache,
    database: Database,
    hooks: Hooks,
}

impl MovieService {
    /// The service and its read cache (which serves nothing on PostgreSQL until
    /// [`Self::watch_changes`] runs).
    pub fn new(db: Database, settings: &Settings, hooks: Hooks) -> Result<Self, ServiceError> {
        Ok(Self {
            cache: MovieCache::new(&settings.cache, db.url())?,
            movies: MovieDataManager::new(db.clone()),
            settings: settings.movies.clone(),
            idempotency: settings.idempotency.clone(),
            database: db,
            hooks,
        })
    }

    /// Starts keeping the cache exact on PostgreSQL: a thread of its own listens for every
    /// change to the movies (see [`cache`]). Servers call it once; the CLI never does.
    pub fn watch_changes(&self) -> Result<(), ServiceError> {
        if !self.cache.enabled() || self.database.backend_name() != "postgres" {
            return Ok(());
        }
        cache::watch_postgres(
            &self.cache,
            self.database.url().clone(),
            self.database.connection_options(),
        )
        .map_err(|e| ServiceError::internal("cannot start the cache's listener", e.to_string()))
    }

    pub fn settings(&self) -> &MoviesSettings {
        &self.settings
    }

    pub fn cache(&self) -> &MovieCache {
        &self.cache
    }

    /// One movie's response, if the cache holds it and may serve it (never blocks on
    /// PostgreSQL; on SQLite, one `PRAGMA data_version`).
    pub fn cached_movie(&self, movie_id: MovieId) -> Option<Arc<Rendered>> {
        self.cache.movie(i32::try_from(movie_id.0).ok()?).1
    }

    /// One movie's response, read from the database and kept in the cache (blocking).
    pub fn movie(&self, movie_id: MovieId) -> Result<Arc<Rendered>, ServiceError> {
        let ticket = self.cache.ticket();
        let found = self.get(movie_id)?;
        let rendered = Arc::new(Rendered {
            body: to_json(&found.movie)?,
            etag: found.version.to_string(),
            weak_etag: false,
            next_after: None,
        });
        self.hooks.reach(Point::MovieFetched);
        self.cache
            .store_movie(ticket, found.movie.movie_id, Arc::clone(&rendered));
        Ok(rendered)
    }

    /// A listing page's response, if the cache holds it and may serve it (never blocks on
    /// PostgreSQL; on SQLite, one `PRAGMA data_version`).
    pub fn cached_page(&self, query: &NewMoviesQuery) -> Option<Arc<Rendered>> {
        self.cache.page(&query.cache_key()).1
    }

    /// A listing page's response, read from the database and kept in the cache, unless
    /// `is_current` accepts the listing's tag: then no row is read (blocking).
    ///
    /// The tag is the `movie_changes` generation, read before the rows: a change
    /// committed in between makes the tag older than the page, so a client holding it
    /// gets the page again, never a 304 for rows it has not seen. Being read apart from
    /// the rows, it is a weak tag.
    pub fn page(
        &self,
        query: &NewMoviesQuery,
        is_current: impl FnOnce(&str) -> bool,
    ) -> Result<PageRead, ServiceError> {
        let ticket = self.cache.ticket();
        let etag = format!("g{}", self.movies.generation()?);
        if is_current(&etag) {
            return Ok(PageRead::Unchanged(etag));
        }
        let page = self.released_since(query)?;
        let rendered = Arc::new(Rendered {
            body: to_json(&page.movies)?,
            etag,
            weak_etag: true,
            next_after: page.next_after,
        });
        self.hooks.reach(Point::MovieFetched);
        self.cache
            .store_page(ticket, &query.cache_key(), Arc::clone(&rendered));
        Ok(PageRead::Page(rendered))
    }

    /// One movie by id, with its version (blocking).
    pub fn get(&self, movie_id: MovieId) -> Result<VersionedMovie, ServiceError> {
        let row = match i32::try_from(movie_id.0) {
            Ok(id) => self.movies.find(id)?,
            Err(_) => None, // not a stored id
        };
        to_versioned(&row.ok_or_else(|| not_found(movie_id))?)
    }

    /// Creates a movie from a movie document (see [`MOVIE_FIELDS`]); the database assigns
    /// its id, the next after the largest (blocking). Every invalid field is named before
    /// any query.
    pub fn create(&self, document: &Value) -> Result<VersionedMovie, ServiceError> {
        let row = fields::check_document(0, document)?;
        let created = to_versioned(&self.movies.insert(&row)?)?;
        self.cache
            .invalidate(&Change::Movies(vec![created.movie.movie_id]));
        Ok(created)
    }

    /// [`Self::create`] sent with an idempotency key: the first request with `request`'s
    /// key runs, and its answer (what `respond` makes of the new movie) commits with the
    /// movie; a repeat gets that answer and creates nothing (see [`crate::idempotency`]).
    /// Invalid fields fail before the key is looked at, and leave it free (blocking).
    pub fn create_once(
        &self,
        document: &Value,
        request: &KeyedRequest,
        respond: impl FnOnce(&VersionedMovie) -> Result<StoredResponse, ServiceError>,
    ) -> Result<StoredResponse, ServiceError> {
        let row = fields::check_document(0, document)?;
        let cutoff = idempotency::retention_cutoff(&self.idempotency, unix_now());
        let mut created_id = None;
        let answer = self.movies.insert_once(&row, request, cutoff, |created| {
            let created = to_versioned(created)?;
            created_id = Some(created.movie.movie_id);
            self.hooks.reach(Point::KeyedMovieInserted);
            respond(&created)
        })?;
        if let Some(movie_id) = created_id {
            self.cache.invalidate(&Change::Movies(vec![movie_id]));
        }
        Ok(answer)
    }

    /// Replaces movie `movie_id` with what `edit` makes of its current state, if
    /// `condition` holds (blocking).
    ///
    /// Fails, in this order: not found; no condition ([`ServiceError::PreconditionRequired`]);
    /// a condition the current version does not meet ([`ServiceError::PreconditionFailed`]);
    /// whatever `edit` fails with (web decodes the body there); invalid fields. The write
    /// is conditional on the version just checked, so of two writes racing from one
    /// version, the second fails its precondition. If the movie changed in between but
    /// `condition` still holds (`If-Match: *`), `edit` runs again on the new state.
    pub fn update<E: From<ServiceError>>(
        &self,
        movie_id: MovieId,
        condition: Option<&IfMatch>,
        edit: impl Fn(&MovieSchema) -> Result<Value, E>,
    ) -> Result<VersionedMovie, E> {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.writable(movie_id, condition)?;
            let row = fields::check_document(current.movie.movie_id, &edit(&current.movie)?)?;
            if let Some(updated) = self.movies.update(&row, current.version.0)? {
                self.cache.invalidate(&Change::Movies(vec![row.movie_id]));
                return Ok(to_versioned(&updated)?);
            }
        }
        Err(kept_changing(movie_id).into())
    }

    /// Deletes movie `movie_id` if `condition` holds; fails like [`Self::update`] (blocking).
    pub fn delete(
        &self,
        movie_id: MovieId,
        condition: Option<&IfMatch>,
    ) -> Result<(), ServiceError> {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.writable(movie_id, condition)?;
            if self
                .movies
                .delete(current.movie.movie_id, current.version.0)?
            {
                self.cache
                    .invalidate(&Change::Movies(vec![current.movie.movie_id]));
                return Ok(());
            }
        }
        Err(kept_changing(movie_id))
    }

    /// The movie as it is now, if it exists and `condition` names its version.
    fn writable(
        &self,
        movie_id: MovieId,
        condition: Option<&IfMatch>,
    ) -> Result<VersionedMovie, ServiceError> {
        let current = self.get(movie_id)?;
        let condition = condition.ok_or_else(|| {
            ServiceError::PreconditionRequired(format!(
                "changing movie {} needs its current ETag in If-Match (or `*`)",
                movie_id.0
            ))
        })?;
        if !condition.matches(current.version) {
            return Err(ServiceError::PreconditionFailed(format!(
                "movie {} has changed: If-Match does not name its current ETag",
                movie_id.0
            )));
        }
        Ok(current)
    }

    /// Movies released in or after the year with at least the rating, by id (blocking).
    pub fn released_since(&self, query: &NewMoviesQuery) -> Result<MoviePage, ServiceError> {
        let limit = i64::from(query.limit);
        let mut rows = self.movies.released_since(&listing(query, limit + 1))?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(query.limit as usize);
        Ok(MoviePage {
            next_after: rows.last().filter(|_| has_more).map(|row| row.movie_id),
            movies: rows.iter().map(to_schema).collect::<Result<_, _>>()?,
        })
    }

    /// How PostgreSQL runs the listing for `query` on one pooled connection after
    /// `executions_before` runs of it there, beside its plan for the same query with the
    /// values written in (blocking; `None` on SQLite). For tests and diagnosis: see
    /// [`MovieDataManager::released_since_plans`].
    pub fn released_since_plans(
        &self,
        query: &NewMoviesQuery,
        executions_before: u32,
    ) -> Result<Option<ListingPlans>, ServiceError> {
        let limit = i64::from(query.limit);
        self.movies
            .released_since_plans(&listing(query, limit + 1), executions_before)
    }

    /// Imports a CSV (`movie_id,title,released,rating`) in one transaction (blocking).
    ///
    /// Every row is validated first; bad rows are reported by line and nothing is written.
    pub fn import_csv(
        &self,
        input: impl Read,
        on_existing: OnExisting,
    ) -> Result<ImportCounts, ServiceError> {
        let rows = parse_csv(input)?;
        let counts = self.movies.import(&rows, on_existing);
        self.cache.invalidate(&Change::All);
        counts
    }
}

/// The rows to read for `query`: `rows` of them (one more than the page, to learn whether
/// another follows).
fn listing(query: &NewMoviesQuery, rows: i64) -> Listing {
    Listing {
        year: query.year,
        min_rating: query.min_rating.clone(),
        after: query.after,
        limit: rows,
        offset: query.offset,
    }
}

fn not_found(MovieId(movie_id): MovieId) -> ServiceError {
    ServiceError::NotFound(format!("movie {movie_id} not found"))
}

fn kept_changing(MovieId(movie_id): MovieId) -> ServiceError {
    ServiceError::PreconditionFailed(format!(
        "movie {movie_id} kept changing during the write; read it again and retry"
    ))
}

/// The JSON of `value` in one allocation of exactly its size, measured first, then written:
/// the cache's byte count is then what it holds. The body may live in the cache long after
/// this request; growing a buffer and shrinking it would leave freed pieces of every size
/// around it on the blocking thread's heap, which under a flood of distinct pages kept
/// several MiB more resident than the cache holds.
fn to_json(value: &impl serde::Serialize) -> Result<bytes::Bytes, ServiceError> {
    let failed =
        |e: serde_json::Error| ServiceError::internal("cannot serialise a movie", e.to_string());
    let mut length = Length(0);
    serde_json::to_writer(&mut length, value).map_err(failed)?;
    let mut json = Vec::with_capacity(length.0);
    serde_json::to_writer(&mut json, value).map_err(failed)?;
    Ok(bytes::Bytes::from(json))
}

/// A writer that only counts what it is given.
struct Length(usize);

impl std::io::Write for Length {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn to_versioned(row: &VersionedMovieRow) -> Result<VersionedMovie, ServiceError> {
    Ok(VersionedMovie {
        movie: to_schema(&row.movie)?,
        version: Version(row.version),
    })
}

fn to_schema(row: &MovieRow) -> Result<MovieSchema, ServiceError> {
    let rating = Rating::from_decimal(&row.rating).ok_or_else(|| {
        ServiceError::internal(
            "stored movie cannot be served",
            format!(
                "movie {} has rating {} out of range",
                row.movie_id, row.rating
            ),
        )
    })?;
    Ok(MovieSchema {
        movie_id: row.movie_id,
        title: row.title.clone(),
        released: row.released,
        rating: rating.as_f64(),
    })
}

/// Parses and validates a whole CSV file, collecting every bad row with its line number.
fn parse_csv(input: impl Read) -> Result<Vec<MovieRow>, ServiceError> {
    const HEADER: [&str; 4] = ["movie_id", "title", "released", "rating"];
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| ServiceError::invalid("line 1", e.to_string()))?;
    if header.iter().collect::<Vec<_>>() != HEADER {
        return Err(ServiceError::invalid(
            "line 1",
            format!("header must be `{}`", HEADER.join(",")),
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut first_line_of_id: HashMap<i32, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                errors.push(InvalidField::new(format!("line {line}"), e.to_string()));
                break;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        match parse_row(&record) {
            Ok(row) => {
                if let Some(first) = first_line_of_id.insert(row.movie_id, line) {
                    errors.push(InvalidField::new(
                        format!("line {line}"),
                        format!("movie_id {} repeats line {first}", row.movie_id),
                    ));
                }
                rows.push(row);
            }
            Err(message) => errors.push(InvalidField::new(format!("line {line}"), message)),
        }
        if errors.len() >= MAX_REPORTED_ERRORS {
            errors.push(InvalidField::new(
                "file",
                "too many errors; stopped checking",
            ));
            break;
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(ServiceError::Invalid(errors))
    }
}

fn parse_row(record: &csv::StringRecord) -> Result<MovieRow, String> {
    if record.len() != 4 {
        return Err(format!("expected 4 fields, found {}", record.len()));
    }
    let movie_id = record[0]
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 1)
        .ok_or_else(|| {
            format!(
                "movie_id `{}` must be a positive 32-bit integer",
                &record[0]
            )
        })?;
    let title = &record[1];
    check_title(title).map_err(|e| format!("title {e}"))?;
    // Not an integer gets the range message too.
    let released = record[2]
        .parse::<i64>()
        .map_or_else(|_| check_released(i64::MIN), check_released)
        .map_err(|e| format!("released `{}` {e}", &record[2]))?;
    let rating = Rating::parse(&record[3]).map_err(|e| format!("rating `{}` {e}", &record[3]))?;
    Ok(MovieRow {
        movie_id,
        title: title.to_owned(),
        released,
        rating: rating.to_decimal(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_carry_line_numbers() {
        let csv = "movie_id,title,released,rating\n1,A,1994,9.2\nx,B,1990,8\n3,C,1700,8\n4,D,2000,11\n1,E,2001,5\n";
        let Err(ServiceError::Invalid(errors)) = parse_csv(csv.as_bytes()) else {
            panic!()
        };
        let lines: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(lines, ["line 3", "line 4", "line 5", "line 6"]);
        assert!(parse_csv("id,title\n".as_bytes()).is_err());
        assert_eq!(
            parse_csv("movie_id,title,released,rating\n1,\"A, quoted\",1994,9.2\n".as_bytes())
                .unwrap()
                .len(),
            1
        );
    }
}
