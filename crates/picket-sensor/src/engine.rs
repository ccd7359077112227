//! The detection side of `run`, started beside the heartbeat loop with three hooks there
//! (start, TI version and offers in heartbeats, stop): the active TI and its watcher (reloads
//! `ti/active.json` every second, so `picket-sensor ti import` takes effect without a
//! restart), the event sources (`detect`), the alert store (`alerts`), and for a
//! cloud-connected sensor the alert uploader and the TI applier (`uplink`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use picket_domain::Mode;
use picket_proto::ti::TiOffer;
use tokio::sync::{Notify, mpsc, watch};

use crate::alerts::AlertStore;
use crate::detect::{self, DetectOptions, Shared, Sources};
use crate::state::{SensorIdentity, StateDir};
use crate::ti::{TiHandle, load_active};
use crate::uplink::{self, IdentityClient};

/// How often `ti/active.json` is checked for a new TI version.
pub const TI_POLL: Duration = Duration::from_secs(1);

/// How long `run` waits for another process (a sensor being replaced) to release the alert
/// store before giving up.
pub const STORE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Opens the alert store, waiting up to `STORE_LOCK_WAIT` while another process holds it.
fn open_store(dir: &std::path::Path) -> Result<AlertStore, String> {
    let deadline = std::time::Instant::now() + STORE_LOCK_WAIT;
    loop {
        match AlertStore::open(dir) {
            Err(crate::alerts::AlertStoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            r => return r.map_err(|e| e.to_string()),
        }
    }
}

/// The running detection engine.
#[derive(Debug)]
pub struct Engine {
    ti: Arc<TiHandle>,
    sources: Sources,
    watcher: JoinHandle<()>,
    stop_flag: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    offers: Option<mpsc::Sender<TiOffer>>,
}

impl Engine {
    /// Opens the alert store and the active TI and starts the sources (and, for a
    /// cloud-connected sensor, the uploader and the TI applier). Call inside the runtime.
    pub fn start(
        state: &StateDir,
        me: &SensorIdentity,
        opts: &DetectOptions,
        max_backoff: Duration,
    ) -> Result<Engine, String> {
        let store = open_store(&state.root().join("alerts"))?;
        let ti = match load_active(state) {
            Ok(ti) => ti,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the active TI; matching nothing until a TI package is applied");
                crate::ti::ActiveTi::empty()
            }
        };
        match ti.version() {
            Some(v) => tracing::info!(ti_version = v, "threat intelligence in effect"),
            None => tracing::info!("no TI package yet: nothing to match until one is imported or pushed"),
        }
        let ti = Arc::new(TiHandle::new(ti));
        let stop_flag = Arc::new(AtomicBool::new(false));
        let store = Arc::new(Mutex::new(store));
        let stored = Arc::new(Notify::new());
        let shared = Shared {
            ti: ti.clone(),
            store: store.clone(),
            stored: stored.clone(),
            sensor_id: me.sensor_id.clone(),
            stop: stop_flag.clone(),
        };
        let sources = detect::start(state, opts, &shared)?;
        let watcher = {
            let (st, handle, flag) = (state.clone(), ti.clone(), stop_flag.clone());
            std::thread::Builder::new()
                .name("picket-ti-watch".into())
                .spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        if let Err(e) = handle.reload(&st) {
                            tracing::warn!(error = %e, "cannot load the new TI; the previous TI stays in effect");
                        }
                        std::thread::sleep(TI_POLL);
                    }
                })
                .map_err(|e| e.to_string())?
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut offers = None;
        if me.mode == Mode::CloudConnected {
            let up = IdentityClient::new(state.clone(), me.clone());
            tasks.push(tokio::spawn(uplink::upload_loop(up, store, stored, max_backoff, stop_rx)));
            let (tx, rx) = mpsc::channel(1);
            let client = IdentityClient::new(state.clone(), me.clone());
            let keys = me.package_signing_keys.clone();
            tasks.push(tokio::spawn(uplink::ti_loop(client, state.clone(), keys, ti.clone(), rx)));
            offers = Some(tx);
        }
        Ok(Engine { ti, sources, watcher, stop_flag, stop_tx, tasks, offers })
    }

    /// The TI version in effect (reported in heartbeats).
    pub fn ti_version(&self) -> Option<i64> {
        self.ti.version()
    }

    /// A heartbeat answer offered a TI package: apply it in the background if newer.
    pub fn offer(&self, offer: Option<&TiOffer>) {
        if let (Some(tx), Some(o)) = (&self.offers, offer)
            && self.ti.version().is_none_or(|v| v < o.version)
        {
            let _ = tx.try_send(o.clone());
        }
    }

    /// Stops everything: sources save their checkpoints, an upload in flight is abandoned
    /// (its alerts stay queued).
    pub async fn stop(self) {
        self.stop_flag.store(true, Ordering::Relaxed);
        let _ = self.stop_tx.send(true);
        drop(self.offers);
        let sources = self.sources;
        let watcher = self.watcher;
        let _ = tokio::task::spawn_blocking(move || {
            sources.stop();
            let _ = watcher.join();
        })
        .await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
