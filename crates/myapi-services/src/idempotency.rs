//! Idempotency keys (draft-ietf-httpapi-idempotency-key-header-07): a client that retries
//! a `POST /movies/` after a timeout sends the same `Idempotency-Key`, and gets the first
//! answer instead of a second movie.
//!
//! The key's row, the work it guards and the answer commit in one transaction, in a table
//! every instance shares ([`claim`] then [`record`], on the caller's connection). Keys are
//! per caller and route. A repeat with the same body gets the stored answer; with another
//! body, 422; while the first still runs, 409 (PostgreSQL: the first holds a transaction
//! advisory lock on the key; SQLite runs one writer at a time, so there a repeat waits and
//! gets the stored answer). Only answers of work that committed are stored: a request that
//! failed (a 4xx before anything was written, a 409, a 5xx) leaves its key free. Stored
//! answers are replayed for `idempotency.retention_hours`.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use myapi_models::DbConnection;
use myapi_models::rows::IdempotencyRow;
use myapi_models::schema::idempotency_keys;
use sha2::{Digest, Sha256};

use crate::audit::unix_now;
use crate::config::IdempotencySettings;
use crate::database::Database;
use crate::error::is_unique_violation;
use crate::{InvalidField, ServiceError};

/// Longest key accepted, in characters: a UUID or a hash fits many times over.
pub const MAX_KEY_CHARS: usize = 255;

/// A key's value as the client sent it (the header's string, unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Refuses an empty key and one over [`MAX_KEY_CHARS`] (web has parsed the header).
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let refuse = |message| InvalidField::new("Idempotency-Key", message);
        match value.chars().count() {
            0 => Err(refuse("must not be empty".into())),
            n if n > MAX_KEY_CHARS => Err(refuse(format!(
                "must be at most {MAX_KEY_CHARS} characters"
            ))),
            _ => Ok(Self(value.to_owned())),
        }
    }
}

/// Who sent which key to which route, with what body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest {
    caller: String,
    operation: &'static str,
    key: IdempotencyKey,
    /// SHA-256 of the body, hex.
    fingerprint: String,
}

impl KeyedRequest {
    /// `caller` is the authenticated user's id; `operation` names the route (`POST /movies/`).
    pub fn new(caller: String, operation: &'static str, key: IdempotencyKey, body: &[u8]) -> Self {
        Self {
            caller,
            operation,
            key,
            fingerprint: format!("{:x}", Sha256::digest(body)),
        }
    }
}

/// The answer stored for a key and replayed to its repeats, as web sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub location: Option<String>,
    /// The `ETag` value, unquoted (strong).
    pub etag: Option<String>,
    /// JSON.
    pub body: String,
}

/// How long answers are kept, and their purge.
#[derive(Debug, Clone)]
pub struct IdempotencyService {
    db: Database,
    settings: IdempotencySettings,
}

impl IdempotencyService {
    pub fn new(db: Database, settings: &IdempotencySettings) -> Self {
        Self {
            db,
            settings: settings.clone(),
        }
    }

    /// Deletes the answers older than `idempotency.retention_hours` (which no request
    /// replays any more) and returns how many went (blocking).
    pub fn purge(&self) -> Result<usize, ServiceError> {
        self.purge_before(retention_cutoff(&self.settings, unix_now()))
    }

    /// Deletes the answers stored before these Unix seconds (blocking).
    pub fn purge_before(&self, before: i64) -> Result<usize, ServiceError> {
        delete_before(&mut *self.db.conn()?, before)
    }
}

