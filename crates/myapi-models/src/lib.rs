//! Data tier of myapi: the diesel schema, row structs, the one connection type over
//! PostgreSQL and SQLite, its r2d2 pool, and the embedded migrations.
//!
//! Only `myapi-services` depends on this crate; the web and CLI tiers never see diesel.

pub mod connection;
mod error;
pub mod migrations;
pub mod rows;
pub mod schema;
pub mod watch;

pub use bigdecimal::BigDecimal;
pub use connection::{
    ConnectionOptions, DEFAULT_SQLITE_FILE, DatabaseUrl, DbConnection, DbPool, PoolOptions,
    PooledConnection, build_pool,
};
pub use diesel;
pub use error::{DbError, one_line};
