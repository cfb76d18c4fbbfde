//! The verdict cache: shape key -> `Class`, shared by every session, concurrent and bounded.
//!
//! It owns storage and eviction only; keys come from `shape`, classes from `grammar`.
//!
//! Eviction is deliberately crude: when an insert finds the cache full, every entry whose key
//! has bit `i` clear is dropped (`i` moves on each time), about half of them. Keys are keyed
//! SipHash outputs, so that half is a fair random sample, and the sweep is amortised over the
//! cap/2 inserts it makes room for. A working set that fits stays in; one that does not costs
//! parses (which is what a miss costs anyway), never unbounded memory. No recency tracking:
//! it would put a write on the hit path.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use dashmap::DashMap;

use super::classify::Class;

pub struct ShapeCache {
    map: DashMap<u64, Class, BuildHasherDefault<KeyHasher>>,
    cap: usize,
    /// Which key bit the next sweep keys on.
    sweeps: AtomicU32,
}

impl ShapeCache {
    /// A cache of at most `cap` entries (`0`: no caching).
    pub fn new(cap: usize) -> Self {
        Self {
            map: DashMap::default(),
            cap,
            sweeps: AtomicU32::new(0),
        }
    }

    pub fn get(&self, key: u64) -> Option<Class> {
        self.map.get(&key).map(|c| *c)
    }

    pub fn insert(&self, key: u64, class: Class) {
        if self.cap == 0 {
            return;
        }
        // One sweep nearly always suffices; a freak set of keys (all bits set) ends in a clear.
        for _ in 0..64 {
            if self.map.len() < self.cap {
                break;
            }
            let bit = self.sweeps.fetch_add(1, Ordering::Relaxed) % 64;
            self.map.retain(|k, _| k >> bit & 1 == 1);
        }
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(key, class);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The keys are already uniform hashes: the map uses them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Not reached for `u64` keys; folds bytes in case it ever is.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    #[test]
    fn stays_bounded_and_keeps_recent_inserts() {
        let cache = ShapeCache::new(100);
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..10_000 {
            let key = rng.next();
            cache.insert(key, Class::Read);
            assert!(cache.len() <= 100);
            assert_eq!(cache.get(key), Some(Class::Read));
        }
        assert!(cache.len() > 20, "{}", cache.len());
    }

    #[test]
    fn capacity_one_holds_the_last_key() {
        let cache = ShapeCache::new(1);
        for key in [u64::MAX, u64::MAX - 1, 0, u64::MAX] {
            cache.insert(key, Class::Begin);
            assert!(cache.len() <= 1);
            assert_eq!(cache.get(key), Some(Class::Begin));
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = ShapeCache::new(0);
        cache.insert(7, Class::Write);
        assert_eq!(cache.get(7), None);
    }
}
