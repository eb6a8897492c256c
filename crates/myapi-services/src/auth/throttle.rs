//! Brute-force protection for `/token` (RFC 6749 §4.3.2): leaky buckets of failed logins
//! per client network and per account.
//!
//! Each attempt is reserved against both budgets before its password is checked, so
//! guesses that are still waiting for a hashing thread already count; a success gives the
//! reservation back. Failures leak away over time, so a throttle lifts by itself a short
//! while after an attack stops. While an account is throttled, a client network that
//! logged in to it successfully before (under the account's current security stamp) may
//! still try: an attacker elsewhere cannot lock the real user out, and a password change
//! forgets every such network.
//!
//! Keys have a fixed size (a digest of the account, a network), and each map holds at most
//! [`MAX_TRACKED_KEYS`] of them, so the whole state is bounded in bytes
//! ([`LoginThrottle::max_bytes`]). Throttled keys are the last to be evicted.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::bounded::{BoundedMap, Retention};
use crate::config::AuthSettings;

/// Most keys each of the throttle's maps holds.
pub const MAX_TRACKED_KEYS: usize = 50_000;
/// How long a successful login keeps its client network trusted for that account.
const TRUSTED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A 128-bit digest: the fixed-size form of a normalised email or a security stamp.
type Digest128 = [u8; 16];

