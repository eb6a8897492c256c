//! Row structs: one per way a table is read or written.

use bigdecimal::BigDecimal;
use diesel::prelude::*;

use crate::schema::{
    account_tokens, audit_events, idempotency_keys, mail_outbox, movies, refresh_families,
    refresh_tokens, users,
};

/// A full `movies` row, read and written as is (also by PostgreSQL `COPY`, which needs
/// `treat_none_as_default_value = false`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = movies, treat_none_as_default_value = false)]
pub struct MovieRow {
    pub movie_id: i32,
    pub title: String,
    pub released: i32,
    /// Rating; on SQLite it arrives as a binary float and must be rounded by the reader.
    pub rating: BigDecimal,
}

/// A `movies` row with its version, as every read and write of one movie returns it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = movies)]
pub struct VersionedMovieRow {
    #[diesel(embed)]
    pub movie: MovieRow,
    /// Raised by the database on every update; the movie's `ETag`.
    pub version: i64,
}

/// A `users` row as read back (the hash included: it never leaves the services tier).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub user_id: i32,
    pub name: String,
    /// Lower-case email.
    pub email: String,
    /// Argon2id PHC string.
    pub hashed_password: String,
    /// Random, replaced on every password change; tokens carry it.
    pub security_stamp: String,
    pub role: String,
    /// `false` from a sign-up until its mail's token comes back.
    pub email_verified: bool,
}

/// What `INSERT INTO users` needs; the id and version come from the database.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUserRow<'a> {
    pub name: &'a str,
    /// Lower-case email.
    pub email: &'a str,
    /// Argon2id PHC string.
    pub hashed_password: &'a str,
    pub security_stamp: &'a str,
    pub role: &'a str,
    pub email_verified: bool,
}

/// A single-use token a mail carries, by its hash.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = account_tokens)]
pub struct AccountTokenRow {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub user_id: i32,
    /// `verify` or `reset`.
    pub purpose: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_families)]
pub struct RefreshFamilyRow {
    pub family_id: String,
    pub user_id: i32,
    pub scope: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub security_stamp: String,
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshTokenRow {
    pub token_hash: String,
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub successor_hash: Option<String>,
    pub successor_sealed: Option<String>,
}

/// An `audit_events` row as read back.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEventRow {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub event: String,
    pub actor: String,
    pub subject_user_id: Option<i32>,
    pub subject: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub count: i32,
    pub detail: Option<String>,
}

/// What `INSERT INTO audit_events` needs; the id comes from the database.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEventRow<'a> {
    pub at: i64,
    pub event: &'a str,
    pub actor: &'a str,
    pub subject_user_id: Option<i32>,
    pub subject: Option<&'a str>,
    pub client: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub count: i32,
    pub detail: Option<&'a str>,
}

// [xtask] row structs

/// A stored answer to a request sent with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyRow {
    pub caller: String,
    pub operation: String,
    pub idempotency_key: String,
    /// SHA-256 of the request body, hex.
    pub fingerprint: String,
    /// Unix seconds.
    pub created_at: i64,
    pub status: i16,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub body: String,
}

/// A new row of the mail outbox: due at once, never tried.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = mail_outbox)]
pub struct NewMailRow<'a> {
    pub message_id: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    pub next_attempt_at: i64,
}

/// A mail a sender has claimed: what it sends, and how many attempts it has had.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = mail_outbox)]
pub struct ClaimedMailRow {
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Counting the one now claimed.
    pub attempts: i32,
}
