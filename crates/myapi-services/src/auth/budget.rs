//! The login budget: what `/token`, refresh and revocation spend, behind one trait with two
//! stores.
//!
//! - [`MemoryBudget`](super::MemoryBudget) keeps it in this process: one instance, or
//!   SQLite.
//! - [`PostgresBudget`](super::PostgresBudget) keeps it in PostgreSQL, so every instance
//!   on one database spends the same budget.
//!
//! Each is a pair of leaky buckets of failed logins, one per client network and one per
//! account: `burst` failures, one leaking out every `refill_secs`. An attempt is reserved
//! against both before its password is checked, and given back on success. A client network
//! that logged in to an account (under its current security stamp) is trusted for it: its
//! failures are charged to its own bucket only, never the account's, so it passes a
//! throttled account and cannot throttle it for others (a device retrying a stale password). Keys are the same on every instance: a 128-bit
//! SHA-256 prefix of the normalised email, and the client's network.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::ServiceError;
use crate::config::AuthSettings;

/// How long a successful login keeps its client network trusted for that account.
pub(crate) const TRUSTED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A 128-bit digest: the fixed-size form of a normalised email or a security stamp.
pub type Digest128 = [u8; 16];

pub(crate) fn digest(text: &str) -> Digest128 {
    let mut out = [0u8; 16];
    out.copy_from_slice(&Sha256::digest(text.as_bytes())[..16]);
    out
}

/// One login attempt's keys: the account and the client network it is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub account: Digest128,
    pub client: IpNet,
}

/// What a reservation charged, for [`LoginBudget::release`] to give back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub attempt: Attempt,
    /// `false` when the client network is trusted for the account, and so was charged alone.
    pub account_charged: bool,
}

/// A budget refused, or the store could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The client's or the account's budget is used up.
    #[error("login budget used up; retry in {retry_after_secs} s")]
    Exhausted { retry_after_secs: u64 },
    /// The store failed (the database is down): nothing was charged, and the attempt must
    /// not go ahead.
    #[error(transparent)]
    Store(#[from] ServiceError),
}

/// The steps of a login against a budget store. They block (a shared store queries the
/// database): callers run them where blocking is allowed when [`LoginBudget::blocks`].
pub trait LoginBudget: Send + Sync + fmt::Debug {
    /// Whether the steps wait on I/O, so an async caller must move them to a blocking
    /// thread. An in-process store answers `false` and is called in place.
    fn blocks(&self) -> bool;

    /// `Err(Exhausted)` when the client's network has used up its budget. Charges nothing.
    fn check_client(&self, client: &IpNet) -> Result<(), BudgetError>;

    /// Charges one failure to the client network and to the account, both or neither; or,
    /// when the client network logged in to the account under `security_stamp` (the
    /// account's current one) within [`TRUSTED_FOR`], to the client network alone. A full
    /// client budget refuses, and so does a full account budget for an untrusted client.
    /// Until [`LoginBudget::release`], the attempt counts as a failure, so guesses still
    /// waiting for a hashing thread already count.
    fn reserve(
        &self,
        attempt: &Attempt,
        security_stamp: Option<&str>,
    ) -> Result<Reservation, BudgetError>;

    /// Gives a reservation back. With `trust`, the password matched: the client network
    /// is also trusted for the account while its security stamp stays `trust`. Without,
    /// the attempt failed through no doing of the client (the database was down).
    fn release(&self, reservation: &Reservation, trust: Option<&str>) -> Result<(), ServiceError>;

    /// Charges a failure to the client network alone: a refresh or revocation with a
    /// token that is no good, where there is no account to charge.
    fn count_client_failure(&self, client: &IpNet) -> Result<(), ServiceError>;
}

/// A leaky bucket's rule: `burst` failures, one leaking out every `leak_every`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub(crate) burst: f64,
    pub(crate) leak_every: Duration,
}

impl Limit {
    pub(crate) fn new(burst: u32, leak_every_secs: u64) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            leak_every: Duration::from_secs(leak_every_secs).max(Duration::from_millis(1)),
        }
    }

    pub(crate) fn client(settings: &AuthSettings) -> Self {
        Self::new(
            settings.ip_failure_burst.get(),
            settings.ip_failure_refill_secs,
        )
    }

    pub(crate) fn account(settings: &AuthSettings) -> Self {
        Self::new(
            settings.account_failure_burst.get(),
            settings.account_failure_refill_secs,
        )
    }
}

/// Whole seconds to wait, rounded up, and at least 1: `Retry-After` of a refusal.
pub(crate) fn retry_after(wait_secs: f64) -> BudgetError {
    let secs = if wait_secs.is_finite() {
        wait_secs.ceil().clamp(1.0, u64::MAX as f64) as u64
    } else {
        1
    };
    BudgetError::Exhausted {
        retry_after_secs: secs,
    }
}

/// How client addresses and emails become budget keys, the same on every instance.
#[derive(Debug, Clone, Copy)]
pub struct BudgetKeys {
    ipv4_prefix_len: u8,
    ipv6_prefix_len: u8,
}

impl BudgetKeys {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            ipv4_prefix_len: settings.ipv4_prefix_len,
            ipv6_prefix_len: settings.ipv6_prefix_len,
        }
    }

    /// The network a client address counts as: IPv4 (an IPv4-mapped IPv6 address
    /// included) by `ipv4_prefix_len`, IPv6 by `ipv6_prefix_len`. One host owns a whole
    /// IPv6 /64, so counting single IPv6 addresses would hand out 2^64 budgets.
    pub fn network(&self, client: IpAddr) -> IpNet {
        let client = client.to_canonical();
        let prefix = match client {
            IpAddr::V4(_) => self.ipv4_prefix_len,
            IpAddr::V6(_) => self.ipv6_prefix_len,
        };
        IpNet::new(client, prefix)
            .unwrap_or_else(|_| IpNet::from(client))
            .trunc()
    }

    /// The keys of an attempt on `account` (a normalised email) from `client`.
    pub fn attempt(&self, account: &str, client: IpAddr) -> Attempt {
        Attempt {
            account: digest(account),
            client: self.network(client),
        }
    }
}
