//! Data tier of myapi: the diesel schema, row structs, the one connection type over
//! PostgreSQL and SQLite, its r2d2 pool, and the embedded migrations.
//!
//! Only `myapi-services` depends on this crate; the web and CLI tiers never see diesel.

pub mod connection;
pub mod migrations;
pub mod rows;
pub mod schema;

pub use bigdecimal::BigDecimal;
pub use connection::{
    ConnectionOptions, DEFAULT_SQLITE_FILE, DatabaseUrl, DbConnection, DbPool, PoolOptions,
    PooledConnection, build_pool,
};
pub use diesel;

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
        Self::Unavailable(connection::one_line(&error.to_string()))
    }
}
