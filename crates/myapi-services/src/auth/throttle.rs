//! Brute-force protection for `/token` (RFC 6749 §4.3.2): leaky buckets of failed logins
//! per client IP and per account.
//!
//! Only failures count, and they leak away over time, so a throttle lifts by itself a
//! short while after an attack stops. While an account is throttled, a client IP that
//! logged in to it successfully before (and is not throttled itself) may still try:
//! an attacker elsewhere cannot lock the real user out.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::bounded::BoundedMap;
use crate::config::AuthSettings;

/// Most keys a limiter tracks (bounds memory).
const MAX_TRACKED_KEYS: usize = 100_000;
/// How long a successful login keeps its IP trusted for that account.
const TRUSTED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A leaky bucket per key: each failure adds one, one leaks out every `leak_every`.
#[derive(Debug)]
struct FailureLimiter<K> {
    buckets: Mutex<BoundedMap<K, Bucket>>,
    burst: f64,
    leak_every: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn level_at(&self, now: Instant, leak_every: Duration) -> f64 {
        let leaked =
            now.saturating_duration_since(self.at).as_secs_f64() / leak_every.as_secs_f64();
        (self.level - leaked).max(0.0)
    }
}

impl<K: Eq + Hash + Clone> FailureLimiter<K> {
    fn new(burst: u32, leak_every: Duration) -> Self {
        Self {
            buckets: Mutex::new(BoundedMap::new(MAX_TRACKED_KEYS)),
            burst: f64::from(burst.max(1)),
            leak_every: leak_every.max(Duration::from_millis(1)),
        }
    }

    /// `Err(wait)` while `key` has used up its burst.
    fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(bucket) = buckets.get(key) else {
            return Ok(());
        };
        let level = bucket.level_at(now, self.leak_every);
        if level + 1.0 > self.burst {
            Err(self.leak_every.mul_f64(level + 1.0 - self.burst))
        } else {
            Ok(())
        }
    }

    fn record_failure(&self, key: &K, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let leak_every = self.leak_every;
        let level = buckets
            .get(key)
            .map_or(0.0, |b| b.level_at(now, leak_every));
        let bucket = Bucket {
            level: level + 1.0,
            at: now,
        };
        buckets.insert(key.clone(), bucket, now, |b| {
            b.level_at(now, leak_every) == 0.0
        });
    }
}

/// Login throttling state, shared by all workers of one process.
#[derive(Debug)]
pub struct LoginThrottle {
    per_ip: FailureLimiter<IpAddr>,
    per_account: FailureLimiter<String>,
    trusted: Mutex<BoundedMap<(String, IpAddr), Instant>>,
}

impl LoginThrottle {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            per_ip: FailureLimiter::new(
                settings.ip_failure_burst.get(),
                Duration::from_secs(settings.ip_failure_refill_secs),
            ),
            per_account: FailureLimiter::new(
                settings.account_failure_burst.get(),
                Duration::from_secs(settings.account_failure_refill_secs),
            ),
            trusted: Mutex::new(BoundedMap::new(MAX_TRACKED_KEYS)),
        }
    }

    fn is_trusted(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        let trusted = self.trusted.lock().unwrap_or_else(PoisonError::into_inner);
        trusted
            .get(&(account.to_owned(), ip))
            .is_some_and(|since| now.saturating_duration_since(*since) < TRUSTED_FOR)
    }

    /// `Err(seconds to wait)` if this attempt must be refused without checking the password.
    pub fn check(&self, account: &str, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let to_secs = |wait: Duration| wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.per_ip.check(&ip, now).map_err(to_secs)?;
        match self.per_account.check(&account.to_owned(), now) {
            Err(_) if self.is_trusted(account, ip, now) => Ok(()),
            other => other.map_err(to_secs),
        }
    }

    /// Counts a failed attempt against the IP and the account.
    pub fn record_failure(&self, account: &str, ip: IpAddr) {
        let now = Instant::now();
        self.per_ip.record_failure(&ip, now);
        self.per_account.record_failure(&account.to_owned(), now);
    }

    /// A successful login: trusts the IP for this account. The IP's failures stay: logging
    /// in to one's own account must not buy fresh guesses against others.
    pub fn record_success(&self, account: &str, ip: IpAddr) {
        let now = Instant::now();
        let mut trusted = self.trusted.lock().unwrap_or_else(PoisonError::into_inner);
        trusted.insert((account.to_owned(), ip), now, now, |since| {
            now.saturating_duration_since(*since) >= TRUSTED_FOR
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            ip_failure_burst: 5.try_into().unwrap(),
            ip_failure_refill_secs: 60,
            account_failure_burst: 3.try_into().unwrap(),
            account_failure_refill_secs: 60,
            ..crate::Settings::defaults().unwrap().auth
        }
    }

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));
    const OWNER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn account_is_throttled_after_burst_with_retry_after() {
        let t = LoginThrottle::new(&settings());
        for _ in 0..3 {
            t.check("a@x.io", ATTACKER).unwrap();
            t.record_failure("a@x.io", ATTACKER);
        }
        let wait = t.check("a@x.io", ATTACKER).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        // Another account from another IP is unaffected.
        t.check("b@x.io", OWNER).unwrap();
    }

    #[test]
    fn ip_is_throttled_across_accounts() {
        let t = LoginThrottle::new(&settings());
        for i in 0..5 {
            t.record_failure(&format!("u{i}@x.io"), ATTACKER);
        }
        assert!(t.check("fresh@x.io", ATTACKER).is_err());
        t.check("fresh@x.io", OWNER).unwrap();
    }

    #[test]
    fn owner_with_history_is_not_locked_out_by_attacker() {
        let t = LoginThrottle::new(&settings());
        t.record_success("a@x.io", OWNER);
        for _ in 0..10 {
            t.record_failure("a@x.io", ATTACKER);
        }
        assert!(t.check("a@x.io", ATTACKER).is_err());
        t.check("a@x.io", OWNER).unwrap();
    }

    #[test]
    fn logging_in_to_ones_own_account_buys_no_fresh_guesses() {
        let t = LoginThrottle::new(&settings());
        for i in 0..5 {
            t.record_failure(&format!("victim{i}@x.io"), ATTACKER);
        }
        t.record_success("attacker@x.io", ATTACKER);
        assert!(t.check("victim9@x.io", ATTACKER).is_err());
    }

    #[test]
    fn failures_leak_away() {
        let limiter = FailureLimiter::new(2, Duration::from_millis(10));
        let start = Instant::now();
        limiter.record_failure(&1, start);
        limiter.record_failure(&1, start);
        assert!(limiter.check(&1, start).is_err());
        assert!(limiter.check(&1, start + Duration::from_millis(10)).is_ok());
    }
}
