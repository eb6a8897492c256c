//! Request limits for every route outside login: a bucket per caller and class
//! ([`bucket`]), shared by the fleet on PostgreSQL without a database call per request.
//!
//! On PostgreSQL each instance takes a caller's requests from the shared bucket in leases
//! and spends them from memory. A lease is [`LEASE_SECS`] of what the caller has been
//! spending on this instance (at least [`MIN_LEASE`], at most a quarter of the burst), and
//! the next one is taken ahead of need once a quarter of it is left, by the instance's
//! refill thread, which gathers the refills due for `REFILL_GATHER` and takes them in one
//! statement: a steady caller never waits for the database, and an instance's refills
//! cost it at most one statement per `REFILL_GATHER`, however many callers it serves
//! (up to `MAX_REFILL_BATCH` leases each). When the
//! bucket has less than a lease asked, the store is not asked again before it has that
//! much (or a quarter second's worth of requests, if less), and requests that find nothing held are refused from memory until then: a caller
//! past its limit gets its requests back a lease at a time, and a flood costs the database
//! one call per lease, not per request.
//!
//! Worst case with N instances: a lease's requests are charged to the bucket when taken, so
//! a caller gets at most its burst plus `per_second` for each second, plus what the
//! instances held unspent at the start: at most 1.25 leases each, N × 1.25 × burst / 4.
//! An instance that dies takes its unspent lease with it: that caller's bucket misses at
//! most that much, which it regains in as many intervals.
//!
//! A lease that finds no pooled connection free within 100 ms is done without: that
//! request is counted in memory. While PostgreSQL fails, each instance limits alone from
//! memory (each then grants the whole budget) and asks the store again once a second, so an
//! outage does not make requests wait for the pool.
//!
//! On SQLite the buckets are in memory ([`MemoryStore`]), one per process.

pub mod bucket;
mod postgres_store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use bucket::Grant;
pub use bucket::{BucketKey, Caller, Class, MAX_TRACKED_BUCKETS, MemoryStore, Policy};
use crossbeam_channel::{Receiver, Sender};
use postgres_store::{LeaseRequest, PostgresStore};

use crate::bounded::{BoundedMap, Retention, ShardedMap};
use crate::config::{ClassLimit, LimitSettings};
use crate::database::Database;
use crate::{ServiceError, error_chain};

/// Counter, labels `class` and `result`: leases asked of the shared store, by what came of
/// them (`granted`; `refused`, the bucket was empty; `busy`, no pooled connection was free;
/// `failed`, the database did not answer).
pub const LEASES_METRIC: &str = "myapi_rate_limit_leases_total";
/// Counter: statements sent to the shared store; each takes one or more leases.
pub const LEASE_STATEMENTS_METRIC: &str = "myapi_rate_limit_lease_statements_total";

/// Seconds of a caller's spending one lease covers. Longer leases cost the database fewer
/// statements (at 20,000 reads/s from 400 callers, one-second leases took a tenth of the
/// throughput, five-second ones a few percent); the quarter-burst cap keeps what an
/// instance holds, and so the fleet bound, the same.
pub const LEASE_SECS: f64 = 5.0;
/// The smallest lease (but never more than the burst allows).
pub const MIN_LEASE: u32 = 4;
/// After the shared store failed, how long buckets are kept in memory before it is asked
/// again: a database that is down must not make every request wait for the pool first.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Unspent requests of a lease not touched for this long are dropped, so an idle caller's
/// entry goes and a stale lease is never spent long after it was taken.
const LEASE_TTL: Duration = Duration::from_secs(10);

/// A lease under way longer than this is taken for lost (its blocking task failed, or no
/// refill thread runs), and the next request leases again.
const LEASE_DEADLINE: Duration = Duration::from_secs(5);

/// How long the refill thread gathers refills after the first before it takes them all in
/// one statement. A refill is due when a quarter of a lease is left, which lasts 125 ms
/// even for a caller at the default read rate's limit; at 400 callers spending 20,000
/// requests a second, 20 ms turn ~450 statements a second into at most 50.
const REFILL_GATHER: Duration = Duration::from_millis(20);
/// The most leases one statement takes.
const MAX_REFILL_BATCH: usize = 256;

/// What an instance holds of one bucket.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Leased requests not yet spent (all of them lapse [`LEASE_TTL`] after `granted_at`).
    tokens: u32,
    /// When the last lease that granted anything was taken, and what it granted: the next
    /// lease is sized on how fast it went.
    granted_at: Instant,
    granted: u32,
    /// When the shared bucket will be full again, as the store last told it.
    full_at: Instant,
    /// The bucket had less than the last lease asked: the store is not asked again before
    /// it has that much (or a quarter second's worth), and requests that find nothing held
    /// are refused until then.
    next_lease_at: Option<Instant>,
    /// When the lease under way (a request's or a refill) began.
    leasing_since: Option<Instant>,
}

