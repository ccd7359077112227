//! A short-lived cache of sensor authentications (certificate fingerprint → pinned sensor),
//! so the heartbeat hot path does not read the database on every request.
//!
//! Bounds, the reason for each:
//! - Positive entries only, for at most `SENSOR_AUTH_TTL` (2 s): a sensor deleted through
//!   another replica (or revoked by a rotation confirmed there) is refused by this replica
//!   within 2 s, inside the 5 s the contract allows. Unknown fingerprints are never cached,
//!   so a sensor activated through another replica is accepted at once.
//! - Any revocation through this replica (`revoke_all`: delete, rotation confirm) bumps an
//!   epoch and clears the map, so this replica refuses at once. An entry remembers the epoch
//!   read *before* its database lookup, so a lookup racing a revocation is never cached.
//! - Expired entries are swept at most once per TTL when the map grows, so memory follows
//!   the sensors heard from in the last 2 s, not the fleet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picket_store::SensorRow;

/// How long a successful fingerprint lookup is trusted without asking the store again.
pub const SENSOR_AUTH_TTL: Duration = Duration::from_secs(2);

/// Fingerprint → sensor, trusted for `ttl`; see the module docs for the bounds.
/// (Generic over the value so tests need no store row.)
#[derive(Debug)]
pub struct SensorAuthCache<V = SensorRow> {
    ttl: Duration,
    epoch: AtomicU64,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<String, Entry<V>>,
    last_sweep: Instant,
}

#[derive(Debug)]
struct Entry<V> {
    row: Arc<V>,
    at: Instant,
    epoch: u64,
}

impl<V> Default for SensorAuthCache<V> {
    fn default() -> SensorAuthCache<V> {
        SensorAuthCache::new(SENSOR_AUTH_TTL)
    }
}

impl<V> SensorAuthCache<V> {
    /// A cache trusting lookups for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> SensorAuthCache<V> {
        SensorAuthCache {
            ttl,
            epoch: AtomicU64::new(0),
            inner: Mutex::new(Inner { map: HashMap::new(), last_sweep: Instant::now() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The revocation epoch; read it before a store lookup and pass it to `insert`.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The sensor pinning `fingerprint`, if looked up less than the TTL ago and not revoked since.
    pub fn get(&self, fingerprint: &str) -> Option<Arc<V>> {
        let epoch = self.epoch();
        let inner = self.lock();
        let e = inner.map.get(fingerprint)?;
        (e.epoch == epoch && e.at.elapsed() < self.ttl).then(|| e.row.clone())
    }

    /// Remembers a lookup that started at `epoch` (dropped if a revocation happened since).
    pub fn insert(&self, fingerprint: &str, row: Arc<V>, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        // Checked under the lock that `revoke_all` clears under, after bumping the epoch.
        if epoch != self.epoch() {
            return;
        }
        let now = Instant::now();
        if inner.map.len() >= 1024 && now.duration_since(inner.last_sweep) >= self.ttl {
            let ttl = self.ttl;
            inner.map.retain(|_, e| now.duration_since(e.at) < ttl);
            inner.last_sweep = now;
        }
        inner.map.insert(fingerprint.to_string(), Entry { row, at: now, epoch });
    }

    /// Forgets everything: a sensor was deleted or a certificate retired through this replica.
    pub fn revoke_all(&self) {
        let mut inner = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        inner.map.clear();
    }

    /// How many entries are held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Arc<String> {
        Arc::new(id.to_string())
    }

    #[test]
    fn hits_until_the_ttl_and_revocation_clears_at_once() {
        let c = SensorAuthCache::new(Duration::from_secs(60));
        assert!(c.get("fp").is_none());
        c.insert("fp", row("a"), c.epoch());
        assert_eq!(c.get("fp").as_deref().map(String::as_str), Some("a"));
        c.revoke_all();
        assert!(c.get("fp").is_none() && c.is_empty());
    }

    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_cached() {
        let c = SensorAuthCache::new(Duration::from_secs(60));
        let before = c.epoch();
        c.revoke_all();
        c.insert("fp", row("a"), before);
        assert!(c.get("fp").is_none());
    }

    #[test]
    fn entries_expire_and_are_swept() {
        let c = SensorAuthCache::new(Duration::from_millis(1));
        for i in 0..1100 {
            c.insert(&format!("fp{i}"), row("a"), c.epoch());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.get("fp0").is_some() {
            assert!(Instant::now() < deadline, "never expired");
            std::thread::yield_now();
        }
        c.insert("late", row("b"), c.epoch());
        assert!(c.len() < 1100, "expired entries swept");
        let off = SensorAuthCache::new(Duration::ZERO);
        off.insert("fp", row("a"), off.epoch());
        assert!(off.get("fp").is_none());
    }
}
