//! Request limits for every route outside login: a bucket per caller and class
//! ([`bucket`]), shared by the fleet on PostgreSQL without a database call per request.
//!
//! On PostgreSQL each instance takes a caller's requests from the shared bucket in leases
//! and spends them from memory. A lease is sized to what the caller spent in the last
//! [`LEASE_SECS`] on this instance (at least [`MIN_LEASE`], at most a quarter of the burst),
//! and the next one is taken in the background once a quarter of it is left, so a steady
//! caller costs one database call per [`LEASE_SECS`] and never waits for one. A refusal is
//! remembered until the bucket can grant again, so a flood is refused from memory too.
//!
//! Worst case with N instances: a lease's requests are charged to the bucket when taken, so
//! a caller gets at most its burst plus `per_second` for each second, plus what the
//! instances held unspent at the start: N × 1.25 × the lease size, which is at most
//! N × 1.25 × burst / 4. An instance that dies takes its unspent lease with it: that
//! caller's bucket misses at most 1.25 × the lease, which it regains in as many intervals.
//! While PostgreSQL cannot be reached, each instance limits alone from memory (each then
//! grants the whole budget), and asks the store again once a second, so an outage does not
//! make requests wait for the pool.
//!
//! On SQLite the buckets are in memory ([`MemoryStore`]), one per process.

pub mod bucket;
mod postgres_store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use bucket::{BucketKey, Caller, Class, MAX_TRACKED_BUCKETS, MemoryStore, Policy};
use bucket::{Grant, LeaseStore};
pub use postgres_store::PostgresStore;

use crate::bounded::{BoundedMap, Retention};
use crate::config::{ClassLimit, LimitSettings};
use crate::database::Database;
use crate::{ServiceError, error_chain};

/// Counter, labels `class` and `result` (`granted`, `refused`, `failed`): leases asked of
/// the shared store.
pub const LEASES_METRIC: &str = "myapi_rate_limit_leases_total";

/// The span of spending one lease covers.
pub const LEASE_SECS: f64 = 1.0;
/// The smallest lease (but never more than the burst allows).
pub const MIN_LEASE: u32 = 4;
/// After the shared store failed, how long buckets are kept in memory before it is asked
/// again: a database that is down must not make every request wait for the pool first.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Unspent requests of a lease not touched for this long are dropped, so an idle caller's
/// entry goes and a stale lease is never spent long after it was taken.
const LEASE_TTL: Duration = Duration::from_secs(10);

/// What an instance holds of one bucket.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Leased requests not yet spent.
    tokens: u32,
    /// The shared bucket's backlog at `seen` (for the remaining count a client is shown).
    backlog_secs: f64,
    seen: Instant,
    /// Refused without asking the store until then.
    refused_until: Option<Instant>,
    /// A background lease is under way.
    refilling: bool,
    /// When the current lease began, and its size: the next lease is sized on how fast
    /// this one went.
    leased_at: Instant,
    leased: u32,
}

/// How a request fared against its bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub class: Class,
    pub policy: Policy,
    /// Requests the caller can still make at once (this instance's view on PostgreSQL).
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: f64,
    /// `Some(seconds)`: refused; retry after that long.
    pub retry_after_secs: Option<f64>,
    /// A lease the caller should take in the background ([`RateLimiter::refill`]).
    pub refill: bool,
}

/// What [`RateLimiter::admit`] could decide from memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    Decided(Decision),
    /// This instance holds nothing of the bucket: [`RateLimiter::lease`] (blocking) decides.
    NeedsLease(Lease),
}

/// A lease a request must take before it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    key: BucketKey,
    want: u32,
    /// The one lease of the bucket under way on this instance; the others ask for one
    /// request each, so a crowd arriving at once does not lease a share each.
    first: bool,
}

