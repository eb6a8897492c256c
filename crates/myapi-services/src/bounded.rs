//! The one bounded map behind the login throttle and the caches.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// How readily an entry may go when the map needs room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Retention {
    /// Worthless now (a leaked-out bucket, an expired cache line): always dropped first.
    Expired,
    Normal,
    /// Dropped only when nothing else is left (a throttled key).
    Precious,
}

/// A map that never holds more than `capacity` entries, so its memory is bounded by
/// [`BoundedMap::max_bytes`].
///
/// When an insert finds it full, every [`Retention::Expired`] entry goes; if that frees
/// nothing, the tenth of the entries that rank lowest by (retention, last write) goes. It
/// never forgets everything at once, and a flood of new keys displaces other `Normal`
/// keys before it touches a `Precious` one.
#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    entries: HashMap<K, Entry<V>>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    written: Instant,
}

impl<K: Eq + Hash, V> BoundedMap<K, V> {
    /// The table starts empty and grows with the entries. It never outgrows
    /// [`Self::max_bytes`]: the map holds at most `capacity` entries, and hashbrown, when
    /// tombstones fill it, doubles a table only while its entries would fill more than half
    /// of it, and otherwise clears them in place. A small map stays small, so look-ups on
    /// the request path touch a few cache lines, not pages scattered over a table sized for
    /// the worst case.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|entry| &entry.value)
    }

    /// Inserts or replaces `key`; `retention` ranks the entries when room must be made.
    pub(crate) fn insert(
        &mut self,
        key: K,
        value: V,
        now: Instant,
        retention: impl Fn(&V) -> Retention,
    ) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.make_room(retention);
        }
        self.entries.insert(
            key,
            Entry {
                value,
                written: now,
            },
        );
    }

    pub(crate) fn remove<Q: Eq + Hash + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.entries.remove(key);
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|entry| &mut entry.value)
    }

    fn make_room(&mut self, retention: impl Fn(&V) -> Retention) {
        self.entries
            .retain(|_, entry| retention(&entry.value) != Retention::Expired);
        if self.entries.len() < self.capacity {
            return;
        }
        let tenth = (self.capacity / 10).max(1);
        let mut ranks: Vec<(Retention, Instant)> = self
            .entries
            .values()
            .map(|entry| (retention(&entry.value), entry.written))
            .collect();
        let cutoff = *ranks.select_nth_unstable(tenth - 1).1;
        let mut dropped = 0;
        self.entries.retain(|_, entry| {
            let drop = dropped < tenth && (retention(&entry.value), entry.written) <= cutoff;
            dropped += usize::from(drop);
            !drop
        });
    }

    /// The most memory the map can take, in bytes: the largest table (room for twice
    /// `capacity`; hashbrown keeps at most 7/8 of its buckets full and spends a control
    /// byte on each) plus the ranking [`Self::make_room`] builds for a moment.
    pub(crate) fn max_bytes(&self) -> usize {
        let table = Self::max_buckets(self.capacity) * (std::mem::size_of::<(K, Entry<V>)>() + 1);
        table + self.capacity * std::mem::size_of::<(Retention, Instant)>()
    }

    fn max_buckets(capacity: usize) -> usize {
        (capacity * 2 * 8 / 7 + 1).next_power_of_two()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A [`BoundedMap`] split over a few locks by key, for maps every request takes: the async
/// workers then rarely wait for each other. Each shard holds an equal part of the capacity
/// and makes room on its own.
#[derive(Debug)]
pub(crate) struct ShardedMap<K, V> {
    shards: Box<[Mutex<BoundedMap<K, V>>]>,
    hasher: RandomState,
}

/// Enough shards that a few workers seldom meet on one lock.
const SHARDS: usize = 8;

impl<K: Eq + Hash, V> ShardedMap<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(BoundedMap::new(per_shard)))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// The shard that holds `key`, locked.
    pub(crate) fn lock(&self, key: &K) -> MutexGuard<'_, BoundedMap<K, V>> {
        // The modulo of a u64 by a small count fits a usize.
        let shard = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The most memory the shards can take together, in bytes.
    pub(crate) fn max_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .max_bytes()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expired_entries_go_first_then_the_lowest_ranked_tenth() {
        let start = Instant::now();
        let at = |s: u32| start + Duration::from_secs(u64::from(s));
        let mut map = BoundedMap::new(10);
        for i in 0..10u32 {
            map.insert(i, i, at(i), |_| Retention::Normal);
        }
        // Odd values are expired: they make room, the even ones all stay.
        let odd_expired = |v: &u32| {
            if v % 2 == 1 {
                Retention::Expired
            } else {
                Retention::Normal
            }
        };
        map.insert(10, 10, at(10), odd_expired);
        assert_eq!(map.len(), 6);
        assert!((0..=10).step_by(2).all(|k| map.get(&k).is_some()));

        // Nothing expired: the oldest normal entry goes, never everything, and a precious
        // one stays even when it is the oldest.
        let zero_precious = |v: &u32| {
            if *v == 0 {
                Retention::Precious
            } else {
                Retention::Normal
            }
        };
        for i in 11..16u32 {
            map.insert(i, i, at(i), zero_precious);
        }
        assert_eq!(map.len(), 10);
        assert!(map.get(&0).is_some(), "precious, though oldest");
        assert!(map.get(&2).is_none(), "the oldest normal entry went");
        for i in 100..200u32 {
            map.insert(i, i, at(i), zero_precious);
        }
        assert_eq!(map.len(), 10);
        assert!(map.get(&0).is_some() && map.get(&199).is_some());
    }

    #[test]
    fn the_table_grows_with_the_entries_and_stays_within_its_bound() {
        let start = Instant::now();
        let capacity = 1_000;
        let mut map = BoundedMap::new(capacity);
        for key in 0..10u32 {
            map.insert(key, key, start, |_| Retention::Normal);
        }
        assert!(map.entries.capacity() < 64, "{}", map.entries.capacity());
        // Churn: inserts past the capacity and removals leave tombstones behind.
        for key in 10..50_000u32 {
            map.insert(key, key, start, |_| Retention::Normal);
            if key % 3 == 0 {
                map.remove(&(key - 1));
            }
            assert!(map.len() <= capacity);
            assert!(
                map.entries.capacity() <= BoundedMap::<u32, u32>::max_buckets(capacity) * 7 / 8,
                "{} entries' room after {key}",
                map.entries.capacity()
            );
        }
    }
}
