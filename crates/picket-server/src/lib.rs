//! The Picket control plane: the use cases (`app`), the REST API (`api`), authentication and
//! permissions (`auth`), the sensor CA (`tls`), the CSV export (`csv`), and start-up
//! (`prepare`, then `serve(listener, prepared, shutdown)`).
//!
//! This crate must not put SQL or business rules in HTTP handlers: handlers in `api/` parse,
//! call one use case in `app/`, and render; use cases load through `picket_store::Store`,
//! decide with `picket_domain`, and persist. It must not name a storage backend either: it
//! holds an `Arc<dyn Store>` chosen once by the binary.

pub mod api;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod csv;
mod ids;
pub mod metrics;
pub mod notify;
pub mod sensor_api;
pub mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use picket_store::{Store, StoreError};

pub use app::App;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::ServerConfig;
pub use sensor_api::serve_sensors;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The sensor CA or a certificate could not be made or read.
    #[error("certificates: {0}")]
    Tls(String),
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

/// Everything `serve` needs, made once by `prepare`: the use cases over the store, the
/// sensor CA and listener certificate, and (on a first start) the generated admin token.
pub struct Prepared {
    /// The admin token generated on this first start, to print once; `None` otherwise.
    pub generated_bootstrap_token: Option<String>,
    /// The sensor CA and the sensor listener's certificate (for the sensor API).
    pub tls: tls::SensorTls,
    app: Arc<App>,
    mounts: Vec<Mount>,
}

/// Makes extra routes (the portal) over the final use cases; merged beside the REST API.
pub type Mount = Box<dyn Fn(Arc<App>) -> axum::Router + Send + Sync>;

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("generated_bootstrap_token", &self.generated_bootstrap_token.as_ref().map(|_| "<redacted>"))
            .field("backend", &self.app.store().backend())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The use cases, for callers that drive them without HTTP (the portal, jobs, tests).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves the routes `make` builds (over the final `App`, after `with_clock`) beside the
    /// REST API on the same listener: how the binary mounts the portal without this crate
    /// depending on it. The routes must not set a fallback (the API's 404 is the fallback).
    pub fn mount(mut self, make: impl Fn(Arc<App>) -> axum::Router + Send + Sync + 'static) -> Prepared {
        self.mounts.push(Box::new(make));
        self
    }

    /// Replaces the clock (tests drive time with a `ManualClock`); call before `serve`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Prepared {
        let app = App::new(
            self.app.store().clone(),
            self.app.config().clone(),
            clock,
            self.app.ca_cert_pem().to_string(),
            self.app.package_signing_keys().to_vec(),
        );
        self.app = Arc::new(app);
        self
    }
}

/// Makes (once per cluster) the sensor CA, mirrors it and a fresh sensor-listener
/// certificate into `<data_dir>/tls/`, ensures a bootstrap admin token exists, and reads
/// the package-signing public keys.
#[tracing::instrument(skip_all)]
pub async fn prepare(config: ServerConfig, store: Arc<dyn Store>) -> Result<Prepared, ServerError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| ServerError::Io { path: config.data_dir.clone(), source })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tls = tls::prepare(&config, store.as_ref(), clock.now()).await?;
    let mut keys = Vec::new();
    for path in &config.release_key_pubs {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io { path: path.clone(), source })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ServerError::Config(format!("release key file {} is empty", path.display())));
        }
        keys.push(key.to_string());
    }
    if let Some(target) = &config.syslog {
        notify::SyslogTarget::parse(target).map_err(ServerError::Config)?;
    }
    let generated = auth::ensure_bootstrap_token(&config, store.as_ref(), clock.now()).await?;
    let app = App::new(store, config, clock, tls.ca_cert_pem.clone(), keys);
    Ok(Prepared { generated_bootstrap_token: generated, tls, app: Arc::new(app), mounts: Vec::new() })
}

/// Serves the REST API on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = metrics::handle();
    let mut router = api::router(prepared.app.clone(), handle.clone());
    for make in &prepared.mounts {
        router = make(prepared.app.clone()).merge(router);
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let notifier = notify::spawn(prepared.app.clone(), stop_rx.clone());
    let every = prepared.app.config().health_check_every;
    let health = app::health::spawn(prepared.app.clone(), every, stop_rx.clone());
    let rollouts = app::rollouts::spawn(prepared.app.clone(), Duration::from_secs(1), stop_rx.clone());
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => handle.run_upkeep(),
                _ = stop_rx.changed() => break,
            }
        }
    });
    // With the peer address, so the portal can count wrong first-run tokens per client.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Graceful, but bounded: idle keep-alive connections close at once, requests in flight get
    // `DRAIN` to finish (a long export or a client that never reads must not hold the process).
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let serving = axum::serve(listener, service).with_graceful_shutdown(shutdown);
    let drained = async move {
        if fired_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN).await;
    };
    let result = tokio::select! {
        r = serving => r,
        _ = drained => {
            tracing::warn!("requests still open {DRAIN:?} after the shutdown signal; closing them");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    // Background jobs stop at their next tick; one in the middle of a long pass (the first
    // status pass over a million sensors) is stopped after `JOB_STOP_GRACE`. Every job works
    // in transactions, so a stopped pass rolls back and is redone after the next start.
    let deadline = tokio::time::Instant::now() + JOB_STOP_GRACE;
    for (name, job) in [("upkeep", upkeep), ("notifications", notifier), ("status", health), ("rollouts", rollouts)] {
        let abort = job.abort_handle();
        if tokio::time::timeout_at(deadline, job).await.is_err() {
            abort.abort();
            tracing::warn!(job = name, "background job still busy {JOB_STOP_GRACE:?} after shutdown; stopped it");
        }
    }
    result
}

/// How long requests in flight may run on after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);
/// How long background jobs get to finish their pass after the listeners stopped.
const JOB_STOP_GRACE: Duration = Duration::from_secs(5);
