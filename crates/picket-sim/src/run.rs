//! Heartbeats of a simulated fleet: each sensor is a task that heartbeats at the interval
//! (first beats spread evenly over one interval in a shuffled order, then ±10% jitter, as
//! `picket-sensor` does), pulls its configuration when the answer says it is behind, and keeps
//! its mutual-TLS connection open between beats.
//!
//! File descriptors bound what one process can hold open (`ulimit -n`), and a connection
//! cannot be shared because the certificate is the identity. So at most `max_connections`
//! sensors keep a connection; the others connect for each beat (resuming their own TLS
//! session when the server allows it) and close, at most `transient_connections` at a time.
//!
//! A fleet's first contact is not its steady state: every sensor makes a full TLS handshake
//! (no session to resume yet) and pulls its configuration. With `prime_concurrency` those
//! first contacts are made before the schedule starts, a bounded number at once, and timed on
//! their own (`Summary::prime_secs`: a cold start of the fleet); the schedule then runs on
//! warm sessions, as a fleet that has been running does.

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
use crate::stats::{BeatTimes, CpuMark, Stats, Summary};
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
    /// First contacts made before the schedule, this many at once (unmeasured; see the
    /// module docs); 0 makes them on the schedule.
    pub prime_concurrency: usize,
    /// Processes (the server) whose CPU time the summary reports for the measured window.
    pub watch_pids: Vec<u32>,
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
    /// Bounds the first contacts made before the schedule, when priming.
    prime: Option<Arc<Semaphore>>,
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

/// One heartbeat scheduled at `scheduled` (and a configuration pull when behind); returns
/// whether `applied` changed and where the time went.
async fn beat(
    s: &SimSensor,
    ctx: &Ctx,
    open: &mut Option<Open>,
    body: &Bytes,
    applied: &mut i64,
    scheduled: Instant,
) -> Result<(bool, BeatTimes), SimError> {
    if open.as_ref().is_some_and(|o| !o.conn.is_open()) {
        *open = None;
        ctx.stats.closed();
    }
    let (wait, connect) = if open.is_none() {
        let (kept, transient) = match ctx.keep.clone().try_acquire_owned() {
            Ok(p) => (Some(p), None),
            Err(_) => (None, ctx.transient.clone().acquire_owned().await.ok()),
        };
        let c0 = Instant::now();
        let conn = Conn::open(&ctx.target, &s.identity, s.sessions.clone()).await?;
        let connect = c0.elapsed();
        ctx.stats.connected(conn.resumed);
        *open = Some(Open { conn, kept, _transient: transient });
        (c0.saturating_duration_since(scheduled), Some(connect))
    } else {
        (Instant::now().saturating_duration_since(scheduled), None)
    };
    let Some(o) = open.as_mut() else { return Err(SimError::Setup("no connection".into())) };
    let t = ctx.opts.timeout;
    let r0 = Instant::now();
    let answer = o.conn.call(Method::POST, "/sensor/v1/heartbeat", Some(body.clone()), t).await?;
    let answer: HeartbeatResponse =
        serde_json::from_slice(&answer).map_err(|e| SimError::Http(format!("heartbeat answer: {e}")))?;
    let request = r0.elapsed();
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
    Ok((changed, BeatTimes { total: scheduled.elapsed(), wait, connect, request }))
}

