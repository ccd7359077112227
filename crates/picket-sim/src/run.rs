//! Heartbeats of a simulated fleet: each sensor is a task that heartbeats at the interval
//! (first beats spread evenly over one interval, then ±10% jitter, as `picket-sensor` does),
//! pulls its configuration when the answer says it is behind, and keeps its mutual-TLS
//! connection open between beats.
//!
//! File descriptors bound what one process can hold open (`ulimit -n`), and a connection
//! cannot be shared because the certificate is the identity. So at most `max_connections`
//! sensors keep a connection; the others connect for each beat (resuming their own TLS
//! session when the server allows it) and close, at most `transient_connections` at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use picket_domain::{ServiceStatus, Timestamp};
use picket_proto::sensor::{HeartbeatRequest, HeartbeatResponse, SensorConfigResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::conn::Conn;
use crate::fleet::{Fleet, SimSensor};
use crate::stats::{Stats, Summary};
use crate::{SimError, tls::Target};

/// File descriptors kept free for everything but sensor connections.
pub const RESERVED_FDS: usize = 1024;
/// Default number of connect-beat-close connections at once.
pub const DEFAULT_TRANSIENT: usize = 256;

/// How to run the heartbeats.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Between two heartbeats of one sensor; zero sends the next as soon as one is answered.
    pub interval: Duration,
    /// How long to measure (after the warm-up).
    pub duration: Duration,
    /// Heartbeats before this much time, and before every sensor has made its first
    /// heartbeat (connections being opened), are not measured.
    pub warmup: Duration,
    /// Sensors that keep their connection open.
    pub max_connections: usize,
    /// Connect-beat-close connections at once, for the sensors beyond `max_connections`.
    pub transient_connections: usize,
    /// Timeout of one call.
    pub timeout: Duration,
    /// The version the sensors report.
    pub sensor_version: String,
}

/// The soft limit of open files of this process (`ulimit -n`), from `/proc/self/limits`.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many sensors can keep a connection open within this process's file limit.
pub fn default_max_connections(sensors: usize, transient: usize) -> usize {
    let limit = open_files_limit().unwrap_or(1024);
    sensors.min(limit.saturating_sub(RESERVED_FDS + transient)).max(1)
}

struct Ctx {
    target: Arc<Target>,
    opts: RunOptions,
    stats: Arc<Stats>,
    keep: Arc<Semaphore>,
    transient: Arc<Semaphore>,
    started_at: Timestamp,
    /// Sensors that have made their first heartbeat (answered or not).
    first_done: AtomicUsize,
}

struct Open {
    conn: Conn,
    /// `None` for a connect-beat-close connection.
    kept: Option<OwnedSemaphorePermit>,
    _transient: Option<OwnedSemaphorePermit>,
}

fn now_ts() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

/// SplitMix64: cheap per-sensor randomness for jitter.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `interval` ±10%.
fn jittered(interval: Duration, rng: &mut u64) -> Duration {
    let f = 0.9 + 0.2 * (next_random(rng) >> 11) as f64 / (1u64 << 53) as f64;
    interval.mul_f64(f)
}

fn heartbeat_body(ctx: &Ctx, applied: i64) -> Bytes {
    let req = HeartbeatRequest {
        service_status: ServiceStatus::Running,
        version: Some(ctx.opts.sensor_version.clone()),
        config_version_applied: applied,
        ti_version: None,
        rss_bytes: Some(48 << 20),
        cpu_percent: Some(0.5),
        uptime_secs: None,
        service_started_at: Some(ctx.started_at),
        update_report: None,
        watchdog_restart_at: None,
    };
    serde_json::to_vec(&req).map(Bytes::from).unwrap_or_default()
}

/// One heartbeat (and a configuration pull when behind); returns whether `applied` changed.
async fn beat(
    s: &SimSensor,
    ctx: &Ctx,
    open: &mut Option<Open>,
    body: &Bytes,
    applied: &mut i64,
) -> Result<bool, SimError> {
    if open.as_ref().is_some_and(|o| !o.conn.is_open()) {
        *open = None;
        ctx.stats.closed();
    }
    if open.is_none() {
        let (kept, transient) = match ctx.keep.clone().try_acquire_owned() {
            Ok(p) => (Some(p), None),
            Err(_) => (None, ctx.transient.clone().acquire_owned().await.ok()),
        };
        let conn = Conn::open(&ctx.target, &s.identity, s.sessions.clone()).await?;
        ctx.stats.connected(conn.resumed);
        *open = Some(Open { conn, kept, _transient: transient });
    }
    let Some(o) = open.as_mut() else { return Err(SimError::Setup("no connection".into())) };
    let t = ctx.opts.timeout;
    let answer = o.conn.call(Method::POST, "/sensor/v1/heartbeat", Some(body.clone()), t).await?;
    let answer: HeartbeatResponse =
        serde_json::from_slice(&answer).map_err(|e| SimError::Http(format!("heartbeat answer: {e}")))?;
    let mut changed = false;
    if answer.config_version_desired > *applied {
        let cfg = o.conn.call(Method::GET, "/sensor/v1/config", None, t).await?;
        let cfg: SensorConfigResponse =
            serde_json::from_slice(&cfg).map_err(|e| SimError::Http(format!("config answer: {e}")))?;
        changed = cfg.config_version != *applied;
        *applied = cfg.config_version;
    }
    if o.kept.is_none() {
        *open = None;
        ctx.stats.closed();
    }
    Ok(changed)
}

