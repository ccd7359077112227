//! Simulated sensors that take updates, for `picket-bench fleet-update`: each heartbeats at an
//! interval reporting its version; when a heartbeat answer carries an `update` grant
//! (`picket_proto::updates::UpdateGrant`) it does what a sensor host does, minus the disk:
//! downloads `GET /sensor/v1/packages/{sha256}`, checks the size and the SHA-256 against the
//! grant, "restarts" (a configurable pause, standing for the real sensor's restart), then
//! heartbeats at once on a new connection with the new version and the `succeeded` update
//! report, which it repeats until an answer no longer carries that grant (the protocol of
//! `docs/rollouts.md`). Each update's steps are timed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use picket_domain::{ServiceStatus, Timestamp};
use picket_proto::sensor::{HeartbeatRequest, HeartbeatResponse};
use picket_proto::updates::{UpdateAction, UpdateGrant, UpdateOutcome, UpdateReport};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::SimError;
use crate::conn::Conn;
use crate::fleet::{Fleet, SimSensor};

/// How the simulated sensors behave.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Between two heartbeats of one sensor.
    pub interval: Duration,
    /// The simulated restart of the sensor service after the download (the sensor's own time).
    pub restart: Duration,
    /// Timeout of one call (the download too).
    pub timeout: Duration,
    /// The version every sensor starts on.
    pub version: String,
}

/// One update carried out by one simulated sensor, with when each step ended.
#[derive(Debug, Clone)]
pub struct UpdateRecord {
    /// The sensor's id.
    pub sensor_id: String,
    /// The version it updated to.
    pub version: String,
    /// The heartbeat answer that first carried the grant arrived.
    pub granted: std::time::Instant,
    /// The package was downloaded and checked.
    pub downloaded: std::time::Instant,
    /// The simulated restart ended (the new version's first heartbeat is sent now).
    pub restarted: std::time::Instant,
    /// An answer no longer carried the grant: the control plane cleared it.
    pub cleared: std::time::Instant,
}

/// What the simulated fleet did so far; shared with the caller while it runs.
#[derive(Debug, Default)]
pub struct UpdateLog {
    /// Finished updates, in the order they were cleared.
    pub records: Mutex<Vec<UpdateRecord>>,
    /// Failures (download, digest, refused calls), as messages.
    pub errors: Mutex<Vec<String>>,
    /// Heartbeats answered.
    pub heartbeats: std::sync::atomic::AtomicU64,
}

impl UpdateLog {
    /// How many sensors cleared an update to `version`.
    pub fn cleared_on(&self, version: &str) -> usize {
        self.records.lock().map_or(0, |r| r.iter().filter(|r| r.version == version).count())
    }

    fn error(&self, msg: String) {
        if let Ok(mut e) = self.errors.lock() {
            e.push(msg);
        }
    }
}

fn now_ts() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

/// One sensor's state between heartbeats.
struct Host {
    version: String,
    started_at: Timestamp,
    /// The report to send until the answer drops its grant, and the record it completes.
    report: Option<(UpdateReport, UpdateRecord)>,
}

fn body(h: &Host) -> Result<Bytes, SimError> {
    let req = HeartbeatRequest {
        service_status: ServiceStatus::Running,
        version: Some(h.version.clone()),
        config_version_applied: 0,
        ti_version: None,
        rss_bytes: Some(48 << 20),
        cpu_percent: Some(0.5),
        uptime_secs: None,
        service_started_at: Some(h.started_at),
        update_report: h.report.as_ref().map(|(r, _)| r.clone()),
        watchdog_restart_at: None,
    };
    serde_json::to_vec(&req).map(Bytes::from).map_err(|e| SimError::Setup(e.to_string()))
}

async fn heartbeat(conn: &mut Conn, h: &Host, timeout: Duration) -> Result<HeartbeatResponse, SimError> {
    let answer = conn.call(Method::POST, "/sensor/v1/heartbeat", Some(body(h)?), timeout).await?;
    serde_json::from_slice(&answer).map_err(|e| SimError::Http(format!("heartbeat answer: {e}")))
}

