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

mod data;

pub(crate) use data::{claim, record};

use sha2::{Digest, Sha256};

use crate::audit::unix_now;
use crate::config::IdempotencySettings;
use crate::database::Database;
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

/// What a keyed request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The work ran now; this answer is stored for the repeats.
    Fresh(StoredResponse),
    /// A request with this key and body ran before; nothing ran now.
    Replayed(StoredResponse),
}

impl Answer {
    pub fn response(&self) -> &StoredResponse {
        match self {
            Self::Fresh(response) | Self::Replayed(response) => response,
        }
    }
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
        data::purge(&mut *self.db.conn()?, before)
    }
}

/// The Unix seconds before which a stored answer is expired, at `now`.
pub(crate) fn retention_cutoff(settings: &IdempotencySettings, now: i64) -> i64 {
    now - i64::from(settings.retention_hours.get()) * 3600
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