fn digest(text: &str) -> Digest128 {
    let mut out = [0u8; 16];
    out.copy_from_slice(&Sha256::digest(text.as_bytes())[..16]);
    out
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

/// A leaky bucket's rule: `burst` failures, one leaking out every `leak_every`.
#[derive(Debug, Clone, Copy)]
struct Limit {
    burst: f64,
    leak_every: Duration,
}

impl Limit {
    fn new(burst: u32, leak_every_secs: u64) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            leak_every: Duration::from_secs(leak_every_secs).max(Duration::from_millis(1)),
        }
    }

    fn level(&self, bucket: Option<&Bucket>, now: Instant) -> f64 {
        bucket.map_or(0.0, |b| {
            let leaked =
                now.saturating_duration_since(b.at).as_secs_f64() / self.leak_every.as_secs_f64();
            (b.level - leaked).max(0.0)
        })
    }

    /// `Err(wait)` when one more failure would exceed the burst.
    fn admit(&self, level: f64) -> Result<(), Duration> {
        if level + 1.0 > self.burst {
            Err(self.leak_every.mul_f64(level + 1.0 - self.burst))
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

/// Login throttling state, shared by all workers of one process.
#[derive(Debug)]
pub struct LoginThrottle {
    state: Mutex<State>,
    client_limit: Limit,
    account_limit: Limit,
    ipv4_prefix_len: u8,
    ipv6_prefix_len: u8,
}

/// One attempt, counted as a failure against its client and its account until it is
/// settled as a success ([`Reservation::succeed`]) or as not the client's doing
/// ([`Reservation::cancel`]). Dropping it unsettled keeps it counted, so a client that
/// hangs up mid-check has still spent a guess.
#[derive(Debug)]
pub struct Reservation {
    throttle: Arc<LoginThrottle>,
    account: Digest128,
    client: IpNet,
}

fn to_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl LoginThrottle {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            state: Mutex::new(State {
                per_client: BoundedMap::new(MAX_TRACKED_KEYS),
                per_account: BoundedMap::new(MAX_TRACKED_KEYS),
                trusted: BoundedMap::new(MAX_TRACKED_KEYS),
            }),
            client_limit: Limit::new(
                settings.ip_failure_burst.get(),
                settings.ip_failure_refill_secs,
            ),
            account_limit: Limit::new(
                settings.account_failure_burst.get(),
                settings.account_failure_refill_secs,
            ),
            ipv4_prefix_len: settings.ipv4_prefix_len,
            ipv6_prefix_len: settings.ipv6_prefix_len,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// `Err(seconds to wait)` when the client's network has used up its budget. Cheap: run
    /// it before any other work.
    pub fn check_client(&self, client: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let state = self.lock();
        let level = self
            .client_limit
            .level(state.per_client.get(&self.network(client)), now);
        self.client_limit.admit(level).map_err(to_secs)
    }

    /// Reserves one failure against the client's network and the account (`account` is the
    /// normalised email), or `Err(seconds to wait)` when either budget is used up. A network
    /// that logged in under the account's current `security_stamp` passes a throttled
    /// account.
    pub fn reserve(
        self: &Arc<Self>,
        account: &str,
        client: IpAddr,
        security_stamp: Option<&str>,
    ) -> Result<Reservation, u64> {
        let now = Instant::now();
        let (account, client) = (digest(account), self.network(client));
        let mut state = self.lock();
        let client_level = self.client_limit.level(state.per_client.get(&client), now);
        self.client_limit.admit(client_level).map_err(to_secs)?;
        let account_level = self
            .account_limit
            .level(state.per_account.get(&account), now);
        if let Err(wait) = self.account_limit.admit(account_level) {
            let trusted = security_stamp.is_some_and(|stamp| {
                state
                    .trusted
                    .get(&(digest(stamp), client))
                    .is_some_and(|since| now.saturating_duration_since(*since) < TRUSTED_FOR)
            });
            if !trusted {
                return Err(to_secs(wait));
            }
        }
        let (client_limit, account_limit) = (self.client_limit, self.account_limit);
        let bucket = |level: f64| Bucket {
            level: level + 1.0,
            at: now,
        };
        state
            .per_client
            .insert(client, bucket(client_level), now, |b| {
                client_limit.retention(b, now)
            });
        state
            .per_account
            .insert(account, bucket(account_level), now, |b| {
                account_limit.retention(b, now)
            });
        Ok(Reservation {
            throttle: Arc::clone(self),
            account,
            client,
        })
    }

    /// Counts a failure against the client's network alone: a refresh or revocation with a
    /// token that is no good, where there is no account to charge.
    pub fn count_client_failure(&self, client: IpAddr) {
        let now = Instant::now();
        let client = self.network(client);
        let limit = self.client_limit;
        let mut state = self.lock();
        let level = limit.level(state.per_client.get(&client), now);
        let bucket = Bucket {
            level: level + 1.0,
            at: now,
        };
        state
            .per_client
            .insert(client, bucket, now, |b| limit.retention(b, now));
    }

    /// The most memory the throttle's state can take, in bytes.
    pub fn max_bytes(&self) -> usize {
        let state = self.lock();
        state.per_client.max_bytes() + state.per_account.max_bytes() + state.trusted.max_bytes()
    }

    fn give_back(&self, account: &Digest128, client: &IpNet, now: Instant) {
        let mut state = self.lock();
        let refund = |limit: &Limit, bucket: Option<&mut Bucket>| {
            if let Some(bucket) = bucket {
                *bucket = Bucket {
                    level: (limit.level(Some(bucket), now) - 1.0).max(0.0),
                    at: now,
                };
            }
        };
        refund(&self.client_limit, state.per_client.get_mut(client));
        refund(&self.account_limit, state.per_account.get_mut(account));
    }
}

impl Reservation {
    /// The password matched: the reservation is given back, and the client's network is
    /// trusted for this account for as long as its security stamp stays the same. The
    /// network's other failures stay: logging in to one's own account buys no fresh
    /// guesses against others.
    pub fn succeed(self, security_stamp: &str) {
        let now = Instant::now();
        self.throttle.give_back(&self.account, &self.client, now);
        let mut state = self.throttle.lock();
        state.trusted.insert(
            (digest(security_stamp), self.client),
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

    /// The attempt failed through no doing of the client (the database was down): it does
    /// not count.
    pub fn cancel(self) {
        self.throttle
            .give_back(&self.account, &self.client, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn throttle() -> Arc<LoginThrottle> {
        let settings = AuthSettings {
            ip_failure_burst: 5.try_into().unwrap(),
            ip_failure_refill_secs: 60,
            account_failure_burst: 3.try_into().unwrap(),
            account_failure_refill_secs: 60,
            ..crate::Settings::defaults().unwrap().auth
        };
        Arc::new(LoginThrottle::new(&settings))
    }

    const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));
    const OWNER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    fn fail(t: &Arc<LoginThrottle>, account: &str, client: IpAddr) -> Result<(), u64> {
        t.reserve(account, client, Some("stamp")).map(drop)
    }

    #[test]
    fn account_is_throttled_after_burst_with_retry_after() {
        let t = throttle();
        for _ in 0..3 {
            fail(&t, "a@x.io", ATTACKER).unwrap();
        }
        let wait = fail(&t, "a@x.io", ATTACKER).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        fail(&t, "b@x.io", OWNER).unwrap();
    }

    #[test]
    fn reservations_count_before_the_outcome_is_known() {
        let t = throttle();
        let pending: Vec<_> = (0..3)
            .map(|_| t.reserve("a@x.io", ATTACKER, None).unwrap())
            .collect();
        assert!(
            t.reserve("a@x.io", OWNER, None).is_err(),
            "in flight counts"
        );
        for reservation in pending {
            reservation.cancel();
        }
        fail(&t, "a@x.io", OWNER).unwrap();
    }

    #[test]
    fn client_network_is_throttled_across_accounts() {
        let t = throttle();
        for i in 0..5 {
            fail(&t, &format!("u{i}@x.io"), ATTACKER).unwrap();
        }
        assert!(t.check_client(ATTACKER).is_err());
        assert!(fail(&t, "fresh@x.io", ATTACKER).is_err());
        t.check_client(OWNER).unwrap();
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let t = throttle();
        for i in 0..5u16 {
            let address = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, i, i, i, i);
            fail(&t, &format!("u{i}@x.io"), address.into()).unwrap();
        }
        let neighbour = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 9, 9, 9, 9);
        assert!(t.check_client(neighbour.into()).is_err());
        let elsewhere = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
        t.check_client(elsewhere.into()).unwrap();

        let mapped = Ipv4Addr::new(10, 0, 0, 66).to_ipv6_mapped();
        assert_eq!(t.network(mapped.into()), t.network(ATTACKER));
    }

    #[test]
    fn owner_with_history_is_not_locked_out_until_the_password_changes() {
        let t = throttle();
        t.reserve("a@x.io", OWNER, Some("stamp-1"))
            .unwrap()
            .succeed("stamp-1");
        for _ in 0..10 {
            let _ = fail(&t, "a@x.io", ATTACKER);
        }
        assert!(t.reserve("a@x.io", ATTACKER, Some("stamp-1")).is_err());
        t.reserve("a@x.io", OWNER, Some("stamp-1"))
            .unwrap()
            .cancel();
        assert!(
            t.reserve("a@x.io", OWNER, Some("stamp-2")).is_err(),
            "a new stamp (password change) forgets the trusted networks"
        );
    }

    #[test]
    fn logging_in_to_ones_own_account_buys_no_fresh_guesses() {
        let t = throttle();
        for i in 0..4 {
            fail(&t, &format!("victim{i}@x.io"), ATTACKER).unwrap();
        }
        t.reserve("attacker@x.io", ATTACKER, Some("s"))
            .unwrap()
            .succeed("s");
        fail(&t, "victim9@x.io", ATTACKER).unwrap();
        assert!(fail(&t, "victim10@x.io", ATTACKER).is_err());
    }

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