/// Downloads and checks the grant's package; returns it (its bytes are not kept).
async fn download(conn: &mut Conn, g: &UpdateGrant, timeout: Duration) -> Result<(), SimError> {
    let path = format!("/sensor/v1/packages/{}", g.sha256);
    let bytes = conn.call(Method::GET, &path, None, timeout).await?;
    if bytes.len() as u64 != g.size {
        return Err(SimError::Http(format!("package of {} bytes, the grant says {}", bytes.len(), g.size)));
    }
    let digest = hex::encode(Sha256::digest(&bytes));
    if !digest.eq_ignore_ascii_case(&g.sha256) {
        return Err(SimError::Http(format!("package digest {digest}, the grant says {}", g.sha256)));
    }
    Ok(())
}

async fn sensor_loop(
    s: Arc<SimSensor>,
    fleet: Arc<crate::tls::Target>,
    opts: UpdateOptions,
    log: Arc<UpdateLog>,
    first: Instant,
    mut halt: watch::Receiver<bool>,
) {
    let mut host = Host { version: opts.version.clone(), started_at: now_ts(), report: None };
    let mut conn: Option<Conn> = None;
    let mut next = first;
    // The update id being carried out or already done, so a re-sent grant is not redone.
    let mut handled: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = halt.changed() => break,
        }
        if *halt.borrow() {
            break;
        }
        let step = async {
            if conn.as_ref().is_none_or(|c| !c.is_open()) {
                conn = Some(Conn::open(&fleet, &s.identity, s.sessions.clone()).await?);
            }
            let Some(c) = conn.as_mut() else { return Err(SimError::Setup("no connection".into())) };
            let answer = heartbeat(c, &host, opts.timeout).await?;
            log.heartbeats.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The report was sent: the grant is cleared once an answer stops carrying it.
            if let Some((report, record)) = host.report.take() {
                if answer.update.as_ref().is_some_and(|g| g.update_id == report.update_id) {
                    host.report = Some((report, record));
                } else if let Ok(mut r) = log.records.lock() {
                    r.push(UpdateRecord { cleared: std::time::Instant::now(), ..record });
                }
            }
            let Some(g) = answer.update else { return Ok(false) };
            if g.action != UpdateAction::Update || handled.as_deref() == Some(g.update_id.as_str()) {
                return Ok(false);
            }
            handled = Some(g.update_id.clone());
            let granted = std::time::Instant::now();
            download(c, &g, opts.timeout).await?;
            let downloaded = std::time::Instant::now();
            // The restart: the old process (and its connection) goes away, the new one starts.
            conn = None;
            tokio::time::sleep(opts.restart).await;
            host.version = g.version.clone();
            host.started_at = now_ts();
            let report = UpdateReport {
                update_id: g.update_id.clone(),
                outcome: UpdateOutcome::Succeeded,
                version: g.version.clone(),
                error: None,
                at: now_ts(),
            };
            let record = UpdateRecord {
                sensor_id: s.id.clone(),
                version: g.version.clone(),
                granted,
                downloaded,
                restarted: std::time::Instant::now(),
                cleared: std::time::Instant::now(),
            };
            host.report = Some((report, record));
            Ok(true)
        };
        let again = match step.await {
            Ok(again) => again,
            Err(e) => {
                log.error(format!("{}: {}", s.name, e.message()));
                conn = None;
                false
            }
        };
        // A restarted sensor heartbeats at once (as picket-sensor does at start).
        let now = Instant::now();
        next = if again { now } else { (next + opts.interval).max(now) };
    }
}

/// Runs the fleet until `stop` turns true; `log` fills as updates are cleared.
pub async fn run(fleet: &Fleet, opts: &UpdateOptions, log: Arc<UpdateLog>, mut stop: watch::Receiver<bool>) {
    let (halt_tx, halt_rx) = watch::channel(false);
    let start = Instant::now();
    let n = fleet.sensors.len().max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in fleet.sensors.iter().enumerate() {
        let first = start + opts.interval.mul_f64(i as f64 / n as f64);
        tasks.spawn(sensor_loop(s.clone(), fleet.target.clone(), opts.clone(), log.clone(), first, halt_rx.clone()));
    }
    let _ = stop.wait_for(|s| *s).await;
    let _ = halt_tx.send(true);
    let grace = tokio::time::sleep(opts.timeout);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            _ = &mut grace => { tasks.abort_all(); break }
        }
    }
}
