//! The one error type of the services tier. Web maps it to HTTP in one place; the CLI
//! prints its `Display` as a one-line message.

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use myapi_models::DbError;

/// One refused input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// Parameter, field or CSV line.
    pub field: String,
    /// Why it was refused.
    pub message: String,
}

impl InvalidField {
    /// A refused `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What a service operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input was refused; every offending field is listed.
    #[error("invalid input: {}", join(.0))]
    Invalid(Vec<InvalidField>),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with existing data (e.g. a duplicate email).
    #[error("{0}")]
    Conflict(String),
    /// Unknown user or wrong password — deliberately indistinguishable.
    #[error("incorrect username or password")]
    InvalidCredentials,
    /// The bearer token is malformed, expired, wrongly signed or revoked.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// Too many failed logins from this client or for this account.
    #[error("too many failed login attempts; retry in {retry_after_secs} s")]
    TooManyAttempts {
        /// Seconds until an attempt is allowed again.
        retry_after_secs: u64,
    },
    /// Password hashing is saturated.
    #[error("server busy; retry in {retry_after_secs} s")]
    Busy {
        /// Seconds a client should wait.
        retry_after_secs: u64,
    },
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the message is for logs, not for clients.
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(fields: &[InvalidField]) -> String {
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    /// A single refused field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![InvalidField::new(field, message)])
    }
}

impl From<DbError> for ServiceError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(message) => Self::Unavailable(message),
            DbError::InvalidDsn(message) => Self::invalid("database.dsn", message),
            DbError::Query(error) => error.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<DieselError> for ServiceError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("statement timeout") =>
            {
                Self::Unavailable("query timed out".into())
            }
            DieselError::BrokenTransactionManager => Self::Unavailable(error.to_string()),
            _ => Self::Internal(error.to_string()),
        }
    }
}

/// Whether `error` is a unique-constraint violation (a duplicate key).
pub(crate) fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}
