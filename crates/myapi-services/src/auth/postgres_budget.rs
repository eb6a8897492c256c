//! The login budget in PostgreSQL, shared by every instance on one database (the rules are
//! in [`super::budget`]; the tables and functions in the `login_budgets` migration).
//!
//! Each step is one statement on one pooled connection, a call of one of the migration's
//! functions: a reservation calls `login_budget_reserve_v2`, which locks the account's and
//! the client's rows (account first, so steps should never deadlock; a step that does is
//! retried in the database, twice), and charges both or neither, so racing reservations
//! from any number of instances queue on the rows and cannot over-admit. Time is the
//! database's.
//! Rows are UNLOGGED; each reservation deletes the fully leaked ones among 32 rows from a
//! random key on, so stale rows stay a small share of the table.
//!
//! Any failure of the store is [`ServiceError::Unavailable`]: an attempt the budget could
//! not count must not go ahead, and the client is told to come back, not that its
//! password was wrong.

use diesel::prelude::*;
use ipnet::IpNet;
use myapi_models::{DbConnection, DbError};

use super::budget::{
    Attempt, BudgetError, Limit, LoginBudget, Reservation, TRUSTED_FOR, digest, retry_after,
};
use crate::ServiceError;
use crate::config::AuthSettings;
use crate::database::Database;

// The migration's functions (found through the connection's `search_path`). Called through
// the query builder, so each connection prepares each call once and reuses it.
#[allow(clippy::too_many_arguments)] // a reservation's eight parameters
mod sql {
    use diesel::sql_types::{Bytea, Double, Nullable};

    diesel::define_sql_function! {
        fn login_budget_reserve_v2(
            account_key: Bytea, account_burst: Double, account_leak: Double,
            client_key: Bytea, client_burst: Double, client_leak: Double,
            stamp: Nullable<Bytea>, trusted_secs: Double
        ) -> Nullable<Double>;
    }
    diesel::define_sql_function! {
        fn login_budget_release(
            account_key: Bytea, account_leak: Double,
            client_key: Bytea, client_leak: Double,
            stamp: Nullable<Bytea>, trusted_secs: Double
        ) -> Integer;
    }
    diesel::define_sql_function! {
        fn login_budget_client_wait(key: Bytea, burst: Double, leak: Double) -> Nullable<Double>;
    }
    diesel::define_sql_function! {
        fn login_budget_charge_client(key: Bytea, leak: Double) -> Double;
    }
}
use sql::{
    login_budget_charge_client, login_budget_client_wait, login_budget_release,
    login_budget_reserve_v2,
};

/// The login budget of every instance on this PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresBudget {
    db: Database,
    client_limit: Limit,
    account_limit: Limit,
    /// Put before every key, so that another budget's buckets (the sign-ups') are rows of
    /// their own in the same table; empty for the login budget.
    namespace: &'static [u8],
}

/// The account's row key: `a` and its digest.
fn account_key(attempt: &Attempt) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(b'a');
    key.extend_from_slice(&attempt.account);
    key
}

/// The client network's row key: `c`, the prefix length, and the (truncated) address:
/// 4 bytes for IPv4, 16 for IPv6, so the two never collide.
fn client_key(client: &IpNet) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&[b'c', client.prefix_len()]);
    match client.trunc().addr() {
        std::net::IpAddr::V4(address) => key.extend_from_slice(&address.octets()),
        std::net::IpAddr::V6(address) => key.extend_from_slice(&address.octets()),
    }
    key
}

fn store_error(error: diesel::result::Error) -> ServiceError {
    ServiceError::Unavailable(DbError::Query(error))
}

impl PostgresBudget {
    pub fn new(db: Database, settings: &AuthSettings) -> Self {
        Self::with_limits(db, Limit::client(settings), Limit::account(settings), b"")
    }

    /// A budget with buckets of its own: `namespace` goes before each of its keys.
    pub(crate) fn with_limits(
        db: Database,
        client_limit: Limit,
        account_limit: Limit,
        namespace: &'static [u8],
    ) -> Self {
        Self {
            db,
            client_limit,
            account_limit,
            namespace,
        }
    }

