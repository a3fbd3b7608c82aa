//! What routing keeps in memory between payments so that a payment does not read it from
//! the log again (ADR 20):
//!
//! - [`ConfigCache`]: a tenant's rules and acquirers, read at most once per `ttl`. A change
//!   made through this process is seen at once (the entry is dropped when it commits);
//!   one made through another replica within `ttl`.
//! - [`Handoff`]: the exchange a `Decide` just recorded, taken by the `Authorize` of the same
//!   payment that follows it. Nothing is decided on it that the log could contradict: an
//!   attempt is recorded before its request goes out, and that commit is refused when
//!   anyone else wrote to the exchange since.
//!
//! Neither holds cardholder data or keys beyond what the log holds (the exchange's sealed
//! card data is not part of it; the acquirers' zone key names are).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entries kept at most by either map: beyond it, expired ones are dropped, and if that is
/// not enough, the oldest.
const CAPACITY: usize = 4096;

/// Makes room for `key` in `values` (each stamped with when it was put) when they are at
/// [`CAPACITY`]: the entries older than `ttl` go, and if none is, the oldest.
fn make_room<V>(
    values: &mut HashMap<String, (Instant, V)>,
    key: &str,
    ttl: Duration,
    now: Instant,
) {
    if values.len() < CAPACITY || values.contains_key(key) {
        return;
    }
    values.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
    if values.len() >= CAPACITY
        && let Some(oldest) = values
            .iter()
            .min_by_key(|(_, (at, _))| *at)
            .map(|(key, _)| key.clone())
    {
        values.remove(&oldest);
    }
}

/// Values by key that expire `ttl` after they were read.
#[derive(Debug)]
pub struct ConfigCache<V> {
    ttl: Duration,
    inner: Mutex<Entries<V>>,
}

#[derive(Debug)]
struct Entries<V> {
    /// Bumped by every [`ConfigCache::invalidate`]: a value read before it is not kept.
    generation: u64,
    values: HashMap<String, (Instant, Arc<V>)>,
}

/// When a read of a key began: [`ConfigCache::put`] keeps the value only if no change was
/// committed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadStart(u64);

impl<V> ConfigCache<V> {
    /// A cache whose entries live `ttl` (zero: nothing is kept).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Entries {
                generation: 0,
                values: HashMap::new(),
            }),
        }
    }

    /// The value of `key` if it was read less than `ttl` ago.
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<Arc<V>> {
        let inner = lock(&self.inner);
        let (read_at, value) = inner.values.get(key)?;
        (now.saturating_duration_since(*read_at) < self.ttl).then(|| value.clone())
    }

    /// Call before reading a value from the log.
    pub fn read_start(&self) -> ReadStart {
        ReadStart(lock(&self.inner).generation)
    }

    /// Keeps `value`, read from the log after `start`, unless a change was committed since
    /// (the value may not show it).
    pub fn put(&self, key: &str, start: ReadStart, value: Arc<V>) {
        self.put_at(key, start, value, Instant::now());
    }

    fn put_at(&self, key: &str, start: ReadStart, value: Arc<V>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = lock(&self.inner);
        if inner.generation != start.0 {
            return;
        }
        make_room(&mut inner.values, key, self.ttl, now);
        inner.values.insert(key.to_owned(), (now, value));
    }

    /// Forgets `key` and makes every read still under way not kept: call after committing a
    /// change to it.
    pub fn invalidate(&self, key: &str) {
        let mut inner = lock(&self.inner);
        inner.generation += 1;
        inner.values.remove(key);
    }
}

