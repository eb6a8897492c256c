//! The request buckets in PostgreSQL, shared by every instance on one database (the rule is
//! in [`super::bucket`]; the table and function in the `rate_limits` migration).
//!
//! A lease is one statement on one pooled connection, a call of `rate_limit_lease`, which
//! locks the bucket's row, so racing leases from any number of instances queue on it and
//! never grant more than the bucket holds. Time is the database's.

use std::time::Duration;

use diesel::prelude::*;
use myapi_models::{DbConnection, DbError};

use super::bucket::{BucketKey, Grant, Policy};
use crate::ServiceError;
use crate::database::Database;

mod sql {
    use diesel::sql_types::{Bytea, Double, Integer};

    diesel::define_sql_function! {
        /// `{granted, backlog seconds}`.
        fn rate_limit_lease(key: Bytea, step: Double, burst: Double, want: Integer) -> Array<Double>;
    }
}

/// Longest a lease waits for a pooled connection. A lease has a fallback (the instance's
/// own memory), so it must not hold a request for the pool's whole wait when the pool is
/// busy or the database is down.
const POOL_WAIT: Duration = Duration::from_millis(100);

/// The buckets of every instance on this PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: Database,
}

impl PostgresStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

impl PostgresStore {
    /// Takes what the bucket can give, up to `want` (at least 1); `None` when the pool had
    /// no connection free within [`POOL_WAIT`].
    pub fn lease(
        &self,
        key: BucketKey,
        policy: Policy,
        want: u32,
    ) -> Result<Option<Grant>, ServiceError> {
        let Some(mut conn) = self.db.conn_briefly(POOL_WAIT)? else {
            return Ok(None);
        };
        let DbConnection::Pg(pg) = &mut *conn else {
            return Err(ServiceError::Unavailable(DbError::Unavailable(
                "the shared request limits need PostgreSQL".into(),
            )));
        };
        let answer = diesel::select(sql::rate_limit_lease(
            key.to_bytes(),
            policy.interval(),
            f64::from(policy.burst),
            i32::try_from(want.max(1)).unwrap_or(i32::MAX),
        ))
        .get_result::<Vec<f64>>(pg)
        .map_err(|error| ServiceError::Unavailable(DbError::Query(error)))?;
        match answer[..] {
            [granted, backlog_secs] => Ok(Some(Grant {
                granted: granted.clamp(0.0, f64::from(want)) as u32,
                backlog_secs,
            })),
            _ => Err(ServiceError::internal(
                "rate_limit_lease answered a malformed grant",
                format!("{answer:?}"),
            )),
        }
    }
}
