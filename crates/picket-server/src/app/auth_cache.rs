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
//!
//! Misses are looked up together (`lookup`): concurrent misses wait for one query of up to
//! `MAX_BATCH` fingerprints, one query at a time, made by a spawned task (so a cancelled
//! request cannot strand the others). Thousands of sensors heartbeating at once then cost a
//! few queries, not thousands of waits for a pooled connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picket_store::{SensorRow, Store};
use tokio::sync::oneshot;

/// How long a successful fingerprint lookup is trusted without asking the store again.
pub const SENSOR_AUTH_TTL: Duration = Duration::from_secs(2);
/// Most fingerprints in one store query.
pub const MAX_BATCH: usize = 512;

/// Fingerprint → sensor, trusted for `ttl`; see the module docs for the bounds.
/// (Generic over the value so tests need no store row; clones share one cache.)
#[derive(Debug)]
pub struct SensorAuthCache<V = SensorRow> {
    ttl: Duration,
    shared: Arc<Shared<V>>,
}

impl<V> Clone for SensorAuthCache<V> {
    fn clone(&self) -> Self {
        SensorAuthCache { ttl: self.ttl, shared: self.shared.clone() }
    }
}

#[derive(Debug)]
struct Shared<V> {
    epoch: AtomicU64,
    inner: Mutex<Inner<V>>,
    misses: Mutex<Misses<V>>,
}

/// What a waiting miss is sent: the row, none, or the store's error message.
type Answer<V> = Result<Option<Arc<V>>, String>;

#[derive(Debug)]
struct Misses<V> {
    waiting: HashMap<String, Vec<oneshot::Sender<Answer<V>>>>,
    running: bool,
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
            shared: Arc::new(Shared {
                epoch: AtomicU64::new(0),
                inner: Mutex::new(Inner { map: HashMap::new(), last_sweep: Instant::now() }),
                misses: Mutex::new(Misses { waiting: HashMap::new(), running: false }),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_misses(&self) -> std::sync::MutexGuard<'_, Misses<V>> {
        self.shared.misses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The revocation epoch; read it before a store lookup and pass it to `insert`.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
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
        self.shared.epoch.fetch_add(1, Ordering::AcqRel);
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

/// Sets `running` back to false if the draining task ends without doing so (a panic), so
/// the next miss starts a new one.
struct Draining<'a, V>(&'a SensorAuthCache<V>);

impl<V> Drop for Draining<'_, V> {
    fn drop(&mut self) {
        self.0.lock_misses().running = false;
    }
}

impl<V: Send + Sync + 'static> SensorAuthCache<V> {
    /// The value for `fingerprint`: from the cache, else from `fetch` (given up to
    /// `MAX_BATCH` fingerprints, it answers the values found, keyed by fingerprint), together
    /// with every other miss waiting meanwhile. `Err` carries the store's error message.
    pub async fn lookup<F, Fut>(&self, fingerprint: &str, fetch: F) -> Answer<V>
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<HashMap<String, V>, String>> + Send,
    {
        if let Some(v) = self.get(fingerprint) {
            return Ok(Some(v));
        }
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut m = self.lock_misses();
            m.waiting.entry(fingerprint.to_string()).or_default().push(tx);
            !std::mem::replace(&mut m.running, true)
        };
        if lead {
            let cache = self.clone();
            tokio::spawn(async move { cache.drain_misses(fetch).await });
        }
        rx.await.map_err(|_| "the fingerprint lookup ended without an answer".to_string())?
    }

    async fn drain_misses<F, Fut>(&self, fetch: F)
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<HashMap<String, V>, String>>,
    {
        let _guard = Draining(self);
        loop {
            let waiting = {
                let mut m = self.lock_misses();
                if m.waiting.is_empty() {
                    m.running = false;
                    return;
                }
                std::mem::take(&mut m.waiting)
            };
            let epoch = self.epoch();
            let mut it = waiting.into_iter();
            loop {
                let chunk: Vec<_> = it.by_ref().take(MAX_BATCH).collect();
                if chunk.is_empty() {
                    break;
                }
                let found = fetch(chunk.iter().map(|(fp, _)| fp.clone()).collect()).await;
                match found {
                    Ok(mut found) => {
                        for (fp, waiters) in chunk {
                            let v = found.remove(&fp).map(Arc::new);
                            if let Some(v) = &v {
                                self.insert(&fp, v.clone(), epoch);
                            }
                            for w in waiters {
                                let _ = w.send(Ok(v.clone()));
                            }
                        }
                    }
                    Err(e) => {
                        for w in chunk.into_iter().flat_map(|(_, ws)| ws) {
                            let _ = w.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// Looks up the sensors pinning `fingerprints` in `store`, keyed by fingerprint.
pub async fn fetch_sensors(
    store: Arc<dyn Store>,
    fingerprints: Vec<String>,
) -> Result<HashMap<String, SensorRow>, String> {
    let rows = store.sensors_by_fingerprints(&fingerprints).await.map_err(|e| e.to_string())?;
    Ok(rows.into_iter().filter_map(|r| r.cert_fingerprint.clone().map(|fp| (fp, r))).collect())
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
        // Wait for the LAST entry to expire: a sweep may have run during the inserts (a slow
        // machine), and the next one only runs a TTL after it, i.e. after the last insert.
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.get("fp1099").is_some() {
            assert!(Instant::now() < deadline, "never expired");
            std::thread::yield_now();
        }
        c.insert("late", row("b"), c.epoch());
        assert!(c.len() < 1100, "expired entries swept");
        let off = SensorAuthCache::new(Duration::ZERO);
        off.insert("fp", row("a"), off.epoch());
        assert!(off.get("fp").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_queries_and_then_hit() {
        let c: SensorAuthCache<String> = SensorAuthCache::new(Duration::from_secs(60));
        let queries = Arc::new(AtomicU64::new(0));
        let fetch = {
            let queries = queries.clone();
            move |fps: Vec<String>| {
                let queries = queries.clone();
                async move {
                    queries.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    Ok(fps.into_iter().filter(|f| f != "unknown").map(|f| (f.clone(), format!("row-{f}"))).collect())
                }
            }
        };
        let mut tasks = Vec::new();
        for i in 0..2000 {
            let (c, fetch) = (c.clone(), fetch.clone());
            tasks.push(tokio::spawn(async move { c.lookup(&format!("fp{}", i % 1000), fetch).await }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let v = t.await.unwrap().unwrap().expect("found");
            assert_eq!(*v, format!("row-fp{}", i % 1000));
        }
        assert!(queries.load(Ordering::Relaxed) < 2000, "misses were looked up together");
        assert!(c.lookup("unknown", fetch.clone()).await.unwrap().is_none(), "unknown is none");
        let before = queries.load(Ordering::Relaxed);
        assert!(c.lookup("fp1", fetch.clone()).await.unwrap().is_some());
        assert_eq!(queries.load(Ordering::Relaxed), before, "a hit asks nothing");
        // A fresh cache: on `c` the drain task of the lookups above may still be finishing with
        // `fetch` and would answer this miss too (in the server every lookup uses one fetch).
        let d: SensorAuthCache<String> = SensorAuthCache::new(Duration::from_secs(60));
        let failing = |_: Vec<String>| async { Err::<HashMap<String, String>, _>("down".to_string()) };
        assert_eq!(d.lookup("new", failing).await.unwrap_err(), "down");
        // The failed drain may still be finishing (and would fail a miss that joins it); the
        // next batch after it must succeed.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match d.lookup("new2", fetch.clone()).await {
                Ok(Some(_)) => break,
                other => assert!(Instant::now() < deadline, "a failed batch wedged the next: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
