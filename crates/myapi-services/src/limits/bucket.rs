//! The buckets behind the request limits: whose they are ([`BucketKey`]), their rule
//! ([`Policy`]), and the in-process store ([`MemoryStore`]), which hands out their requests
//! in leases as the PostgreSQL one does.
//!
//! A bucket is kept as its theoretical arrival time (GCRA): with `interval` seconds per
//! request, it is full when that time has passed, and each request granted moves it
//! `interval` later; a grant may not move it more than `burst` intervals past now. The
//! PostgreSQL store keeps the same rule in SQL (`rate_limits` migration).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::bounded::{Retention, ShardedMap};

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// GET and HEAD of the API (and any method that is neither a read nor a write).
    Read,
    /// POST, PUT, PATCH and DELETE of the API.
    Write,
}

impl Class {
    /// The policy's name in the RateLimit fields and the metrics' `class` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Who spends a budget: the subject of a valid bearer token, else the client's network
/// (as the login budget counts it: trusted proxies resolved, IPv6 by its /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    User(i32),
    Network(IpNet),
}

/// One bucket: a caller's budget for one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub caller: Caller,
    pub class: Class,
}

impl BucketKey {
    /// The key as the shared store keeps it: the class's initial, then `u` and the user id,
    /// or `n`, the prefix length and the network's address (4 or 16 bytes).
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut key = Vec::with_capacity(19);
        key.push(match self.class {
            Class::Read => b'r',
            Class::Write => b'w',
        });
        match self.caller {
            Caller::User(id) => {
                key.push(b'u');
                key.extend_from_slice(&id.to_be_bytes());
            }
            Caller::Network(network) => {
                key.extend_from_slice(&[b'n', network.prefix_len()]);
                match network.trunc().addr() {
                    IpAddr::V4(address) => key.extend_from_slice(&address.octets()),
                    IpAddr::V6(address) => key.extend_from_slice(&address.octets()),
                }
            }
        }
        key
    }
}

/// A class's rule: `burst` requests at once, and `per_second` more every second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub per_second: u32,
    pub burst: u32,
}

impl Policy {
    /// Seconds one request takes to come back.
    pub fn interval(&self) -> f64 {
        1.0 / f64::from(self.per_second.max(1))
    }

    /// Seconds an empty bucket takes to fill: the RateLimit-Policy window.
    pub fn window_secs(&self) -> f64 {
        f64::from(self.burst.max(1)) * self.interval()
    }

    /// Requests a bucket `backlog` seconds from full can still grant.
    pub fn available(&self, backlog: f64) -> u32 {
        // The epsilon keeps a float's last bit from losing a whole request.
        let free = ((self.window_secs() - backlog.max(0.0)) / self.interval() + 1e-9).floor();
        free.clamp(0.0, f64::from(self.burst)) as u32
    }

    /// Seconds until a bucket `backlog` seconds from full can grant one request.
    pub fn wait(&self, backlog: f64) -> f64 {
        self.wait_for(backlog, 1)
    }

    /// Seconds until a bucket `backlog` seconds from full can grant `requests` (at most the
    /// burst).
    pub fn wait_for(&self, backlog: f64, requests: u32) -> f64 {
        let requests = f64::from(requests.clamp(1, self.burst.max(1)));
        (backlog - (self.window_secs() - requests * self.interval())).max(0.0)
    }
}

/// What a store granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// Requests granted: at most what was asked, 0 when the bucket is empty.
    pub granted: u32,
    /// Seconds from now until the bucket is full again, after this grant.
    pub backlog_secs: f64,
}

/// Most buckets one process keeps (each store, and the leases held).
pub const MAX_TRACKED_BUCKETS: usize = 50_000;

/// Buckets in this process's memory: the store on SQLite, and the fallback while
/// PostgreSQL cannot be reached. Bounded like the login budget: full buckets are the last
/// to be evicted, and a bucket that refilled counts as absent.
#[derive(Debug)]
pub struct MemoryStore {
    /// When each bucket will be full again.
    full_at: ShardedMap<BucketKey, Instant>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            full_at: ShardedMap::new(MAX_TRACKED_BUCKETS),
        }
    }
}

impl MemoryStore {
    /// The most memory the buckets can take, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.full_at.max_bytes()
    }

    pub(crate) fn lease_at(
        &self,
        key: BucketKey,
        policy: Policy,
        want: u32,
        now: Instant,
    ) -> Grant {
        let mut buckets = self.full_at.lock(&key);
        let backlog = buckets.get(&key).map_or(0.0, |full_at| {
            full_at.saturating_duration_since(now).as_secs_f64()
        });
        let granted = policy.available(backlog).min(want.max(1));
        let backlog_secs = backlog + f64::from(granted) * policy.interval();
        if granted > 0 {
            let full_at = now + Duration::from_secs_f64(backlog_secs);
            let throttled = Duration::from_secs_f64(policy.window_secs() - policy.interval());
            buckets.insert(key, full_at, now, |full_at| {
                let backlog = full_at.saturating_duration_since(now);
                if backlog.is_zero() {
                    Retention::Expired
                } else if backlog > throttled {
                    Retention::Precious
                } else {
                    Retention::Normal
                }
            });
        }
        Grant {
            granted,
            backlog_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn key(id: i32) -> BucketKey {
        BucketKey {
            caller: Caller::User(id),
            class: Class::Read,
        }
    }

    #[test]
    fn a_bucket_grants_its_burst_then_its_rate() {
        let policy = Policy {
            per_second: 10,
            burst: 5,
        };
        let store = MemoryStore::default();
        let start = Instant::now();
        assert_eq!(store.lease_at(key(1), policy, 3, start).granted, 3);
        assert_eq!(store.lease_at(key(1), policy, 3, start).granted, 2);
        let empty = store.lease_at(key(1), policy, 1, start);
        assert_eq!(empty.granted, 0);
        assert!((policy.wait(empty.backlog_secs) - 0.1).abs() < 1e-9);
        // Another caller has a bucket of its own.
        assert_eq!(store.lease_at(key(2), policy, 9, start).granted, 5);
        // One interval later, one request is back; a whole window later, the burst.
        let later = start + Duration::from_millis(100);
        assert_eq!(store.lease_at(key(1), policy, 5, later).granted, 1);
        let full = later + Duration::from_millis(500);
        assert_eq!(store.lease_at(key(1), policy, 9, full).granted, 5);
    }

    #[test]
    fn keys_are_distinct_per_class_and_caller() {
        let network = IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 32).unwrap();
        let keys = [
            key(1),
            BucketKey {
                caller: Caller::User(1),
                class: Class::Write,
            },
            BucketKey {
                caller: Caller::Network(network),
                class: Class::Read,
            },
        ];
        let bytes: std::collections::HashSet<_> = keys.iter().map(|k| k.to_bytes()).collect();
        assert_eq!(bytes.len(), keys.len());
        assert_eq!(keys[2].to_bytes(), [b'r', b'n', 32, 10, 0, 0, 1]);
    }
}