/// Values handed from one request to the next of the same key, each taken at most once and
/// only within `ttl`.
#[derive(Debug)]
pub struct Handoff<V> {
    ttl: Duration,
    values: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V> Handoff<V> {
    /// Values taken within `ttl` of being left (zero: none is kept).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            values: Mutex::new(HashMap::new()),
        }
    }

    /// Leaves `value` for the next request of `key`.
    pub fn leave(&self, key: &str, value: V) {
        self.leave_at(key, value, Instant::now());
    }

    fn leave_at(&self, key: &str, value: V, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut values = lock(&self.values);
        make_room(&mut values, key, self.ttl, now);
        values.insert(key.to_owned(), (now, value));
    }

    /// The value left for `key`, if it was left less than `ttl` ago; it is gone afterwards.
    pub fn take(&self, key: &str) -> Option<V> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Option<V> {
        let (left_at, value) = lock(&self.values).remove(key)?;
        (now.saturating_duration_since(left_at) < self.ttl).then_some(value)
    }

    /// Forgets what was left for `key`.
    #[cfg(test)]
    fn forget(&self, key: &str) {
        lock(&self.values).remove(key);
    }

    /// How many values are left (expired ones included).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.values).len()
    }

    /// Whether none is left.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: Duration = Duration::from_secs(1);

    #[test]
    fn a_value_is_served_until_it_expires() {
        let cache = ConfigCache::new(TTL);
        let now = Instant::now();
        let start = cache.read_start();
        cache.put_at("t1", start, Arc::new(7), now);
        assert_eq!(cache.get_at("t1", now).as_deref(), Some(&7));
        assert_eq!(
            cache
                .get_at("t1", now + TTL - Duration::from_millis(1))
                .as_deref(),
            Some(&7)
        );
        assert_eq!(cache.get_at("t1", now + TTL), None);
        assert_eq!(cache.get_at("t2", now), None);
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let cache = ConfigCache::new(TTL);
        let start = cache.read_start();
        // A change commits while the read is under way: what it read may be older.
        cache.invalidate("t1");
        cache.put("t1", start, Arc::new(1));
        assert_eq!(cache.get("t1"), None);
        // A read begun after the change is kept.
        let start = cache.read_start();
        cache.put("t1", start, Arc::new(2));
        assert_eq!(cache.get("t1").as_deref(), Some(&2));
        // And dropped by the next change.
        cache.invalidate("t1");
        assert_eq!(cache.get("t1"), None);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = ConfigCache::new(Duration::ZERO);
        let start = cache.read_start();
        cache.put("t1", start, Arc::new(1));
        assert_eq!(cache.get("t1"), None);
        let handoff = Handoff::new(Duration::ZERO);
        handoff.leave("p1", 1);
        assert_eq!(handoff.take("p1"), None);
        assert!(handoff.is_empty());
    }

    #[test]
    fn a_handed_off_value_is_taken_once_and_only_in_time() {
        let handoff = Handoff::new(TTL);
        let now = Instant::now();
        handoff.leave_at("p1", 1, now);
        handoff.leave_at("p2", 2, now);
        assert_eq!(handoff.take_at("p1", now), Some(1));
        assert_eq!(handoff.take_at("p1", now), None);
        assert_eq!(handoff.take_at("p2", now + TTL), None);
        assert!(
            handoff.is_empty(),
            "an expired value is gone once asked for"
        );
        handoff.leave_at("p3", 3, now);
        handoff.forget("p3");
        assert_eq!(handoff.take_at("p3", now), None);
    }

    #[test]
    fn the_maps_stay_bounded() {
        let cache = ConfigCache::new(Duration::from_secs(3600));
        let handoff = Handoff::new(Duration::from_secs(3600));
        let now = Instant::now();
        for i in 0..(CAPACITY + 10) {
            let at = now + Duration::from_millis(u64::try_from(i).unwrap_or(0));
            let start = cache.read_start();
            cache.put_at(&format!("t{i}"), start, Arc::new(i), at);
            handoff.leave_at(&format!("p{i}"), i, at);
        }
        assert_eq!(lock(&cache.inner).values.len(), CAPACITY);
        assert_eq!(handoff.len(), CAPACITY);
        // The oldest went first; the newest are there.
        assert_eq!(cache.get_at("t0", now), None);
        let last = CAPACITY + 9;
        assert_eq!(
            cache.get_at(&format!("t{last}"), now).as_deref(),
            Some(&last)
        );
        assert_eq!(handoff.take_at(&format!("p{last}"), now), Some(last));
        assert_eq!(handoff.take_at("p0", now), None);
    }

    proptest! {
        /// Whatever the interleaving of reads and changes, a value read before the last
        /// change to the cache is never served.
        #[test]
        fn no_value_read_before_a_change_is_served(ops in proptest::collection::vec(0u8..4, 1..64)) {
            let cache = ConfigCache::new(Duration::from_secs(3600));
            // The log's version of the one key, and reads under way (the version they saw).
            let mut version = 0u32;
            let mut reads: Vec<(ReadStart, u32)> = Vec::new();
            for op in ops {
                match op {
                    0 => reads.push((cache.read_start(), version)),
                    1 => {
                        version += 1;
                        cache.invalidate("k");
                    }
                    2 => {
                        if let Some((start, seen)) = reads.pop() {
                            cache.put("k", start, Arc::new(seen));
                        }
                    }
                    _ => {
                        if let Some((start, seen)) = reads.first().copied() {
                            reads.remove(0);
                            cache.put("k", start, Arc::new(seen));
                        }
                    }
                }
                if let Some(served) = cache.get("k") {
                    prop_assert_eq!(*served, version);
                }
            }
        }
    }
}
