//! What a run measured: heartbeats answered, errors by kind, connections made (and how many
//! resumed a TLS session), and latency in HDR histograms (microseconds, 3 significant
//! digits), both for the whole run and for the window since the last live report.
//!
//! A heartbeat's latency runs from the time it was *scheduled*, and is split so a report can
//! tell the server's share from the simulator's own queueing (simulator and server may share
//! the cores): `wait` (scheduled → the call starts: the simulator's timer lateness and its wait
//! for a connection slot), `connect` (TCP + TLS + HTTP handshake, for beats that opened a
//! connection) and `request` (the heartbeat request on the open connection: written → answer
//! read, which is what the server adds plus loopback and the client's own TLS/HTTP work).

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
    wait: Histogram<u64>,
    connect: Histogram<u64>,
    request: Histogram<u64>,
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

/// Where one answered heartbeat's time went (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct BeatTimes {
    /// Scheduled → answered (a configuration pull included).
    pub total: Duration,
    /// Scheduled → the call (or its connection) started.
    pub wait: Duration,
    /// TCP + TLS + HTTP handshake, when the beat opened a connection.
    pub connect: Option<Duration>,
    /// The heartbeat request on the open connection: written → answer read.
    pub request: Duration,
}

/// p50 and p99 of one part of the latency, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Part {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// How many beats this part was measured on.
    pub count: u64,
}

impl Part {
    fn of(h: &Histogram<u64>) -> Part {
        Part {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            count: h.len(),
        }
    }
}

/// CPU time used during the measured window, seconds (from `/proc`, Linux only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    /// This process (the simulator), user + system.
    pub simulator_secs: f64,
    /// Each watched process (the server), by pid, user + system.
    pub watched_secs: Vec<(u32, f64)>,
    /// The whole machine, busy time over all cores.
    pub machine_busy_secs: f64,
    /// Cores × wall time of the window: the machine's capacity.
    pub machine_capacity_secs: f64,
}

/// Linux's fixed unit of `/proc` CPU times (`USER_HZ`).
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds of process `pid` (this process when `None`), from `/proc`.
pub fn process_cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SEC)
}

/// The machine's busy and total CPU seconds summed over all cores, from `/proc/stat`.
pub fn machine_cpu_secs() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Some((busy / TICKS_PER_SEC, (busy + idle) / TICKS_PER_SEC))
}

/// CPU counters at the start of a window; `since` gives what was used after it.
#[derive(Debug, Clone)]
pub struct CpuMark {
    simulator: f64,
    watched: Vec<(u32, f64)>,
    machine: (f64, f64),
}

impl CpuMark {
    /// Reads the counters of this process, of `pids` and of the machine now.
    pub fn now(pids: &[u32]) -> CpuMark {
        CpuMark {
            simulator: process_cpu_secs(None).unwrap_or(0.0),
            watched: pids.iter().map(|p| (*p, process_cpu_secs(Some(*p)).unwrap_or(0.0))).collect(),
            machine: machine_cpu_secs().unwrap_or((0.0, 0.0)),
        }
    }

    /// The CPU used since this mark.
    pub fn since(&self) -> CpuUse {
        let now = CpuMark::now(&self.watched.iter().map(|(p, _)| *p).collect::<Vec<_>>());
        CpuUse {
            simulator_secs: now.simulator - self.simulator,
            watched_secs: now.watched.iter().zip(&self.watched).map(|((p, b), (_, a))| (*p, b - a)).collect(),
            machine_busy_secs: now.machine.0 - self.machine.0,
            machine_capacity_secs: now.machine.1 - self.machine.1,
        }
    }
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
    /// Scheduled → call started: the simulator's own queueing.
    pub wait: Part,
    /// Connection set-up, for beats that connected.
    pub connect: Part,
    /// The heartbeat request on an open connection: the server's share.
    pub request: Part,
    /// CPU used during the window, when measured.
    pub cpu: Option<CpuUse>,
    /// Seconds the priming pass took (every sensor's first contact), when there was one.
    pub prime_secs: Option<f64>,
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
                wait: histogram(),
                connect: histogram(),
                request: histogram(),
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

    /// Records an answered heartbeat and where its time went.
    pub fn beat(&self, t: BeatTimes) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut i = self.lock();
        i.total.saturating_record(us(t.total));
        i.window.saturating_record(us(t.total));
        i.wait.saturating_record(us(t.wait));
        if let Some(c) = t.connect {
            i.connect.saturating_record(us(c));
        }
        i.request.saturating_record(us(t.request));
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
        i.wait.reset();
        i.connect.reset();
        i.request.reset();
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
            wait: Part::of(&i.wait),
            connect: Part::of(&i.connect),
            request: Part::of(&i.request),
            cpu: None,
            prime_secs: None,
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
        s.beat(BeatTimes {
            total: Duration::from_millis(30),
            wait: Duration::from_millis(20),
            connect: Some(Duration::from_millis(5)),
            request: Duration::from_millis(4),
        });
        let parts = s.summary(3);
        assert_eq!((parts.sent, parts.wait.count, parts.connect.count, parts.request.count), (101, 1, 1, 1));
        assert!((parts.wait.p99_ms - 20.0).abs() < 0.1 && (parts.request.p50_ms - 4.0).abs() < 0.1, "{parts:?}");
        let snap = s.snapshot();
        assert_eq!(snap.sent, 101);
        assert_eq!(s.snapshot().p99_ms, 0.0, "the window starts over");
        s.reset();
        assert_eq!(s.summary(3).sent, 0);
    }

    #[test]
    fn reads_cpu_times_from_proc() {
        let mark = CpuMark::now(&[std::process::id()]);
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let used = mark.since();
        assert!(x > 0 && used.simulator_secs >= 0.0 && used.machine_capacity_secs > 0.0, "{used:?}");
        assert_eq!(used.watched_secs.len(), 1);
        assert!(process_cpu_secs(Some(u32::MAX)).is_none(), "no such process");
    }
}