    fn keyed(&self, key: Vec<u8>) -> Vec<u8> {
        [self.namespace, &key].concat()
    }

    /// Runs `step` on a pooled PostgreSQL connection.
    fn with_pg<T>(
        &self,
        step: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
    ) -> Result<T, ServiceError> {
        let mut conn = self.db.conn()?;
        match &mut *conn {
            DbConnection::Pg(pg) => step(pg).map_err(store_error),
            DbConnection::Sqlite(_) => Err(ServiceError::Unavailable(DbError::Unavailable(
                "the shared login budget needs PostgreSQL".into(),
            ))),
        }
    }
}

impl LoginBudget for PostgresBudget {
    fn blocks(&self) -> bool {
        true
    }

    fn check_client(&self, client: &IpNet) -> Result<(), BudgetError> {
        let limit = self.client_limit;
        let wait = self.with_pg(|pg| {
            diesel::select(login_budget_client_wait(
                self.keyed(client_key(client)),
                limit.burst,
                limit.leak_every.as_secs_f64(),
            ))
            .get_result::<Option<f64>>(pg)
        })?;
        match wait {
            Some(wait) if wait > 0.0 => Err(retry_after(wait)),
            _ => Ok(()),
        }
    }

    fn reserve(
        &self,
        attempt: &Attempt,
        security_stamp: Option<&str>,
    ) -> Result<Reservation, BudgetError> {
        let (account, client) = (self.account_limit, self.client_limit);
        let wait = self.with_pg(|pg| {
            diesel::select(login_budget_reserve_v2(
                self.keyed(account_key(attempt)),
                account.burst,
                account.leak_every.as_secs_f64(),
                self.keyed(client_key(&attempt.client)),
                client.burst,
                client.leak_every.as_secs_f64(),
                security_stamp.map(|stamp| digest(stamp).to_vec()),
                TRUSTED_FOR.as_secs_f64(),
            ))
            .get_result::<Option<f64>>(pg)
        })?;
        // NULL: both charged; 0: the client alone (trusted); else the seconds to wait.
        match wait {
            Some(wait) if wait > 0.0 => Err(retry_after(wait)),
            charged => Ok(Reservation {
                attempt: *attempt,
                account_charged: charged.is_none(),
            }),
        }
    }

    fn release(&self, reservation: &Reservation, trust: Option<&str>) -> Result<(), ServiceError> {
        let (account, client) = (self.account_limit, self.client_limit);
        let attempt = &reservation.attempt;
        // A leak of 0 refunds nothing: an account the reservation did not charge.
        let account_refund = if reservation.account_charged {
            account.leak_every.as_secs_f64()
        } else {
            0.0
        };
        self.with_pg(|pg| {
            diesel::select(login_budget_release(
                self.keyed(account_key(attempt)),
                account_refund,
                self.keyed(client_key(&attempt.client)),
                client.leak_every.as_secs_f64(),
                trust.map(|stamp| digest(stamp).to_vec()),
                TRUSTED_FOR.as_secs_f64(),
            ))
            .get_result::<i32>(pg)
            .map(drop)
        })
    }

    fn count_client_failure(&self, client: &IpNet) -> Result<(), ServiceError> {
        let leak = self.client_limit.leak_every.as_secs_f64();
        self.with_pg(|pg| {
            diesel::select(login_budget_charge_client(
                self.keyed(client_key(client)),
                leak,
            ))
            .get_result::<f64>(pg)
            .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn client_keys_are_canonical_and_families_never_collide() {
        let v4: IpNet = IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 32).unwrap();
        assert_eq!(client_key(&v4), [b'c', 32, 10, 0, 0, 1]);
        let v6 = IpNet::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 1, 2, 3, 4)),
            64,
        )
        .unwrap();
        let key = client_key(&v6);
        assert_eq!(key.len(), 18);
        assert!(key[10..].iter().all(|b| *b == 0), "host bits cleared");
        assert!(
            client_key(&v4)
                > account_key(&Attempt {
                    account: [0xff; 16],
                    client: v4
                })
        );
    }
}
