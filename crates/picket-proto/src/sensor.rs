//! Requests and answers of the sensor API (`/sensor/v1`, mutual TLS on `--sensor-listen`).
//! Public from its first use: fields are added, never repurposed or removed; readers ignore
//! fields they do not know, so old sensors keep working against newer control planes.

use picket_domain::{Mode, ServiceStatus, Timestamp};
use serde::{Deserialize, Serialize};

use crate::SensorConfig;
use crate::ti::TiOffer;
use crate::updates::{UpdateGrant, UpdateReport};

/// `POST /sensor/v1/activate`: the one call made before the certificate is pinned.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateRequest {
    /// The sensor id from the activation file.
    pub sensor_id: String,
    /// The one-time activation token from the activation file (secret).
    pub activation_token: String,
}

impl std::fmt::Debug for ActivateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivateRequest")
            .field("sensor_id", &self.sensor_id)
            .field("activation_token", &"<redacted>")
            .finish()
    }
}

/// The answer to a successful activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateResponse {
    /// The sensor's id.
    pub sensor_id: String,
    /// Its name in the control plane.
    pub sensor_name: String,
    /// Cloud connected or locally managed.
    pub mode: Mode,
    /// SHA-256 (hex) of the certificate now pinned to it.
    pub cert_fingerprint: String,
    /// When the activation happened (server clock).
    #[serde(with = "crate::time::rfc3339")]
    pub activated_at: Timestamp,
    /// The current release (the newest published one), for an installer that has no package
    /// yet (`picket-updater install` without `--package`); absent before the first publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_release: Option<CurrentRelease>,
}

/// The current release, as the activation answer names it: download it with the certificate
/// just pinned at `GET /sensor/v1/packages/{sha256}` and verify it like any package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentRelease {
    /// Its version (`MAJOR.MINOR.PATCH`).
    pub version: String,
    /// SHA-256 (hex) of the package file.
    pub sha256: String,
    /// Size in bytes of the package file.
    pub size: u64,
}

/// `POST /sensor/v1/heartbeat`: what the sensor reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// `running`, `starting`, `disabled`, `stopped`.
    pub service_status: ServiceStatus,
    /// The version it runs (`MAJOR.MINOR.PATCH`).
    #[serde(default)]
    pub version: Option<String>,
    /// The configuration version it applied (0: none yet).
    #[serde(default)]
    pub config_version_applied: i64,
    /// The TI package version it runs.
    #[serde(default)]
    pub ti_version: Option<i64>,
    /// Its resident memory in bytes.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// Its CPU use, percent of one core, averaged since the last heartbeat.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Seconds since its service started.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// When its service started.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub service_started_at: Option<Timestamp>,
    /// The updater's outcome of a grant (`update/report.json`), sent until the answer no
    /// longer carries that grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_report: Option<UpdateReport>,
    /// When the updater's watchdog last restarted the service.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::rfc3339_opt")]
    pub watchdog_restart_at: Option<Timestamp>,
}

/// The answer to a heartbeat: what the control plane wants the sensor to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The sensor's id.
    pub sensor_id: String,
    /// Its name in the control plane (the only place a cloud-connected sensor's name is set).
    pub sensor_name: String,
    /// The configuration version it should run; pull `GET /sensor/v1/config` when ahead.
    pub config_version_desired: i64,
    /// The version it should run; `null` while no rollout targets it.
    pub desired_version: Option<String>,
    /// The control plane's clock, for the sensor to notice skew.
    #[serde(with = "crate::time::rfc3339")]
    pub server_time: Timestamp,
    /// The sensor's open update grant, re-sent until a report with its `update_id` arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateGrant>,
    /// A newer TI package for a sensor with `auto_ti_updates` (see `ti::TiOffer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ti: Option<TiOffer>,
}

/// `GET /sensor/v1/config`: the sensor's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorConfigResponse {
    /// The sensor's id.
    pub sensor_id: String,
    /// The version of this configuration; report it as applied once in effect.
    pub config_version: i64,
    /// The settings (capture setting, ...).
    pub config: SensorConfig,
}

/// `POST /sensor/v1/cert/propose` (made with the pinned certificate): the new self-signed
/// certificate the sensor wants to move to. Until the confirm the pinned one keeps working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertProposeRequest {
    /// The new certificate, PEM.
    pub cert_pem: String,
}

/// The answer to a proposal: what is now pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertProposeResponse {
    /// The sensor's id.
    pub sensor_id: String,
    /// SHA-256 (hex) of the proposed certificate, now pending.
    pub pending_fingerprint: String,
    /// When the proposed certificate expires.
    #[serde(with = "crate::time::rfc3339")]
    pub pending_expires_at: Timestamp,
}

/// The answer to `POST /sensor/v1/cert/confirm` (made over a connection presenting the
/// proposed certificate; no body): the certificate now pinned. Confirming a certificate that
/// is already pinned answers the same (a sensor resuming after a crash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertConfirmResponse {
    /// The sensor's id.
    pub sensor_id: String,
    /// SHA-256 (hex) of the certificate now pinned; the previous one is refused from now on.
    pub cert_fingerprint: String,
    /// When it expires.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub cert_expires_at: Option<Timestamp>,
}
