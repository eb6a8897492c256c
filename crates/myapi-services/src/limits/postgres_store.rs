//! The request buckets in PostgreSQL, shared by every instance on one database (the rule is
//! in [`super::bucket`]; the table and function in the `rate_limits` and
//! `rate_limit_lease_batches` migrations).
//!
//! Leases are one statement on one pooled connection, a call of `rate_limit_lease_many`,
//! which locks the buckets' rows in key order, so racing leases from any number of
//! instances queue on them, never deadlock, and never grant more than a bucket holds. Time
//! is the database's.

use std::time::Duration;

use diesel::prelude::*;
use myapi_models::{DbConnection, DbError};

use super::bucket::{BucketKey, Grant, Policy};
use crate::ServiceError;
use crate::database::Database;

mod sql {
    use diesel::sql_types::{Array, Bytea, Double, Integer};

    diesel::define_sql_function! {
        /// `{granted, backlog seconds}` for each key in turn.
        fn rate_limit_lease_many(
            keys: Array<Bytea>,
            steps: Array<Double>,
            bursts: Array<Double>,
            wants: Array<Integer>,
        ) -> Array<Double>;
    }
}

/// Longest a lease waits for a pooled connection. A lease has a fallback (the instance's
/// own memory), so it must not hold a request for the pool's whole wait when the pool is
/// busy or the database is down.
const POOL_WAIT: Duration = Duration::from_millis(100);

/// One bucket's part of a lease: up to `want` requests (at least 1).
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest {
    pub key: BucketKey,
    pub policy: Policy,
    pub want: u32,
}

/// The buckets of every instance on this PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: Database,
}

impl PostgresStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Takes what each bucket can give, in one statement; the grants come in the order of
    /// `requests`. `None` when the pool had no connection free within [`POOL_WAIT`].
    pub fn lease(&self, requests: &[LeaseRequest]) -> Result<Option<Vec<Grant>>, ServiceError> {
        let Some(mut conn) = self.db.conn_briefly(POOL_WAIT)? else {
            return Ok(None);
        };
        let DbConnection::Pg(pg) = &mut *conn else {
            return Err(ServiceError::Unavailable(DbError::Unavailable(
                "the shared request limits need PostgreSQL".into(),
            )));
        };
        let wants: Vec<i32> = requests
            .iter()
            .map(|request| i32::try_from(request.want.max(1)).unwrap_or(i32::MAX))
            .collect();
        let answer = diesel::select(sql::rate_limit_lease_many(
            requests
                .iter()
                .map(|request| request.key.to_bytes())
                .collect::<Vec<_>>(),
            requests
                .iter()
                .map(|request| request.policy.interval())
                .collect::<Vec<_>>(),
            requests
                .iter()
                .map(|request| f64::from(request.policy.burst))
                .collect::<Vec<_>>(),
            &wants,
        ))
        .get_result::<Vec<f64>>(pg)
        .map_err(|error| ServiceError::Unavailable(DbError::Query(error)))?;
        if answer.len() != 2 * requests.len() {
            return Err(ServiceError::internal(
                "rate_limit_lease_many answered a malformed grant",
                format!("{answer:?} for {} leases", requests.len()),
            ));
        }
        Ok(Some(
            answer
                .chunks_exact(2)
                .zip(requests)
                .map(|(pair, request)| Grant {
                    granted: pair[0].clamp(0.0, f64::from(request.want)) as u32,
                    backlog_secs: pair[1],
                })
                .collect(),
        ))
    }
}