impl Held {
    fn new(now: Instant) -> Self {
        Self {
            tokens: 0,
            granted_at: now,
            granted: 0,
            full_at: now,
            next_lease_at: None,
            leasing_since: None,
        }
    }

    fn tokens(&self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.granted_at) < LEASE_TTL {
            self.tokens
        } else {
            0
        }
    }

    fn backlog(&self, now: Instant) -> f64 {
        self.full_at.saturating_duration_since(now).as_secs_f64()
    }

    fn leasing(&self, now: Instant) -> bool {
        self.leasing_since
            .is_some_and(|since| now.saturating_duration_since(since) < LEASE_DEADLINE)
    }

    fn waiting_until(&self, now: Instant) -> Option<Instant> {
        self.next_lease_at.filter(|at| now < *at)
    }

    /// Takes in what the store answered to a lease of `want`.
    fn record(&mut self, grant: Grant, want: u32, policy: Policy, now: Instant) {
        self.tokens = self.tokens(now).saturating_add(grant.granted);
        if grant.granted > 0 {
            self.granted_at = now;
            self.granted = grant.granted;
        }
        self.full_at = now + Duration::from_secs_f64(grant.backlog_secs.max(0.0));
        // Waiting for the whole lease could be long at a low rate: a quarter second's worth
        // is enough to keep a flood's statements few.
        let chunk = want.min((policy.per_second / 4).max(1));
        self.next_lease_at = (grant.granted < want)
            .then(|| now + Duration::from_secs_f64(policy.wait_for(grant.backlog_secs, chunk)));
    }

    /// Spends one held request, or refuses until the store may be asked again.
    fn spend(&mut self, class: Class, policy: Policy, now: Instant) -> Decision {
        let tokens = self.tokens(now);
        self.tokens = tokens.saturating_sub(1);
        let retry_after_secs = (tokens == 0).then(|| {
            self.waiting_until(now).map_or_else(
                || policy.wait(self.backlog(now)),
                |at| at.duration_since(now).as_secs_f64(),
            )
        });
        let backlog = self.backlog(now);
        Decision {
            class,
            policy,
            remaining: if tokens == 0 {
                0
            } else {
                policy
                    .available(backlog)
                    .saturating_add(self.tokens)
                    .min(policy.burst)
            },
            reset_secs: backlog,
            retry_after_secs,
        }
    }
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
    held: ShardedMap<BucketKey, Held>,
    /// Set while the shared store fails, so its failure is logged once per outage.
    store_failing: AtomicBool,
    /// Until when the shared store is not asked, after it failed.
    store_retry_at: Mutex<Option<Instant>>,
    /// Refills due, for the refill thread ([`RateLimiter::start_refills`]). Each key is
    /// queued at most once per lease, so the queue is no longer than `held`.
    refills: (Sender<BucketKey>, Receiver<BucketKey>),
}