/// Every class's limits, and the buckets (cheap to clone: shared).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    read: Policy,
    write: Policy,
    /// PostgreSQL, shared by the fleet; `None` keeps buckets in [`Inner::memory`].
    shared: Option<PostgresStore>,
    /// The buckets on SQLite, and while the shared store fails.
    memory: MemoryStore,
    held: Mutex<BoundedMap<BucketKey, Held>>,
    /// Set while the shared store fails, so its failure is logged once per outage.
    store_failing: AtomicBool,
    /// Until when the shared store is not asked, after it failed.
    store_retry_at: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(db: &Database, settings: &LimitSettings) -> Result<Self, ServiceError> {
        let shared = settings.store.is_shared(db, "limits.store")?;
        let policy = |class: &ClassLimit| Policy {
            per_second: class.per_second.get(),
            burst: class.burst.get(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: settings.enabled,
                read: policy(&settings.read),
                write: policy(&settings.write),
                shared: shared.then(|| PostgresStore::new(db.clone())),
                memory: MemoryStore::default(),
                held: Mutex::new(BoundedMap::new(MAX_TRACKED_BUCKETS)),
                store_failing: AtomicBool::new(false),
                store_retry_at: Mutex::new(None),
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    pub fn policy(&self, class: Class) -> Policy {
        match class {
            Class::Read => self.inner.read,
            Class::Write => self.inner.write,
        }
    }

    /// Whether [`Self::lease`] and [`Self::refill`] wait on the database.
    pub fn blocks(&self) -> bool {
        self.inner.shared.is_some()
    }

    /// The most memory the limiter's own state can take, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.lock().max_bytes() + self.inner.memory.max_bytes()
    }

    fn lock(&self) -> MutexGuard<'_, BoundedMap<BucketKey, Held>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends one request of `key`'s bucket from memory when it can: always on SQLite; on
    /// PostgreSQL from a lease this instance holds, or refused while a refusal stands.
    pub fn admit(&self, key: BucketKey) -> Admission {
        let policy = self.policy(key.class);
        let now = Instant::now();
        if self.inner.shared.is_none() || self.store_resting(now) {
            let grant = self.inner.memory.lease_at(key, policy, 1, now);
            return Admission::Decided(decide(key.class, policy, grant, 0));
        }
        let mut held = self.lock();
        let entry = held.get_mut(&key);
        let usable = entry.as_ref().is_some_and(|entry| {
            entry.tokens > 0
                && now.duration_since(entry.seen) < LEASE_TTL
                && entry.refused_until.is_none()
        });
        match entry {
            Some(entry) if usable => {
                entry.tokens -= 1;
                let refill = !entry.refilling && entry.tokens * 4 <= entry.leased;
                entry.refilling |= refill;
                let backlog =
                    (entry.backlog_secs - now.duration_since(entry.seen).as_secs_f64()).max(0.0);
                Admission::Decided(Decision {
                    class: key.class,
                    policy,
                    remaining: policy
                        .available(backlog)
                        .saturating_add(entry.tokens)
                        .min(policy.burst),
                    reset_secs: backlog + f64::from(entry.tokens) * policy.interval(),
                    retry_after_secs: None,
                    refill,
                })
            }
            Some(entry) if entry.refused_until.is_some_and(|until| now < until) => {
                let backlog = entry.backlog_secs - now.duration_since(entry.seen).as_secs_f64();
                let until = entry.refused_until.unwrap_or(now);
                Admission::Decided(Decision {
                    class: key.class,
                    policy,
                    remaining: 0,
                    reset_secs: backlog.max(0.0),
                    retry_after_secs: Some(until.duration_since(now).as_secs_f64()),
                    refill: false,
                })
            }
            Some(entry) if entry.refilling => Admission::NeedsLease(Lease {
                key,
                want: 1,
                first: false,
            }),
            Some(entry) => {
                entry.refilling = true;
                entry.refused_until = None;
                Admission::NeedsLease(Lease {
                    key,
                    want: lease_size(Some(entry), policy, now),
                    first: true,
                })
            }
            None => {
                let placeholder = Held {
                    tokens: 0,
                    backlog_secs: 0.0,
                    seen: now,
                    refused_until: None,
                    refilling: true,
                    leased_at: now,
                    leased: 0,
                };
                insert(&mut held, key, placeholder, policy, now);
                Admission::NeedsLease(Lease {
                    key,
                    want: lease_size(None, policy, now),
                    first: true,
                })
            }
        }
    }

    /// Takes `lease` and spends one request of it (blocking on PostgreSQL): for a request
    /// [`Self::admit`] could not decide.
    pub fn lease(&self, lease: Lease) -> Decision {
        let Lease { key, want, first } = lease;
        let policy = self.policy(key.class);
        let Some(grant) = self.take(key, policy, want) else {
            if first && let Some(entry) = self.lock().get_mut(&key) {
                entry.refilling = false;
            }
            return self.lease_from_memory(key);
        };
        let now = Instant::now();
        let mut held = self.lock();
        let previous = held
            .get(&key)
            .copied()
            .filter(|entry| now.duration_since(entry.seen) < LEASE_TTL);
        let kept = previous.map_or(0, |entry| entry.tokens) + grant.granted.saturating_sub(1);
        let refused_until = (kept == 0 && grant.granted == 0)
            .then(|| now + Duration::from_secs_f64(policy.wait(grant.backlog_secs)));
        let next = Held {
            tokens: kept,
            backlog_secs: grant.backlog_secs,
            seen: now,
            refused_until,
            refilling: previous.is_some_and(|entry| entry.refilling) && !first,
            leased_at: if first {
                now
            } else {
                previous.map_or(now, |e| e.leased_at)
            },
            leased: if first {
                grant.granted
            } else {
                previous.map_or(0, |e| e.leased)
            },
        };
        insert(&mut held, key, next, policy, now);
        decide(key.class, policy, grant, kept)
    }

    /// Decides from this process's memory alone: when a lease could not be taken at all.
    pub fn lease_from_memory(&self, key: BucketKey) -> Decision {
        let policy = self.policy(key.class);
        let grant = self.inner.memory.lease_at(key, policy, 1, Instant::now());
        decide(key.class, policy, grant, 0)
    }

    /// Takes the next lease for `key` ahead of need (blocking): when a [`Decision`] asks
    /// for it, in the background.
    pub fn refill(&self, key: BucketKey) {
        let policy = self.policy(key.class);
        let want = lease_size(self.lock().get(&key), policy, Instant::now());
        let grant = self.take(key, policy, want);
        let now = Instant::now();
        let mut held = self.lock();
        let Some(entry) = held.get_mut(&key) else {
            return;
        };
        entry.refilling = false;
        if let Some(grant) = grant {
            entry.tokens = entry.tokens.saturating_add(grant.granted);
            entry.backlog_secs = grant.backlog_secs;
            entry.seen = now;
            // An empty bucket: no more refills until what is held is spent (then a lease
            // finds out whether the bucket has refilled).
            entry.leased_at = now;
            entry.leased = grant.granted;
        }
    }

    /// Whether the shared store failed less than [`STORE_RETRY`] ago.
    fn store_resting(&self, now: Instant) -> bool {
        if !self.inner.store_failing.load(Ordering::Relaxed) {
            return false;
        }
        let retry_at = self
            .inner
            .store_retry_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        retry_at.is_some_and(|at| now < at)
    }

    /// A lease from the shared store; `None` when it failed (logged once per outage,
    /// counted each time).
    fn take(&self, key: BucketKey, policy: Policy, want: u32) -> Option<Grant> {
        let Some(store) = &self.inner.shared else {
            return Some(
                self.inner
                    .memory
                    .lease_at(key, policy, want, Instant::now()),
            );
        };
        let class = key.class.as_str();
        match store.lease(key, policy, want) {
            Ok(grant) => {
                let result = if grant.granted > 0 {
                    "granted"
                } else {
                    "refused"
                };
                metrics::counter!(LEASES_METRIC, "class" => class, "result" => result).increment(1);
                if self.inner.store_failing.swap(false, Ordering::Relaxed) {
                    log::info!("rate limits: the shared store answers again");
                }
                Some(grant)
            }
            Err(error) => {
                metrics::counter!(LEASES_METRIC, "class" => class, "result" => "failed")
                    .increment(1);
                *self
                    .inner
                    .store_retry_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + STORE_RETRY);
                if !self.inner.store_failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "rate limits: the shared store failed, limiting from this instance's \
                         memory until it answers: {}",
                        error_chain(&error)
                    );
                }
                None
            }
        }
    }
}

