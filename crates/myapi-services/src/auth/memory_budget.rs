//! The in-process login budget: leaky buckets of failed logins per client network and
//! per account, in this process's memory (SQLite, or one instance; see
//! [`super::budget`] for the rules both stores follow).
//!
//! Keys have a fixed size (a digest of the account, a network), and each map holds at most
//! [`MAX_TRACKED_KEYS`] of them, so the whole state is bounded in bytes
//! ([`MemoryBudget::max_bytes`]). Throttled keys are the last to be evicted.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ipnet::IpNet;

use super::budget::{
    Attempt, BudgetError, Digest128, Limit, LoginBudget, Reservation, TRUSTED_FOR, digest,
    retry_after,
};
use crate::ServiceError;
use crate::bounded::{BoundedMap, Retention};
use crate::config::AuthSettings;

/// Most keys each of the throttle's maps holds.
pub const MAX_TRACKED_KEYS: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Limit {
    fn level(&self, bucket: Option<&Bucket>, now: Instant) -> f64 {
        bucket.map_or(0.0, |b| {
            let leaked =
                now.saturating_duration_since(b.at).as_secs_f64() / self.leak_every.as_secs_f64();
            (b.level - leaked).max(0.0)
        })
    }

    /// `Err` when one more failure would exceed the burst.
    fn admit(&self, level: f64) -> Result<(), BudgetError> {
        if level + 1.0 > self.burst {
            Err(retry_after(
                self.leak_every.as_secs_f64() * (level + 1.0 - self.burst),
            ))
        } else {
            Ok(())
        }
    }

    fn retention(&self, bucket: &Bucket, now: Instant) -> Retention {
        let level = self.level(Some(bucket), now);
        if level <= 0.0 {
            Retention::Expired
        } else if self.admit(level).is_err() {
            Retention::Precious
        } else {
            Retention::Normal
        }
    }
}

#[derive(Debug)]
struct State {
    per_client: BoundedMap<IpNet, Bucket>,
    per_account: BoundedMap<Digest128, Bucket>,
    /// (security stamp, client network) → when it last logged in.
    trusted: BoundedMap<(Digest128, IpNet), Instant>,
}

/// The login budget of one process, shared by its workers.
#[derive(Debug)]
pub struct MemoryBudget {
    state: Mutex<State>,
    client_limit: Limit,
    account_limit: Limit,
}

impl MemoryBudget {
    pub fn new(settings: &AuthSettings) -> Self {
        Self::with_limits(Limit::client(settings), Limit::account(settings))
    }

    pub(crate) fn with_limits(client_limit: Limit, account_limit: Limit) -> Self {
        Self {
            state: Mutex::new(State {
                per_client: BoundedMap::new(MAX_TRACKED_KEYS),
                per_account: BoundedMap::new(MAX_TRACKED_KEYS),
                trusted: BoundedMap::new(MAX_TRACKED_KEYS),
            }),
            client_limit,
            account_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most memory the throttle's state can take, in bytes.
    pub fn max_bytes(&self) -> usize {
        let state = self.lock();
        state.per_client.max_bytes() + state.per_account.max_bytes() + state.trusted.max_bytes()
    }

    fn charge_client(&self, state: &mut State, client: IpNet, level: f64, now: Instant) {
        let limit = self.client_limit;
        state.per_client.insert(
            client,
            Bucket {
                level: level + 1.0,
                at: now,
            },
            now,
            |b| limit.retention(b, now),
        );
    }
}

impl LoginBudget for MemoryBudget {
    fn blocks(&self) -> bool {
        false
    }

    fn check_client(&self, client: &IpNet) -> Result<(), BudgetError> {
        let now = Instant::now();
        let state = self.lock();
        let level = self.client_limit.level(state.per_client.get(client), now);
        self.client_limit.admit(level)
    }

    fn reserve(
        &self,
        attempt: &Attempt,
        security_stamp: Option<&str>,
    ) -> Result<Reservation, BudgetError> {
        let now = Instant::now();
        let Attempt { account, client } = *attempt;
        let mut state = self.lock();
        let client_level = self.client_limit.level(state.per_client.get(&client), now);
        self.client_limit.admit(client_level)?;
        let trusted = security_stamp.is_some_and(|stamp| {
            state
                .trusted
                .get(&(digest(stamp), client))
                .is_some_and(|since| now.saturating_duration_since(*since) < TRUSTED_FOR)
        });
        let account_level = self
            .account_limit
            .level(state.per_account.get(&account), now);
        if !trusted {
            self.account_limit.admit(account_level)?;
        }
        self.charge_client(&mut state, client, client_level, now);
        if !trusted {
            let limit = self.account_limit;
            state.per_account.insert(
                account,
                Bucket {
                    level: account_level + 1.0,
                    at: now,
                },
                now,
                |b| limit.retention(b, now),
            );
        }
        Ok(Reservation {
            attempt: *attempt,
            account_charged: !trusted,
        })
    }

    /// The network's other failures stay: logging in to one's own account buys no fresh
    /// guesses against others.
    fn release(&self, reservation: &Reservation, trust: Option<&str>) -> Result<(), ServiceError> {
        let now = Instant::now();
        let attempt = &reservation.attempt;
        let mut state = self.lock();
        let refund = |limit: &Limit, bucket: Option<&mut Bucket>| {
            if let Some(bucket) = bucket {
                *bucket = Bucket {
                    level: (limit.level(Some(bucket), now) - 1.0).max(0.0),
                    at: now,
                };
            }
        };
        refund(
            &self.client_limit,
            state.per_client.get_mut(&attempt.client),
        );
        if reservation.account_charged {
            refund(
                &self.account_limit,
                state.per_account.get_mut(&attempt.account),
            );
        }
        if let Some(stamp) = trust {
            state.trusted.insert(
                (digest(stamp), attempt.client),
                now,
                now,
                |since: &Instant| {
                    if now.saturating_duration_since(*since) >= TRUSTED_FOR {
                        Retention::Expired
                    } else {
                        Retention::Normal
                    }
                },
            );
        }
        Ok(())
    }

    fn count_client_failure(&self, client: &IpNet) -> Result<(), ServiceError> {
        let now = Instant::now();
        let mut state = self.lock();
        let level = self.client_limit.level(state.per_client.get(client), now);
        self.charge_client(&mut state, *client, level, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn failures_leak_away() {
        let limit = Limit::new(2, 1);
        let start = Instant::now();
        let bucket = Bucket {
            level: 2.0,
            at: start,
        };
        assert!(limit.admit(limit.level(Some(&bucket), start)).is_err());
        let later = start + Duration::from_secs(1);
        assert!(limit.admit(limit.level(Some(&bucket), later)).is_ok());
    }
}