/// One beat of a sensor's loop, recorded; returns whether it failed.
async fn beat_recorded(
    s: &SimSensor,
    ctx: &Ctx,
    open: &mut Option<Open>,
    body: &mut Bytes,
    applied: &mut i64,
    scheduled: Instant,
) -> bool {
    match beat(s, ctx, open, body, applied, scheduled).await {
        Ok((changed, times)) => {
            ctx.stats.beat(times);
            if changed {
                s.applied.store(*applied, Ordering::Relaxed);
                *body = heartbeat_body(ctx, *applied);
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
    }
}

/// Where in the interval sensor `i` of `n` makes its first scheduled beat: evenly spaced
/// slots in a shuffled order (multiplying by a prime larger than any fleet permutes 0..n), so
/// sensors that keep a connection and sensors that reconnect interleave over the interval.
fn slot(i: usize, n: usize) -> f64 {
    let n = n.max(1) as u128;
    ((i as u128 * 2_654_435_761) % n) as f64 / n as f64
}

async fn sensor_loop(
    s: Arc<SimSensor>,
    ctx: Arc<Ctx>,
    offset: Duration,
    mut rng: u64,
    mut go: watch::Receiver<Option<Instant>>,
    mut halt: watch::Receiver<bool>,
) {
    let mut open: Option<Open> = None;
    let mut applied = s.applied.load(Ordering::Relaxed);
    let mut body = heartbeat_body(&ctx, applied);
    let mut first_beat = true;
    if let Some(prime) = &ctx.prime {
        let permit = tokio::select! {
            p = prime.acquire() => p,
            _ = halt.changed() => return,
        };
        beat_recorded(&s, &ctx, &mut open, &mut body, &mut applied, Instant::now()).await;
        drop(permit);
        first_beat = false;
        ctx.first_done.fetch_add(1, Ordering::Relaxed);
    }
    let start = tokio::select! {
        g = go.wait_for(Option::is_some) => match g { Ok(g) => (*g).unwrap_or_else(Instant::now), Err(_) => return },
        _ = halt.changed() => return,
    };
    let mut next = start + offset;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = halt.changed() => break,
        }
        if *halt.borrow() {
            break;
        }
        let failed = beat_recorded(&s, &ctx, &mut open, &mut body, &mut applied, next).await;
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
        prime: (opts.prime_concurrency > 0).then(|| Arc::new(Semaphore::new(opts.prime_concurrency))),
    });
    let (halt_tx, halt_rx) = watch::channel(false);
    let (go_tx, go_rx) = watch::channel(None);
    let n = fleet.sensors.len().max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut seed = u64::from(std::process::id()) ^ now_ts().0 as u64 ^ 0xA5A5_5A5A;
    for (i, s) in fleet.sensors.iter().enumerate() {
        let offset = if opts.interval.is_zero() {
            // Open connections at about 1,000 a second rather than all at once (a burst
            // overflows the listen backlog, and dropped SYNs are retried after 1, 3, 7 s).
            Duration::from_millis(i as u64)
        } else {
            opts.interval.mul_f64(slot(i, n))
        };
        let rng = next_random(&mut seed);
        tasks.spawn(sensor_loop(s.clone(), ctx.clone(), offset, rng, go_rx.clone(), halt_rx.clone()));
    }
    let mut prime_secs = None;
    if ctx.prime.is_some() {
        let t = Instant::now();
        let primed = async {
            while ctx.first_done.load(Ordering::Relaxed) < fleet.sensors.len() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = primed => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        prime_secs = Some(t.elapsed().as_secs_f64());
    }
    let start = Instant::now();
    let _ = go_tx.send(Some(start));
    let mut measure_from = start + opts.warmup;
    if !opts.warmup.is_zero() && !*stop.borrow() {
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
    let cpu = CpuMark::now(&opts.watch_pids);
    if !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep_until(measure_from + opts.duration) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    let mut summary = stats.summary(fleet.sensors.len());
    summary.cpu = Some(cpu.since());
    summary.prime_secs = prime_secs;
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
    fn first_beats_take_every_slot_once_in_a_shuffled_order() {
        for n in [1, 2, 7, 1000, 100_000] {
            let mut slots: Vec<usize> = (0..n).map(|i| (slot(i, n) * n as f64).round() as usize).collect();
            let in_order = slots.windows(2).all(|w| w[0] < w[1]);
            slots.sort_unstable();
            assert_eq!(slots, (0..n).collect::<Vec<_>>(), "n = {n}");
            assert!(n < 3 || !in_order, "n = {n}: not shuffled");
        }
    }

    #[test]
    fn reads_the_open_files_limit() {
        assert!(open_files_limit().is_some_and(|n| n > 0));
        assert_eq!(default_max_connections(5, 10), 5);
    }
}