/// The next lease's size: what this instance spent of the bucket per [`LEASE_SECS`]
/// since its last lease, within [`MIN_LEASE`] and a quarter of the burst.
fn lease_size(entry: Option<&Held>, policy: Policy, now: Instant) -> u32 {
    let largest = (policy.burst / 4).max(1);
    let smallest = MIN_LEASE.min(largest);
    let spent_rate = entry.map_or(0.0, |entry| {
        let spent = entry.leased.saturating_sub(entry.tokens);
        let secs = now.duration_since(entry.leased_at).as_secs_f64().max(1e-3);
        f64::from(spent) / secs
    });
    ((spent_rate * LEASE_SECS).ceil().min(f64::from(largest)) as u32).clamp(smallest, largest)
}

/// A decision from a grant of which one request is spent now, `kept` more held.
fn decide(class: Class, policy: Policy, grant: Grant, kept: u32) -> Decision {
    let admitted = grant.granted > 0;
    Decision {
        class,
        policy,
        remaining: policy
            .available(grant.backlog_secs)
            .saturating_add(kept)
            .min(policy.burst),
        reset_secs: grant.backlog_secs,
        retry_after_secs: (!admitted).then(|| policy.wait(grant.backlog_secs)),
        refill: false,
    }
}

fn insert(
    held: &mut BoundedMap<BucketKey, Held>,
    key: BucketKey,
    entry: Held,
    policy: Policy,
    now: Instant,
) {
    held.insert(key, entry, now, |entry| {
        let idle = now.saturating_duration_since(entry.seen);
        let refilled = idle.as_secs_f64() >= entry.backlog_secs + policy.interval();
        if idle >= LEASE_TTL || (refilled && entry.tokens == 0 && !entry.refilling) {
            Retention::Expired
        } else if entry.refused_until.is_some_and(|until| until > now) {
            Retention::Precious
        } else {
            Retention::Normal
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's bound on what the limits keep in memory, buckets and leases together.
    #[test]
    fn the_state_in_memory_is_bounded() {
        let held: BoundedMap<BucketKey, Held> = BoundedMap::new(MAX_TRACKED_BUCKETS);
        let bytes = held.max_bytes() + MemoryStore::default().max_bytes();
        println!("rate limit state: at most {} KiB", bytes / 1024);
        assert!(bytes <= 24 << 20, "{bytes} bytes");
    }
}
