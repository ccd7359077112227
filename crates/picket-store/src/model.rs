//! Records as the store keeps them, and the inputs that create and change them.

use picket_domain::status::StatusFacts;
use picket_domain::{HealthStatus, Mode, Role, SensorType, ServiceStatus, Timestamp, UpdateState, Version};
use serde::Serialize;

/// Who changed what, written in the same transaction as the change.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The principal: `token:<id>` or `user:<name>` or `system`.
    pub actor: String,
    /// What was done, e.g. `sensor.onboard`.
    pub action: String,
    /// When (server clock).
    pub at: Timestamp,
}

/// One audit log entry, as listed by `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Increasing id, the cursor of the audit list.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// The kind of record (`sensor`, `zone`, `token`, ...).
    pub target_kind: String,
    /// Its id or name.
    pub target_id: String,
    /// The record before (JSON), for changes and deletes.
    pub before: Option<serde_json::Value>,
    /// The record after (JSON), for creates and changes.
    pub after: Option<serde_json::Value>,
}

/// A sensor as stored: the contract's fields plus the facts its status is derived from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensorRow {
    /// Unique id (UUID form).
    pub id: String,
    /// Host-name-like display name, unique case-insensitively.
    pub name: String,
    /// What it watches.
    pub sensor_type: SensorType,
    /// FQDN of its domain, or empty.
    pub domain: String,
    /// Ownership scope.
    pub subscription: String,
    /// Site, or empty.
    pub site: String,
    /// Zone (always one; `default` exists).
    pub zone: String,
    /// Free tags.
    pub tags: Vec<String>,
    /// Cloud connected or locally managed.
    pub mode: Mode,
    /// Whether TI packages are pushed to it.
    pub auto_ti_updates: bool,
    /// Free text.
    pub description: String,
    /// The capture/monitor setting that `adfs` and `standalone` need.
    pub capture_setting: Option<String>,
    /// In the delayed update ring.
    pub delayed_update: bool,
    /// Last reported service status.
    pub service_status: ServiceStatus,
    /// Version it runs.
    pub version: Option<Version>,
    /// When onboarded.
    pub created_at: Timestamp,
    /// Last contact.
    pub last_seen_at: Option<Timestamp>,
    /// When its activation token was consumed.
    pub activated_at: Option<Timestamp>,
    /// When its host was marked gone from the directory.
    pub decommissioned_at: Option<Timestamp>,
    /// When its service last started (reported).
    pub service_started_at: Option<Timestamp>,
    /// When it last pulled configuration.
    pub last_config_pull_at: Option<Timestamp>,
    /// Where its last update stands.
    pub update_state: UpdateState,
    /// Config version it applied.
    pub config_version_applied: i64,
    /// Config version it should run.
    pub config_version_desired: i64,
    /// TI package version it runs.
    pub ti_version: Option<i64>,
    /// Open health issues.
    pub open_issues: i64,
    /// Worst open issue.
    pub health_status: HealthStatus,
    /// When the current activation token expires (none minted yet: `None`).
    pub activation_expires_at: Option<Timestamp>,
    /// SHA-256 of its pinned client certificate (hex), once activated.
    pub cert_fingerprint: Option<String>,
}

impl SensorRow {
    /// The facts its `sensor_status` is derived from.
    pub fn facts(&self) -> StatusFacts {
        StatusFacts {
            mode: self.mode,
            activated_at: self.activated_at,
            decommissioned_at: self.decommissioned_at,
            last_seen_at: self.last_seen_at,
            service_started_at: self.service_started_at,
            last_config_pull_at: self.last_config_pull_at,
            update_state: self.update_state,
            configured: picket_domain::sensor::is_configured(self.sensor_type, self.capture_setting.as_deref()),
            config_version_desired: self.config_version_desired,
            config_version_applied: self.config_version_applied,
            version: self.version,
        }
    }
}

/// A sensor to onboard (already validated by the use case).
#[derive(Debug, Clone)]
pub struct NewSensor {
    /// Id chosen by the caller (random UUID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Type.
    pub sensor_type: SensorType,
    /// Domain or empty.
    pub domain: String,
    /// Subscription (must exist).
    pub subscription: String,
    /// Site or empty.
    pub site: String,
    /// Zone (must exist).
    pub zone: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Mode.
    pub mode: Mode,
    /// Push TI packages.
    pub auto_ti_updates: bool,
    /// Free text.
    pub description: String,
    /// Capture setting for types that need one.
    pub capture_setting: Option<String>,
    /// Delayed ring.
    pub delayed_update: bool,
    /// When.
    pub created_at: Timestamp,
}

/// A change to a sensor: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SensorPatch {
    /// New name.
    pub name: Option<String>,
    /// New site.
    pub site: Option<String>,
    /// New zone (must exist).
    pub zone: Option<String>,
    /// New tags (replace all).
    pub tags: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// New delayed ring membership.
    pub delayed_update: Option<bool>,
    /// New TI push setting.
    pub auto_ti_updates: Option<bool>,
    /// New capture setting (`Some(None)` clears it); bumps the desired config version.
    pub capture_setting: Option<Option<String>>,
}

/// A zone sensors are grouped in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When created.
    pub created_at: Timestamp,
}

/// An ownership scope sensors are billed and administered under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    /// Unique name (`default` always exists).
    pub name: String,
    /// Free text.
    pub description: String,
    /// When created.
    pub created_at: Timestamp,
}

/// An API token as stored: its secret only as a SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiToken {
    /// Public id, shown in lists and used to revoke.
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// Subscriptions it is limited to; `None` = all.
    pub subscriptions: Option<Vec<String>>,
    /// Free text (e.g. "bootstrap").
    pub description: String,
    /// SHA-256 of the secret, hex.
    #[serde(skip)]
    pub secret_hash: String,
    /// When created.
    pub created_at: Timestamp,
    /// When revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<Timestamp>,
}

/// Which sensors a caller may see: all, or those of some subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every subscription.
    All,
    /// Only these subscriptions (empty = nothing).
    Subscriptions(Vec<String>),
}

impl Scope {
    /// Whether a sensor of subscription `s` is visible in this scope.
    pub fn allows(&self, s: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Subscriptions(list) => list.iter().any(|x| x == s),
        }
    }
}

/// Fleet counts for the summary and the portal's header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SummaryCounts {
    /// All sensors in scope.
    pub total: u64,
    /// Cloud connected.
    pub cloud_connected: u64,
    /// Locally managed.
    pub locally_managed: u64,
    /// Count per `sensor_status` (every status present, zero included).
    pub by_sensor_status: Vec<(picket_domain::SensorStatus, u64)>,
    /// Count per `health_status` (every status present, zero included).
    pub by_health_status: Vec<(HealthStatus, u64)>,
}
