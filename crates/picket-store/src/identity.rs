//! What the sensor API persists: activation (the one-time token consumed atomically and the
//! client certificate's fingerprint pinned), lookups by fingerprint, batched heartbeats and
//! configuration pulls. `Store` requires this trait, so every backend implements it.

use async_trait::async_trait;
use picket_domain::{ServiceStatus, Timestamp, Version};

use crate::error::{StoreError, StoreResult};
use crate::model::SensorRow;

/// Why an activation was refused; the messages are what the sensor prints.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// No sensor has this id and token (never say which part was wrong).
    #[error("unknown sensor or activation token; download a new activation file")]
    Unknown,
    /// The token is right but expired.
    #[error("the activation token has expired; download a new activation file")]
    Expired {
        /// When it expired.
        expired_at: Timestamp,
    },
    /// The token was already used: the sensor is activated.
    #[error(
        "this activation file was already used; to activate a host again, delete the sensor, onboard it again and download a new activation file"
    )]
    Reused,
    /// The certificate is already pinned to a sensor.
    #[error("this client certificate is already pinned to a sensor; generate a new one")]
    CertificateInUse,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One heartbeat as the server batches it: what a sensor reported and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The sensor (authenticated by its certificate).
    pub sensor_id: String,
    /// Server time of arrival (becomes `last_seen_at`).
    pub at: Timestamp,
    /// Reported service status.
    pub service_status: ServiceStatus,
    /// Reported version, if it parsed.
    pub version: Option<Version>,
    /// Configuration version it applied.
    pub config_version_applied: i64,
    /// TI package version it runs.
    pub ti_version: Option<i64>,
    /// When its service started.
    pub service_started_at: Option<Timestamp>,
    /// Its resident memory, bytes.
    pub rss_bytes: Option<i64>,
    /// Its CPU use in tenths of a percent.
    pub cpu_permille: Option<i64>,
}

/// Sensor identity and liveness in storage.
#[async_trait]
pub trait SensorIdentityStore: Send + Sync + 'static {
    /// Consumes the activation token of `sensor_id` (given as its SHA-256 `token_hash`) and
    /// pins `cert_fingerprint`, in one conditional update: of concurrent attempts exactly one
    /// succeeds. Sets `activated_at` and `last_seen_at` to `now` and writes an audit entry.
    async fn activate_sensor(
        &self,
        sensor_id: &str,
        token_hash: &str,
        cert_fingerprint: &str,
        now: Timestamp,
    ) -> Result<SensorRow, ActivationError>;

    /// The sensor whose pinned certificate has this SHA-256 fingerprint (hex).
    async fn sensor_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<SensorRow>>;

    /// The sensors whose pinned certificates have these fingerprints, in any order (unknown
    /// ones are absent): one query for many sensors authenticating at once.
    async fn sensors_by_fingerprints(&self, fingerprints: &[String]) -> StoreResult<Vec<SensorRow>> {
        let mut rows = Vec::with_capacity(fingerprints.len());
        for fp in fingerprints {
            rows.extend(self.sensor_by_fingerprint(fp).await?);
        }
        Ok(rows)
    }

    /// Writes many sensors' heartbeats in one transaction; `last_seen_at` never moves back.
    /// Heartbeats of deleted sensors are ignored.
    async fn record_heartbeats(&self, batch: &[Heartbeat]) -> StoreResult<()>;

    /// Records that a sensor pulled its configuration at `now` (also a contact).
    async fn record_config_pull(&self, sensor_id: &str, now: Timestamp) -> StoreResult<()>;
}

/// Shared SQL of the identity statements, `$N` dialect of both backends.
pub mod sql {
    use super::*;
    use crate::sql::Value;

    /// The conditional update that consumes a token: `$1` id, `$2` token hash, `$3`
    /// fingerprint, `$4` now. Affects one row only for the first valid attempt.
    pub const ACTIVATE: &str = "UPDATE sensors SET activated_at = $4, last_seen_at = $4, cert_fingerprint = $3 \
WHERE id = $1 AND activation_token_hash = $2 AND activation_expires_at > $4 AND activated_at IS NULL";

    /// What is known about `$1` to explain a refused activation.
    pub const ACTIVATION_STATE: &str =
        "SELECT activation_token_hash, activation_expires_at, activated_at FROM sensors WHERE id = $1";

    /// Does any sensor pin fingerprint `$1`?
    pub const FINGERPRINT_TAKEN: &str = "SELECT id FROM sensors WHERE cert_fingerprint = $1";

    /// One heartbeat: `$1` id, `$2` at, `$3` service status, `$4` version, `$5` version key,
    /// `$6` applied config, `$7` TI version, `$8` service start, `$9` RSS, `$10` CPU.
    pub const HEARTBEAT: &str = "UPDATE sensors SET \
last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < $2 THEN $2 ELSE last_seen_at END, \
service_status = $3, version = $4, version_key = $5, config_version_applied = $6, ti_version = $7, \
service_started_at = $8, rss_bytes = $9, cpu_permille = $10 WHERE id = $1 AND activated_at IS NOT NULL";

    /// A configuration pull: `$1` id, `$2` now.
    pub const CONFIG_PULL: &str = "UPDATE sensors SET last_config_pull_at = $2, \
last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < $2 THEN $2 ELSE last_seen_at END WHERE id = $1";

    /// `SELECT <SENSOR_COLUMNS> FROM sensors WHERE cert_fingerprint = $1`.
    pub fn select_by_fingerprint_sql() -> String {
        format!("SELECT {} FROM sensors WHERE cert_fingerprint = $1", crate::query::SENSOR_COLUMNS)
    }

    /// The values of [`HEARTBEAT`].
    pub fn heartbeat_values(h: &Heartbeat) -> Vec<Value> {
        vec![
            Value::Text(h.sensor_id.clone()),
            Value::Int(h.at.0),
            Value::Text(h.service_status.as_str().to_string()),
            Value::OptText(h.version.map(|v| v.to_string())),
            Value::OptInt(h.version.map(|v| v.key())),
            Value::Int(h.config_version_applied),
            Value::OptInt(h.ti_version),
            Value::OptInt(h.service_started_at.map(|t| t.0)),
            Value::OptInt(h.rss_bytes),
            Value::OptInt(h.cpu_permille),
        ]
    }

    /// Explains why [`ACTIVATE`] changed nothing, from [`ACTIVATION_STATE`]'s row (`None`:
    /// no such sensor).
    pub fn refusal(
        state: Option<(Option<String>, Option<i64>, Option<i64>)>,
        token_hash: &str,
        now: Timestamp,
    ) -> ActivationError {
        match state {
            Some((Some(hash), expires, activated)) if hash == token_hash => match (activated, expires) {
                (Some(_), _) => ActivationError::Reused,
                (None, Some(e)) if e <= now.0 => ActivationError::Expired { expired_at: Timestamp(e) },
                _ => ActivationError::Unknown,
            },
            _ => ActivationError::Unknown,
        }
    }

    /// A unique violation while activating can only be the fingerprint.
    pub fn activation_conflict(e: StoreError) -> ActivationError {
        match e {
            StoreError::Conflict(_) => ActivationError::CertificateInUse,
            e => ActivationError::Store(e),
        }
    }
}