impl RateLimiter {
    pub fn new(db: &Database, settings: &LimitSettings) -> Result<Self, ServiceError> {
        let shared = settings.store.is_shared(db, "limits.store")?;
        let policy = |key: &'static str, class: &ClassLimit| {
            let (per_second, burst) = (class.per_second.get(), class.burst.get());
            if burst < per_second {
                // The RateLimit fields could not describe it: their window is a whole second
                // at least.
                return Err(ServiceError::invalid(
                    key,
                    format!("burst ({burst}) must be at least per_second ({per_second})"),
                ));
            }
            Ok(Policy { per_second, burst })
        };
        Ok(Self {
            inner: Arc::new(Inner {
                enabled: settings.enabled,
                read: policy("limits.read.burst", &settings.read)?,
                write: policy("limits.write.burst", &settings.write)?,
                shared: shared.then(|| PostgresStore::new(db.clone())),
                memory: MemoryStore::default(),
                held: ShardedMap::new(MAX_TRACKED_BUCKETS),
                store_failing: AtomicBool::new(false),
                store_retry_at: Mutex::new(None),
                refills: crossbeam_channel::unbounded(),
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

    /// Whether [`Self::lease`] and [`Self::refill_queued`] wait on the database.
    pub fn blocks(&self) -> bool {
        self.inner.shared.is_some()
    }

    fn lock(&self, key: &BucketKey) -> MutexGuard<'_, BoundedMap<BucketKey, Held>> {
        self.inner.held.lock(key)
    }

    /// Spends one request of `key`'s bucket from memory when it can: always on SQLite; on
    /// PostgreSQL from a lease this instance holds, or refused while the bucket is known to
    /// be short.
    pub fn admit(&self, key: BucketKey) -> Admission {
        let policy = self.policy(key.class);
        let now = Instant::now();
        if self.inner.shared.is_none() || self.store_resting(now) {
            let grant = self.inner.memory.lease_at(key, policy, 1, now);
            return Admission::Decided(decide(key.class, policy, grant));
        }
        let mut held = self.lock(&key);
        let Some(entry) = held.get_mut(&key) else {
            let mut entry = Held::new(now);
            entry.leasing_since = Some(now);
            insert(&mut held, key, entry, now);
            return Admission::NeedsLease(Lease {
                key,
                want: lease_size(None, policy, now),
                first: true,
            });
        };
        if entry.tokens(now) > 0 || entry.waiting_until(now).is_some() {
            let refill = entry.tokens(now) > 0
                && !entry.leasing(now)
                && entry.waiting_until(now).is_none()
                && (entry.tokens(now) - 1) * 4 <= entry.granted;
            if refill {
                entry.leasing_since = Some(now);
                // Cannot fail: the receiver lives as long as the sender, in `inner`.
                let _ = self.inner.refills.0.send(key);
            }
            return Admission::Decided(entry.spend(key.class, policy, now));
        }
        if entry.leasing(now) {
            return Admission::NeedsLease(Lease {
                key,
                want: 1,
                first: false,
            });
        }
        entry.leasing_since = Some(now);
        Admission::NeedsLease(Lease {
            key,
            want: lease_size(Some(entry), policy, now),
            first: true,
        })
    }

    /// Takes `lease` and spends one request (blocking on PostgreSQL): for a request
    /// [`Self::admit`] could not decide.
    pub fn lease(&self, lease: Lease) -> Decision {
        let Lease { key, want, first } = lease;
        let policy = self.policy(key.class);
        let grant = self
            .take(&[LeaseRequest { key, policy, want }])
            .and_then(|grants| grants.first().copied());
        let now = Instant::now();
        let mut held = self.lock(&key);
        let mut entry = held.get(&key).copied().unwrap_or_else(|| Held::new(now));
        if first {
            entry.leasing_since = None;
        }
        let decision = match grant {
            Some(grant) => {
                entry.record(grant, want, policy, now);
                entry.spend(key.class, policy, now)
            }
            None => self.lease_from_memory(key),
        };
        insert(&mut held, key, entry, now);
        decision
    }

    /// Decides from this process's memory alone: when a lease could not be taken at all.
    pub fn lease_from_memory(&self, key: BucketKey) -> Decision {
        let policy = self.policy(key.class);
        let grant = self.inner.memory.lease_at(key, policy, 1, Instant::now());
        decide(key.class, policy, grant)
    }

    /// Starts this instance's refill thread (on PostgreSQL; SQLite needs none), which
    /// ends once every clone of this limiter is dropped. Without it, refills wait for
    /// [`Self::refill_queued`], and a caller that runs out of its lease first leases a
    /// request at a time.
    pub fn start_refills(&self) -> std::io::Result<()> {
        if self.inner.shared.is_none() {
            return Ok(());
        }
        let (limiter, queued) = (Arc::downgrade(&self.inner), self.inner.refills.1.clone());
        thread::Builder::new()
            .name("myapi-limit-refills".into())
            .spawn(move || refill_until_dropped(&limiter, &queued))
            .map(drop)
    }

    /// Takes the refills queued so far in one statement (blocking); returns how many. The
    /// refill thread does this in a loop; tests call it by hand.
    pub fn refill_queued(&self) -> usize {
        let keys: Vec<BucketKey> = self
            .inner
            .refills
            .1
            .try_iter()
            .take(MAX_REFILL_BATCH)
            .collect();
        self.refill(&keys)
    }

    /// Takes the next lease of each of `keys` ahead of need, in one statement (blocking).
    fn refill(&self, keys: &[BucketKey]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let requests: Vec<LeaseRequest> = keys
            .iter()
            .map(|&key| {
                let policy = self.policy(key.class);
                let want = lease_size(self.lock(&key).get(&key), policy, now);
                LeaseRequest { key, policy, want }
            })
            .collect();
        let grants = self.take(&requests);
        let now = Instant::now();
        for (index, request) in requests.iter().enumerate() {
            let mut held = self.lock(&request.key);
            if let Some(entry) = held.get_mut(&request.key) {
                entry.leasing_since = None;
                if let Some(grant) = grants.as_ref().and_then(|grants| grants.get(index)) {
                    entry.record(*grant, request.want, request.policy, now);
                }
            }
        }
        requests.len()
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

    /// Leases from the shared store, in one statement, in the order of `requests`; `None`
    /// when there were none: the pool had no connection free at once (these requests go
    /// without), or the store failed (logged once per outage; buckets stay in memory for
    /// [`STORE_RETRY`]). Each lease is counted.
    fn take(&self, requests: &[LeaseRequest]) -> Option<Vec<Grant>> {
        let Some(store) = &self.inner.shared else {
            let now = Instant::now();
            return Some(
                requests
                    .iter()
                    .map(|r| self.inner.memory.lease_at(r.key, r.policy, r.want, now))
                    .collect(),
            );
        };
        let count = |request: &LeaseRequest, result: &'static str| {
            let class = request.key.class.as_str();
            metrics::counter!(LEASES_METRIC, "class" => class, "result" => result).increment(1);
        };
        metrics::counter!(LEASE_STATEMENTS_METRIC).increment(1);
        match store.lease(requests) {
            Ok(Some(grants)) => {
                for (request, grant) in requests.iter().zip(&grants) {
                    count(
                        request,
                        if grant.granted > 0 {
                            "granted"
                        } else {
                            "refused"
                        },
                    );
                }
                if self.inner.store_failing.swap(false, Ordering::Relaxed) {
                    log::info!("rate limits: the shared store answers again");
                }
                Some(grants)
            }
            Ok(None) => {
                requests.iter().for_each(|request| count(request, "busy"));
                None
            }
            Err(error) => {
                requests.iter().for_each(|request| count(request, "failed"));
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

/// Gathers the refills due for [`REFILL_GATHER`] after the first, then takes them in one
/// statement; until the limiter is dropped (its sender with it).
fn refill_until_dropped(limiter: &Weak<Inner>, queued: &Receiver<BucketKey>) {
    while let Ok(first) = queued.recv() {
        let until = Instant::now() + REFILL_GATHER;
        let mut keys = vec![first];
        while keys.len() < MAX_REFILL_BATCH {
            match queued.recv_deadline(until) {
                Ok(key) => keys.push(key),
                Err(_) => break,
            }
        }
        let Some(inner) = limiter.upgrade() else {
            return;
        };
        RateLimiter { inner }.refill(&keys);
    }
}

/// The next lease's size: what this instance spent of the bucket per [`LEASE_SECS`]
/// since its last grant, within [`MIN_LEASE`] and a quarter of the burst.
fn lease_size(entry: Option<&Held>, policy: Policy, now: Instant) -> u32 {
    let largest = (policy.burst / 4).max(1);
    let smallest = MIN_LEASE.min(largest);
    let spent_rate = entry.map_or(0.0, |entry| {
        let spent = entry.granted.saturating_sub(entry.tokens(now));
        let secs = now.duration_since(entry.granted_at).as_secs_f64().max(1e-3);
        f64::from(spent) / secs
    });
    ((spent_rate * LEASE_SECS).ceil().min(f64::from(largest)) as u32).clamp(smallest, largest)
}

/// A decision from an in-memory grant of one request.
fn decide(class: Class, policy: Policy, grant: Grant) -> Decision {
    let admitted = grant.granted > 0;
    Decision {
        class,
        policy,
        remaining: if admitted {
            policy.available(grant.backlog_secs)
        } else {
            0
        },
        reset_secs: grant.backlog_secs,
        retry_after_secs: (!admitted).then(|| policy.wait(grant.backlog_secs)),
    }
}

/// Keeps `entry`; when room must be made, entries that hold nothing of a bucket that has
/// refilled go first, and those of a short bucket (refusing) last.
fn insert(held: &mut BoundedMap<BucketKey, Held>, key: BucketKey, entry: Held, now: Instant) {
    held.insert(key, entry, now, |entry| {
        let idle = entry.tokens(now) == 0 && !entry.leasing(now);
        if idle && entry.backlog(now) <= 0.0 && entry.waiting_until(now).is_none() {
            Retention::Expired
        } else if entry.waiting_until(now).is_some() {
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
        let held: ShardedMap<BucketKey, Held> = ShardedMap::new(MAX_TRACKED_BUCKETS);
        let bytes = held.max_bytes() + MemoryStore::default().max_bytes();
        println!("rate limit state: at most {} KiB", bytes / 1024);
        assert!(bytes <= 24 << 20, "{bytes} bytes");
    }
}
