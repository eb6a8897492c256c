//! The data tier's error, and the one-line form of a driver's message.

/// What the data tier can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database DSN: {0}")]
    InvalidDsn(String),
    /// No connection could be had (server down, pool exhausted, timeout).
    #[error("{0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// The schema is behind the embedded migrations.
    #[error("migrations are pending")]
    MigrationsPending,
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl From<r2d2::Error> for DbError {
    fn from(error: r2d2::Error) -> Self {
        Self::Unavailable(one_line(&error.to_string()))
    }
}

/// Joins a multi-line message (drivers and parsers write them) into one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
