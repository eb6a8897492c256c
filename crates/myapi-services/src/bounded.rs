//! The one bounded map behind the login throttle and the caches.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A map that never holds more than `capacity` entries.
///
/// When an insert finds it full, it first drops every entry the caller calls stale (a
/// leaked-out bucket, an expired cache line), and if that frees nothing it drops the least
/// recently written tenth. It never forgets everything at once, so a flood of new keys
/// cannot wipe out the state of the keys that matter.
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
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|entry| &entry.value)
    }

    /// Inserts or replaces `key`; `is_stale` says which entries may go first when full.
    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant, is_stale: impl Fn(&V) -> bool) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.make_room(is_stale);
        }
        self.entries.insert(
            key,
            Entry {
                value,
                written: now,
            },
        );
    }

    fn make_room(&mut self, is_stale: impl Fn(&V) -> bool) {
        self.entries.retain(|_, entry| !is_stale(&entry.value));
        if self.entries.len() < self.capacity {
            return;
        }
        let mut written: Vec<Instant> = self.entries.values().map(|e| e.written).collect();
        let tenth = (self.capacity / 10).max(1);
        let (_, cutoff, _) = written.select_nth_unstable(tenth - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        self.entries.retain(|_, entry| {
            let keep = entry.written > cutoff || dropped >= tenth;
            dropped += usize::from(!keep);
            keep
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stale_entries_go_first_then_the_oldest_tenth() {
        let start = Instant::now();
        let mut map = BoundedMap::new(10);
        for i in 0..10u32 {
            map.insert(i, i, start + Duration::from_secs(u64::from(i)), |_| false);
        }
        // Odd values are stale: they make room, the even ones all stay.
        map.insert(10, 10, start + Duration::from_secs(10), |v| v % 2 == 1);
        assert_eq!(map.len(), 6);
        assert!((0..=10).step_by(2).all(|k| map.get(&k).is_some()));

        // Nothing stale: the oldest entry goes, never everything.
        for i in 11..16u32 {
            map.insert(i, i, start + Duration::from_secs(u64::from(i)), |_| false);
        }
        assert_eq!(map.len(), 10);
        assert!(map.get(&0).is_none(), "the oldest was dropped");
        map.insert(99, 99, start + Duration::from_secs(99), |_| false);
        assert_eq!(map.len(), 10);
        assert!(map.get(&2).is_none(), "then the next oldest");
        assert!(map.get(&4).is_some() && map.get(&99).is_some());
    }
}
