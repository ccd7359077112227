//! The detection engine of `picket-sensor run`: event sources (`--follow FILE`: JSON lines
//! followed across rotation, `follow`; `--syslog-listen udp://…|tcp://…`, `syslog`) matched
//! against the active TI (`crate::ti::TiHandle`, swapped without a restart), each match
//! stored as a `SensorAlert` in the alert store (`crate::alerts`) before anything else.
//!
//! Each source runs on its own OS thread with blocking IO (a followed file is polled; sockets
//! use short timeouts), so matching never stalls the heartbeat loop, and stops when the shared
//! stop flag is set. Malformed input is counted and skipped, never fatal.

pub mod follow;
pub mod syslog;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use picket_proto::ti::{AlertIndicator, SensorAlert};
use picket_ti::Match;

use crate::alerts::{AlertStore, new_alert_id};
use crate::ti::{ActiveTi, TiHandle};

/// Where `run` reads events from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectOptions {
    /// `--follow FILE`: JSON-lines files followed across rotation.
    pub follow: Vec<PathBuf>,
    /// `--syslog-listen`: syslog listeners.
    pub syslog: Vec<syslog::Listen>,
}

/// Counters of one event source.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Events (lines, messages) read.
    pub events: AtomicU64,
    /// Events skipped as malformed.
    pub malformed: AtomicU64,
    /// Alerts raised.
    pub alerts: AtomicU64,
}

impl SourceStats {
    /// Counts a malformed event; logs the first few and then every thousandth.
    pub fn malformed(&self, source: &str, why: &dyn std::fmt::Display) {
        let n = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_multiple_of(1000) {
            tracing::warn!(source, malformed = n, "skipping a malformed event: {why}");
        }
    }
}

/// What every source shares: the TI, the alert store, who the sensor is, the stop flag.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The TI in effect.
    pub ti: Arc<TiHandle>,
    /// The alert store.
    pub store: Arc<Mutex<AlertStore>>,
    /// Woken after alerts were stored (the uploader waits on it).
    pub stored: Arc<tokio::sync::Notify>,
    /// The sensor's id, put in every alert.
    pub sensor_id: String,
    /// Set to stop every source.
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    /// Whether the sources should stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stores `alerts` (and a follow checkpoint) durably, then wakes the uploader.
    pub fn store(
        &self,
        alerts: &[SensorAlert],
        checkpoint: Option<&crate::alerts::FollowCheckpoint>,
    ) -> Result<(), crate::alerts::AlertStoreError> {
        let r = match self.store.lock() {
            Ok(mut s) => s.append(alerts, checkpoint),
            Err(p) => p.into_inner().append(alerts, checkpoint),
        };
        if r.is_ok() && !alerts.is_empty() {
            self.stored.notify_one();
        }
        r
    }
}

/// The alerts of `matches` found in the event `raw`.
pub fn make_alerts(ti: &ActiveTi, matches: &[Match<'_>], raw: &str, sensor_id: &str, out: &mut Vec<SensorAlert>) {
    let time = crate::run::now();
    for m in matches {
        let description = ti
            .matcher
            .as_ref()
            .and_then(|mm| mm.indicators().get(m.index))
            .map(|i| i.description.clone())
            .filter(|d| !d.is_empty());
        out.push(SensorAlert {
            id: new_alert_id(),
            time,
            indicator: AlertIndicator { kind: m.kind.as_str().to_string(), value: m.value.to_string() },
            severity: m.severity.as_str().to_string(),
            excerpt: picket_ti::excerpt(raw, picket_ti::DEFAULT_EXCERPT_BYTES).to_string(),
            description,
            ti_version: ti.version(),
            sensor_id: Some(sensor_id.to_string()),
        });
    }
}

/// The running sources.
#[derive(Debug)]
pub struct Sources {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Sources {
    /// Stops every source and waits for it (a follower saves its checkpoint first).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the sources of `opts`. Listeners are bound here, so a bad `--syslog-listen` is an
/// error at start; followed files that do not exist yet are waited for.
pub fn start(state: &crate::state::StateDir, opts: &DetectOptions, shared: &Shared) -> Result<Sources, String> {
    let mut threads = Vec::new();
    for listen in &opts.syslog {
        threads.extend(syslog::start(listen, shared.clone())?);
    }
    for path in &opts.follow {
        let follower = follow::Follower::open(state, path, shared)?;
        let sh = shared.clone();
        let name = format!("follow {}", path.display());
        let t = std::thread::Builder::new()
            .name("picket-follow".into())
            .spawn(move || follower.run(&sh))
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        threads.push(t);
    }
    Ok(Sources { threads, stop: shared.stop.clone() })
}

/// How often a followed file is checked for new data when it had none.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
