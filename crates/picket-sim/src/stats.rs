//! What a run measured: heartbeats answered, errors by kind, connections made (and how many
//! resumed a TLS session), and latency in HDR histograms (microseconds, 3 significant
//! digits), both for the whole run and for the window since the last live report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::SimError;

/// Counters and histograms shared by every simulated sensor of a run.
#[derive(Debug)]
pub struct Stats {
    sent: AtomicU64,
    errors: AtomicU64,
    connects: AtomicU64,
    resumed: AtomicU64,
    open: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    since: Instant,
    total: Histogram<u64>,
    window: Histogram<u64>,
    window_since: Instant,
    window_sent: u64,
    kinds: BTreeMap<&'static str, u64>,
    last_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 digits: constant bounds that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid constant histogram bounds")
}

/// A live view of the run so far.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Heartbeats answered with 200 since the start (or the last reset).
    pub sent: u64,
    /// Failed heartbeats.
    pub errors: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Heartbeats per second over the last window.
    pub rate: f64,
    /// p50 latency of the last window, ms.
    pub p50_ms: f64,
    /// p99 latency of the last window, ms.
    pub p99_ms: f64,
}

/// The final report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Simulated sensors.
    pub sensors: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Heartbeats answered with 200.
    pub sent: u64,
    /// Failed heartbeats.
    pub errors: u64,
    /// Heartbeats per second.
    pub rate: f64,
    /// Latency percentiles in ms (each includes a connect when the sensor had none open).
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// TLS connections made.
    pub connects: u64,
    /// Of which resumed an earlier TLS session.
    pub resumed: u64,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The last error's message.
    pub last_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Stats {
        let now = Instant::now();
        Stats {
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                since: now,
                total: histogram(),
                window: histogram(),
                window_since: now,
                window_sent: 0,
                kinds: BTreeMap::new(),
                last_error: None,
            }),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an answered heartbeat that took `latency`.
    pub fn ok(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut i = self.lock();
        i.total.saturating_record(us);
        i.window.saturating_record(us);
        i.window_sent += 1;
    }

    /// Records a failed heartbeat.
    pub fn error(&self, e: &SimError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut i = self.lock();
        *i.kinds.entry(e.kind()).or_default() += 1;
        i.last_error = Some(e.message());
    }

    /// Records a new connection.
    pub fn connected(&self, resumed: bool) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a connection closed.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Forgets everything measured so far (after a warm-up); open connections stay counted.
    pub fn reset(&self) {
        self.sent.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.connects.store(0, Ordering::Relaxed);
        self.resumed.store(0, Ordering::Relaxed);
        let mut i = self.lock();
        let now = Instant::now();
        i.since = now;
        i.total.reset();
        i.window.reset();
        i.window_since = now;
        i.window_sent = 0;
        i.kinds.clear();
        i.last_error = None;
    }

    /// The counts so far and the rate and latency since the previous snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut i = self.lock();
        let secs = i.window_since.elapsed().as_secs_f64().max(1e-3);
        let s = Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            open_connections: self.open.load(Ordering::Relaxed),
            rate: i.window_sent as f64 / secs,
            p50_ms: ms(i.window.value_at_quantile(0.5)),
            p99_ms: ms(i.window.value_at_quantile(0.99)),
        };
        i.window.reset();
        i.window_sent = 0;
        i.window_since = Instant::now();
        s
    }

    /// The report of the run so far.
    pub fn summary(&self, sensors: usize) -> Summary {
        let i = self.lock();
        let seconds = i.since.elapsed().as_secs_f64();
        let sent = self.sent.load(Ordering::Relaxed);
        Summary {
            sensors,
            seconds,
            sent,
            errors: self.errors.load(Ordering::Relaxed),
            rate: sent as f64 / seconds.max(1e-3),
            p50_ms: ms(i.total.value_at_quantile(0.5)),
            p90_ms: ms(i.total.value_at_quantile(0.9)),
            p99_ms: ms(i.total.value_at_quantile(0.99)),
            p999_ms: ms(i.total.value_at_quantile(0.999)),
            max_ms: ms(i.total.max()),
            connects: self.connects.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            error_kinds: i.kinds.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            last_error: i.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let s = Stats::default();
        for ms in 1..=100u64 {
            s.ok(Duration::from_millis(ms));
        }
        s.error(&SimError::Refused { status: 401, body: "no".into() });
        let sum = s.summary(3);
        assert_eq!((sum.sent, sum.errors, sum.sensors), (100, 1, 3));
        assert!((sum.p50_ms - 50.0).abs() < 0.5, "{}", sum.p50_ms);
        assert!((sum.p99_ms - 99.0).abs() < 0.5, "{}", sum.p99_ms);
        assert_eq!(sum.error_kinds.get("401 unauthorized"), Some(&1));
        let snap = s.snapshot();
        assert_eq!(snap.sent, 100);
        assert_eq!(s.snapshot().p99_ms, 0.0, "the window starts over");
        s.reset();
        assert_eq!(s.summary(3).sent, 0);
    }
}