async fn sensor_loop(s: Arc<SimSensor>, ctx: Arc<Ctx>, first: Instant, mut rng: u64, mut halt: watch::Receiver<bool>) {
    let mut open: Option<Open> = None;
    let mut applied = s.applied.load(Ordering::Relaxed);
    let mut body = heartbeat_body(&ctx, applied);
    let mut next = first;
    let mut first_beat = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = halt.changed() => break,
        }
        if *halt.borrow() {
            break;
        }
        let t0 = Instant::now();
        let failed = match beat(&s, &ctx, &mut open, &body, &mut applied).await {
            Ok(changed) => {
                ctx.stats.ok(t0.elapsed());
                if changed {
                    s.applied.store(applied, Ordering::Relaxed);
                    body = heartbeat_body(&ctx, applied);
                }
                false
            }
            Err(e) => {
                ctx.stats.error(&e);
                if open.take().is_some() {
                    ctx.stats.closed();
                }
                true
            }
        };
        if first_beat {
            first_beat = false;
            ctx.first_done.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        next = if ctx.opts.interval.is_zero() {
            // Back to back, but not a hot loop against a server that refuses.
            if failed { now + Duration::from_millis(100) } else { now }
        } else {
            (next + jittered(ctx.opts.interval, &mut rng)).max(now)
        };
    }
    if open.is_some() {
        ctx.stats.closed();
    }
}

/// Heartbeats `fleet` until `opts.warmup + opts.duration` has passed or `stop` turns true,
/// then waits for calls in flight (at most `opts.timeout`) and returns what was measured
/// after the warm-up. `stats` may be read meanwhile for live reports.
pub async fn run(fleet: &Fleet, opts: &RunOptions, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) -> Summary {
    let ctx = Arc::new(Ctx {
        target: fleet.target.clone(),
        opts: opts.clone(),
        stats: stats.clone(),
        keep: Arc::new(Semaphore::new(opts.max_connections.max(1))),
        transient: Arc::new(Semaphore::new(opts.transient_connections.max(1))),
        started_at: now_ts(),
        first_done: AtomicUsize::new(0),
    });
    let (halt_tx, halt_rx) = watch::channel(false);
    let start = Instant::now();
    let n = fleet.sensors.len().max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut seed = u64::from(std::process::id()) ^ start.elapsed().as_nanos() as u64 ^ 0xA5A5_5A5A;
    for (i, s) in fleet.sensors.iter().enumerate() {
        let offset = if opts.interval.is_zero() {
            // Open connections at about 1,000 a second rather than all at once (a burst
            // overflows the listen backlog, and dropped SYNs are retried after 1, 3, 7 s).
            Duration::from_millis(i as u64)
        } else {
            opts.interval.mul_f64(i as f64 / n as f64)
        };
        let rng = next_random(&mut seed);
        tasks.spawn(sensor_loop(s.clone(), ctx.clone(), start + offset, rng, halt_rx.clone()));
    }
    let mut measure_from = start + opts.warmup;
    if !opts.warmup.is_zero() {
        let ready = async {
            tokio::time::sleep_until(measure_from).await;
            // Then until every sensor has made its first heartbeat, for at most two minutes.
            let cap = Instant::now() + Duration::from_secs(120);
            while ctx.first_done.load(Ordering::Relaxed) < fleet.sensors.len() && Instant::now() < cap {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = ready => {
                stats.reset();
                measure_from = Instant::now();
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    if !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep_until(measure_from + opts.duration) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    let summary = stats.summary(fleet.sensors.len());
    let _ = halt_tx.send(true);
    let grace = tokio::time::sleep(opts.timeout);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            _ = &mut grace => { tasks.abort_all(); break }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut rng = 7;
        let i = Duration::from_secs(60);
        let v: Vec<Duration> = (0..1000).map(|_| jittered(i, &mut rng)).collect();
        assert!(v.iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        assert!(v.iter().any(|d| *d < Duration::from_secs(57)) && v.iter().any(|d| *d > Duration::from_secs(63)));
    }

    #[test]
    fn reads_the_open_files_limit() {
        assert!(open_files_limit().is_some_and(|n| n > 0));
        assert_eq!(default_max_connections(5, 10), 5);
    }
}
