//! Use cases of the control plane, shared by the REST API, the portal and background jobs.
//! Each one loads through the store, decides with `picket_domain`, and persists with an
//! audit record; none knows about HTTP or SQL.
//!
//! Permissions are types: use cases that change things take `&Operator` or `&Admin`, and
//! every read and write is limited to the caller's subscription scope, where a sensor
//! outside it behaves exactly as one that does not exist.

mod admin;
pub mod alerts;
pub mod auth_cache;
mod error;
mod first_run;
pub mod health;
mod identity;
pub mod releases;
pub mod rollouts;
pub(crate) mod rotation;
mod sensors;
pub mod ti;
pub(crate) mod users;

use std::sync::Arc;

use picket_domain::{StatusContext, Timestamp};
use picket_store::Store;

pub use admin::AuditPage;
pub use error::{AppError, AppResult};
pub use first_run::{FirstAdmin, FirstRunClient, FirstRunError, REPLACEMENT_DESCRIPTION};
pub use identity::{HEARTBEAT_FLUSH_EVERY, HeartbeatBatcher, SensorAuthError};
pub use sensors::{ListRequest, SensorBatches, sensor_view};

use crate::{Clock, ServerConfig};

/// Default page size of lists.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of lists.
pub const MAX_LIMIT: u32 = 1000;

/// The control plane's use cases over one store.
pub struct App {
    store: Arc<dyn Store>,
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    started_at: Timestamp,
    ca_cert_pem: String,
    package_signing_keys: Vec<String>,
    sensor_auth: auth_cache::SensorAuthCache,
    ti: ti::TiCache,
    watchdog_seen: rollouts::WatchdogSeen,
    ended_cursor: health::EndedCursor,
}

impl App {
    /// Use cases over `store`; `ca_cert_pem` and `package_signing_keys` go into activation files.
    pub fn new(
        store: Arc<dyn Store>,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        ca_cert_pem: String,
        package_signing_keys: Vec<String>,
    ) -> App {
        let started_at = clock.now();
        let sensor_auth = auth_cache::SensorAuthCache::default();
        let ti = ti::TiCache::default();
        let watchdog_seen = rollouts::WatchdogSeen::default();
        let ended_cursor = health::EndedCursor::default();
        App {
            store,
            config,
            clock,
            started_at,
            ca_cert_pem,
            package_signing_keys,
            sensor_auth,
            ti,
            watchdog_seen,
            ended_cursor,
        }
    }

    /// The short-lived cache of sensor authentications; call `revoke_all` on it after any
    /// change that retires a certificate (delete, rotation confirm).
    pub fn sensor_auth_cache(&self) -> &auth_cache::SensorAuthCache {
        &self.sensor_auth
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The CA certificate sensors pin.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Package-signing public keys written into activation files.
    pub fn package_signing_keys(&self) -> &[String] {
        &self.package_signing_keys
    }

    /// The server clock's current instant.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// What sensor statuses are derived against right now: the server clock, the timings,
    /// the `outdated` threshold from published releases, and this server's start.
    pub async fn status_context(&self) -> AppResult<StatusContext> {
        let releases = self.store.release_versions().await?;
        Ok(StatusContext {
            now: self.now(),
            timings: self.config.timings,
            outdated_below: picket_domain::version::outdated_below(&releases),
            watching_since: self.started_at,
        })
    }

    /// Whether the store answers (for `/healthz`).
    pub async fn ping(&self) -> AppResult<()> {
        Ok(self.store.ping().await?)
    }
}
