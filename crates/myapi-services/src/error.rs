//! The error type of the services tier. Web maps it to HTTP in one place; the CLI prints
//! [`error_chain`] as a one-line message.

use std::error::Error;
use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use myapi_models::DbError;
use myapi_models::one_line;

/// Any underlying cause, kept for the log.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// One refused input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// Parameter, field or CSV line.
    pub field: String,
    pub message: String,
}

impl InvalidField {
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
    /// Every offending field is listed, so a client can fix them all at once.
    #[error("invalid input: {}", join(.0))]
    Invalid(Vec<InvalidField>),
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with existing data (e.g. a duplicate email).
    #[error("{0}")]
    Conflict(String),
    /// A write was not told which version of the resource it replaces.
    #[error("{0}")]
    PreconditionRequired(String),
    /// The resource is not at the version the write names.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The bearer token is malformed, expired, wrongly signed or revoked.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The database cannot serve now: unreachable, timed out, or not migrated.
    #[error("database unavailable")]
    Unavailable(#[source] DbError),
    /// A bug or an unexpected failure; the chain is for logs, never for clients.
    #[error("{context}")]
    Internal {
        context: &'static str,
        #[source]
        source: BoxError,
    },
}

fn join(fields: &[InvalidField]) -> String {
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![InvalidField::new(field, message)])
    }

    pub fn internal(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }
}

impl From<InvalidField> for ServiceError {
    fn from(field: InvalidField) -> Self {
        Self::Invalid(vec![field])
    }
}

impl From<DbError> for ServiceError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) | DbError::MigrationsPending => Self::Unavailable(error),
            DbError::InvalidDsn(message) => Self::invalid("database.dsn", message),
            DbError::Query(error) => error.into(),
            DbError::Migration(_) => Self::internal("migration failed", error),
        }
    }
}

impl From<DieselError> for ServiceError {
    fn from(error: DieselError) -> Self {
        let unavailable = match &error {
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | DieselError::BrokenTransactionManager => true,
            // PostgreSQL's `statement_timeout`; SQLite's busy timeout, spent waiting for
            // another writer (SQLITE_BUSY).
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
                info.message().contains("statement timeout")
                    || info.message() == "database is locked"
            }
            _ => false,
        };
        if unavailable {
            Self::Unavailable(DbError::Query(error))
        } else {
            Self::internal("query failed", error)
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

/// `error` and each of its causes on one line, joined by `: `. A cause whose text its
/// parent already shows (thiserror's `{0}`) is left out.
pub fn error_chain(error: &dyn Error) -> String {
    let mut line = one_line(&error.to_string());
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = one_line(&error.to_string());
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        cause = error.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_once() {
        let error = ServiceError::internal(
            "token signing failed",
            std::io::Error::other("key\nrejected"),
        );
        assert_eq!(error_chain(&error), "token signing failed: key rejected");
        let error = ServiceError::Unavailable(DbError::Unavailable("connection refused".into()));
        assert_eq!(
            error_chain(&error),
            "database unavailable: connection refused"
        );
    }
}
