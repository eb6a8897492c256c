//! Embedded migrations, one directory per backend, and the admin helpers tests and
//! benchmarks use to create throwaway PostgreSQL databases.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connection::DbConnection;
use crate::{DbError, one_line};

/// `migrations/postgres`, compiled into the binary.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
/// `migrations/sqlite`, compiled into the binary.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Key of the PostgreSQL advisory lock that serialises migrations across instances.
const MIGRATION_LOCK_KEY: i64 = 0x6d79_6170_695f_6d69; // "myapi_mi"

/// Applies pending migrations on `conn` and returns the versions applied (empty when up to
/// date).
///
/// Instances starting together migrate one at a time: on PostgreSQL under an advisory lock
/// (with the statement timeout lifted for the duration), on SQLite in one exclusive
/// transaction; `restore_timeout` is the
/// session's `statement_timeout` to put back afterwards.
pub fn run_pending_migrations(
    conn: &mut DbConnection,
    restore_timeout: std::time::Duration,
) -> Result<Vec<String>, DbError> {
    match conn {
        DbConnection::Pg(conn) => {
            conn.batch_execute(&format!(
                "SET statement_timeout = 0; SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"
            ))?;
            let result = conn
                .batch_execute("CREATE SCHEMA IF NOT EXISTS myapi")
                .map_err(DbError::from)
                .and_then(|()| apply(conn, || POSTGRES_MIGRATIONS));
            let unlocked = conn.batch_execute(&format!(
                "SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY}); SET statement_timeout = {}",
                restore_timeout.as_millis()
            ));
            let applied = result?;
            unlocked?;
            Ok(applied)
        }
        // SQLite has no advisory lock: the whole run holds the database's write lock, so a
        // second migrator waits (busy_timeout) and then finds nothing pending, instead of
        // racing the first one migration by migration.
        DbConnection::Sqlite(conn) => {
            conn.exclusive_transaction(|conn| apply(conn, || SQLITE_MIGRATIONS))
        }
    }
}

/// Applies pending migrations. If that fails because another process applied them
/// meanwhile (a migrator that does not take our lock, such as the diesel CLI), nothing is
/// left pending and that is success.
fn apply<C>(conn: &mut C, migrations: fn() -> EmbeddedMigrations) -> Result<Vec<String>, DbError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let applied = conn
        .run_pending_migrations(migrations())
        .map(|versions| versions.iter().map(ToString::to_string).collect());
    match applied {
        Ok(applied) => Ok(applied),
        Err(error)
            if conn
                .has_pending_migration(migrations())
                .is_ok_and(|pending| !pending) =>
        {
            log::info!(
                "migrations were applied concurrently by another process ({})",
                one_line(&error.to_string())
            );
            Ok(Vec::new())
        }
        Err(error) => Err(DbError::Migration(one_line(&error.to_string()))),
    }
}

/// Whether every embedded migration has been applied on this connection's database.
pub fn migrations_are_current(conn: &mut DbConnection) -> Result<bool, DbError> {
    let pending = match conn {
        DbConnection::Pg(conn) => conn.has_pending_migration(POSTGRES_MIGRATIONS),
        DbConnection::Sqlite(conn) => conn.has_pending_migration(SQLITE_MIGRATIONS),
    };
    pending
        .map(|pending| !pending)
        .map_err(|e| DbError::Migration(one_line(&e.to_string())))
}

/// Creates database `name` on the PostgreSQL server at `admin_url` (tests and benchmarks).
pub fn create_postgres_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    on_server(admin_url, name, &format!("CREATE DATABASE \"{name}\""))
}

/// Drops database `name` on the PostgreSQL server at `admin_url`, closing its sessions.
pub fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    on_server(admin_url, name, &statement)
}

/// Runs `statement`, which names database `name`, on the server at `admin_url`, once `name`
/// is known to be a plain identifier (it is quoted, never escaped).
fn on_server(admin_url: &str, name: &str, statement: &str) -> Result<(), DbError> {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if name.is_empty() || name.len() > 63 || !name.bytes().all(plain) {
        return Err(DbError::InvalidDsn(format!(
            "invalid database name `{name}`"
        )));
    }
    crate::connection::connect_pg(admin_url)
        .map_err(|e| DbError::Unavailable(one_line(&e.to_string())))?
        .batch_execute(statement)?;
    Ok(())
}
