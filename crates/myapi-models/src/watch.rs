//! Connections outside the pool that watch the database for changes made by anyone:
//! a PostgreSQL session that `LISTEN`s, and a SQLite connection that reads
//! `PRAGMA data_version`. The services' read cache uses them to stay exact.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};

use crate::connection::{ConnectionOptions, DatabaseUrl, establish};
use crate::{DbConnection, DbError, one_line};

/// One PostgreSQL session of its own (never pooled: a pooled connection would carry its
/// `LISTEN` to whoever checks it out next, and a transaction-pooling proxy drops it).
pub struct Listener {
    conn: PgConnection,
}

/// A notification as PostgreSQL delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

impl Listener {
    /// Connects to `url` (PostgreSQL only) and names the session `application_name`, so an
    /// operator can find it in `pg_stat_activity`. Waits at most the connect timeout of
    /// `options` for the server.
    pub fn connect(
        url: &DatabaseUrl,
        options: &ConnectionOptions,
        application_name: &str,
    ) -> Result<Self, DbError> {
        let DbConnection::Pg(mut conn) = establish(url, options).map_err(unavailable)? else {
            return Err(DbError::InvalidDsn(
                "LISTEN needs a PostgreSQL database".into(),
            ));
        };
        diesel::sql_query("SELECT set_config('application_name', $1, false)")
            .bind::<Text, _>(application_name)
            .execute(&mut conn)?;
        Ok(Self { conn })
    }

    /// `LISTEN channel` (blocking: a round trip).
    pub fn listen(&mut self, channel: &str) -> Result<(), DbError> {
        self.conn
            .batch_execute(&format!("LISTEN {}", quote_identifier(channel)))?;
        Ok(())
    }

    /// Which of the `triggers` on `table` (found on the session's `search_path`) are
    /// missing or disabled.
    pub fn missing_triggers(
        &mut self,
        table: &str,
        triggers: &[&str],
    ) -> Result<Vec<String>, DbError> {
        #[derive(QueryableByName)]
        struct Missing {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let missing: Vec<Missing> = diesel::sql_query(
            "SELECT wanted.name FROM unnest($2) AS wanted(name) WHERE NOT EXISTS (\
                 SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) \
                 AND tgname = wanted.name AND tgenabled <> 'D')",
        )
        .bind::<Text, _>(table)
        .bind::<Array<Text>, _>(triggers)
        .load(&mut self.conn)?;
        Ok(missing.into_iter().map(|missing| missing.name).collect())
    }

    /// Sends `NOTIFY channel, payload` from this session (blocking: a round trip).
    pub fn notify(&mut self, channel: &str, payload: &str) -> Result<(), DbError> {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(channel)
            .bind::<Text, _>(payload)
            .execute(&mut self.conn)?;
        Ok(())
    }

    /// The notifications that have arrived, in commit order; never waits for more.
    pub fn received(&mut self) -> Result<Vec<Notification>, DbError> {
        self.conn
            .notifications_iter()
            .map(|received| {
                received
                    .map(|n| Notification {
                        channel: n.channel,
                        payload: n.payload,
                    })
                    .map_err(|e| DbError::Unavailable(one_line(&e.to_string())))
            })
            .collect()
    }
}

fn unavailable(error: diesel::r2d2::Error) -> DbError {
    DbError::Unavailable(one_line(&error.to_string()))
}

/// `name` as a PostgreSQL identifier, quoted.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQLite connection of its own that tells whether anyone else has committed to the file.
pub struct DataVersion {
    conn: SqliteConnection,
}

impl DataVersion {
    /// Opens `url` (SQLite only).
    pub fn open(url: &DatabaseUrl) -> Result<Self, DbError> {
        let options = ConnectionOptions {
            busy_timeout: Duration::from_millis(100),
            ..ConnectionOptions::default()
        };
        match establish(url, &options).map_err(unavailable)? {
            DbConnection::Sqlite(conn) => Ok(Self { conn }),
            DbConnection::Pg(_) => Err(DbError::InvalidDsn(
                "PRAGMA data_version needs a SQLite database".into(),
            )),
        }
    }

    /// `PRAGMA data_version`: changes whenever another connection, in this process or any
    /// other, commits to the file (<https://sqlite.org/pragma.html#pragma_data_version>).
    /// Reads no table; takes microseconds.
    pub fn read(&mut self) -> Result<i64, DbError> {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = BigInt)]
            data_version: i64,
        }
        let row: Version = diesel::sql_query("PRAGMA data_version").get_result(&mut self.conn)?;
        Ok(row.data_version)
    }
}
