//! The service tier's handle on the database: the pool, created once, plus migrations and
//! readiness. Web and CLI hold a [`Database`] without ever seeing diesel.

use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::result::Error as DieselError;
use myapi_models::{
    ConnectionOptions, DatabaseUrl, DbConnection, DbError, DbPool, PoolOptions, PooledConnection,
};

use crate::ServiceError;
use crate::config::DatabaseSettings;

/// A pooled database; clones share the pool.
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    url: DatabaseUrl,
    /// What every connection is opened with, pooled or not.
    options: ConnectionOptions,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Parses the DSN and opens the pool (blocking: it connects once to fail early).
    pub fn connect(settings: &DatabaseSettings) -> Result<Self, ServiceError> {
        let url = DatabaseUrl::parse(settings.dsn.expose())?;
        let options = ConnectionOptions {
            statement_timeout: Duration::from_millis(settings.statement_timeout_ms),
            busy_timeout: Duration::from_secs(5),
            connect_timeout: settings.connect_timeout(),
        };
        let pool = myapi_models::build_pool(
            &url,
            PoolOptions {
                max_size: settings.pool_size.get(),
                connection_timeout: settings.connect_timeout(),
                connection: options,
            },
        )?;
        Ok(Self { pool, url, options })
    }

    /// The PostgreSQL `statement_timeout` every pooled connection has.
    pub(crate) fn statement_timeout(&self) -> Duration {
        self.options.statement_timeout
    }

    pub(crate) fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub(crate) fn connection_options(&self) -> ConnectionOptions {
        self.options
    }

    pub fn backend_name(&self) -> &'static str {
        self.url.backend_name()
    }

    /// The DSN with its password masked, for logs.
    pub fn display_url(&self) -> String {
        self.url.to_string()
    }

    /// Applies pending migrations (safe when several instances start at once).
    pub fn migrate(&self) -> Result<Vec<String>, ServiceError> {
        let mut conn = self.conn()?;
        Ok(myapi_models::migrations::run_pending_migrations(
            &mut conn,
            self.statement_timeout(),
        )?)
    }

    /// Ok when the database answers and every migration is applied (blocking).
    pub fn check_ready(&self) -> Result<(), ServiceError> {
        let mut conn = self.conn()?;
        if myapi_models::migrations::migrations_are_current(&mut conn)? {
            Ok(())
        } else {
            Err(ServiceError::Unavailable(DbError::MigrationsPending))
        }
    }

    /// Checks a connection out of the pool, waiting at most the connect timeout — or not at
    /// all while the database is known to be failing and another request is probing it.
    /// The wait is recorded in [`Self::WAIT_TIME_METRIC`], failed checkouts included.
    pub(crate) fn conn(&self) -> Result<PooledConnection, ServiceError> {
        let started = Instant::now();
        let conn = self.pool.checkout();
        metrics::histogram!(Self::WAIT_TIME_METRIC).record(started.elapsed().as_secs_f64());
        Ok(conn?)
    }

    /// [`Self::conn`] for work that can do without the database (the shared rate-limit
    /// store): `Ok(None)` when no connection is free within `wait`; an error at once while
    /// the database is failing.
    pub(crate) fn conn_briefly(
        &self,
        wait: Duration,
    ) -> Result<Option<PooledConnection>, ServiceError> {
        Ok(self.pool.checkout_briefly(wait)?)
    }

    /// Histogram, seconds: how long checking a connection out of the pool took.
    pub const WAIT_TIME_METRIC: &str = "db_client_connection_wait_time_seconds";

    /// The pool's connections now (cheap: no connection is touched).
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            idle: state.idle_connections,
            used: state.connections.saturating_sub(state.idle_connections),
            max: self.pool.max_size(),
        }
    }
}

/// The pool's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Open and waiting in the pool.
    pub idle: u32,
    /// Checked out by a caller.
    pub used: u32,
    /// The most the pool opens (`database.pool_size`).
    pub max: u32,
}

pub use myapi_models::connection::redacted_dsn;

/// Creates a PostgreSQL database on the server at `admin_url` (tests and benchmarks).
pub fn create_postgres_database(admin_url: &str, name: &str) -> Result<(), ServiceError> {
    Ok(myapi_models::migrations::create_postgres_database(
        admin_url, name,
    )?)
}

/// Drops a PostgreSQL database, closing its sessions (tests and benchmarks).
pub fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), ServiceError> {
    Ok(myapi_models::migrations::drop_postgres_database(
        admin_url, name,
    )?)
}

/// Runs `work` in a transaction that, on SQLite, holds the database's write lock from the
/// start (`BEGIN IMMEDIATE`): one that reads and then writes would otherwise fail at once
/// (not wait) when another connection wrote in between.
pub(crate) fn write_transaction<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    type Manager = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Pg(pg) => AnsiTransactionManager::begin_transaction_sql(pg, "BEGIN")?,
        DbConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        }
    }
    let result = work(conn);
    // As `Connection::transaction` does: commit on success, else roll back and report the
    // first error.
    match result {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(error),
            Err(rollback) => Err(rollback.into()),
        },
    }
}