/// The Unix seconds before which a stored answer is expired, at `now`.
pub(crate) fn retention_cutoff(settings: &IdempotencySettings, now: i64) -> i64 {
    now - i64::from(settings.retention_hours.get()) * 3600
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes `request`'s key for the current transaction, and returns the answer stored for it
/// if there is one younger than `cutoff` (Unix seconds).
///
/// A stored answer is replayed without taking the key, so repeats of a finished request
/// never refuse each other. Otherwise the key is taken and the table read again, since the
/// request that held it before may have committed meanwhile; an expired answer is deleted
/// there, under the key. Fails with a conflict (409) while another transaction holds the
/// key (PostgreSQL: a transaction advisory lock on a hash of it, so a repeat never waits;
/// SQLite: the caller's `BEGIN IMMEDIATE` already made it the only writer), and with the
/// key named as invalid (422) when its stored answer was for another body.
pub(crate) fn claim(
    conn: &mut DbConnection,
    request: &KeyedRequest,
    cutoff: i64,
) -> Result<Option<StoredResponse>, ServiceError> {
    if let Some(stored) = stored_answer(conn, request, cutoff, false)? {
        return Ok(Some(stored));
    }
    if let DbConnection::Pg(pg) = conn {
        let scope = format!(
            "{}\n{}\n{}",
            request.caller, request.operation, request.key.0
        );
        let taken: Locked = diesel::sql_query(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked",
        )
        .bind::<Text, _>(scope)
        .get_result(pg)?;
        if !taken.locked {
            return Err(still_running());
        }
    }
    stored_answer(conn, request, cutoff, true)
}

/// The answer stored for `request`'s key, unless there is none or it is older than `cutoff`
/// (then deleted when `holding_key`); 422 when it was for another body.
fn stored_answer(
    conn: &mut DbConnection,
    request: &KeyedRequest,
    cutoff: i64,
    holding_key: bool,
) -> Result<Option<StoredResponse>, ServiceError> {
    let this_key = idempotency_keys::table
        .filter(idempotency_keys::caller.eq(&request.caller))
        .filter(idempotency_keys::operation.eq(request.operation))
        .filter(idempotency_keys::idempotency_key.eq(&request.key.0));
    let Some(stored) = this_key
        .select(IdempotencyRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    if stored.created_at < cutoff {
        if holding_key {
            diesel::delete(this_key).execute(conn)?;
        }
        return Ok(None);
    }
    if stored.fingerprint != request.fingerprint {
        return Err(ServiceError::invalid(
            "Idempotency-Key",
            "was sent before with another request body; use a new key for a new request",
        ));
    }
    Ok(Some(StoredResponse {
        status: u16::try_from(stored.status)
            .map_err(|e| ServiceError::internal("stored status out of range", e))?,
        location: stored.location,
        etag: stored.etag,
        body: stored.body,
    }))
}

fn still_running() -> ServiceError {
    ServiceError::Conflict(
        "a request with this Idempotency-Key is still running; retry once it has ended".into(),
    )
}

/// Stores `response` as the answer to `request` (after a [`claim`] that found none, in the
/// same transaction).
pub(crate) fn record(
    conn: &mut DbConnection,
    request: &KeyedRequest,
    response: &StoredResponse,
) -> Result<(), ServiceError> {
    let row = IdempotencyRow {
        caller: request.caller.clone(),
        operation: request.operation.to_owned(),
        idempotency_key: request.key.0.clone(),
        fingerprint: request.fingerprint.clone(),
        created_at: unix_now(),
        status: i16::try_from(response.status)
            .map_err(|e| ServiceError::internal("status out of range", e))?,
        location: response.location.clone(),
        etag: response.etag.clone(),
        body: response.body.clone(),
    };
    // Unreachable while every instance takes the key first; an instance that does not
    // (an older version during a rolling upgrade) is refused like a running request.
    match diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)
    {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(still_running()),
        Err(error) => Err(error.into()),
    }
}

/// Deletes the answers stored before `before` (Unix seconds); returns how many.
fn delete_before(conn: &mut DbConnection, before: i64) -> Result<usize, ServiceError> {
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
            .execute(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_never_empty() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_CHARS)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_CHARS + 1)).is_err());
    }

    #[test]
    fn the_fingerprint_is_of_the_exact_body() {
        let key = IdempotencyKey::parse("k").unwrap();
        let request = |body: &[u8]| KeyedRequest::new("1".into(), "POST /x", key.clone(), body);
        assert_eq!(request(b"{}"), request(b"{}"));
        assert_ne!(request(b"{}"), request(b"{ }"));
    }

    #[test]
    fn retention_is_counted_in_hours() {
        let settings = IdempotencySettings {
            retention_hours: 24.try_into().unwrap(),
        };
        assert_eq!(retention_cutoff(&settings, 100_000), 100_000 - 86_400);
    }
}
