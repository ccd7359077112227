//! Requests and answers of the REST API (`/api/v1`), and the CSV export's columns.

use std::collections::BTreeMap;

use picket_domain::{HealthStatus, Mode, Role, SensorStatus, SensorType, ServiceStatus, Timestamp};
use serde::{Deserialize, Serialize};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code: `invalid_json`, `validation_failed`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `payload_too_large`, `bad_request`, `internal`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

/// A sensor's configuration set by operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Capture/monitor setting (interface or source) that `adfs` and `standalone` sensors need.
    #[serde(default)]
    pub capture: Option<String>,
}

/// A sensor as the API and the portal show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorView {
    /// Unique id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it watches.
    #[serde(rename = "type")]
    pub sensor_type: SensorType,
    /// FQDN or empty.
    pub domain: String,
    /// Ownership scope.
    pub subscription: String,
    /// Site or empty.
    pub site: String,
    /// Zone.
    pub zone: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Cloud connected or locally managed.
    pub mode: Mode,
    /// TI packages pushed automatically.
    pub auto_ti_updates: bool,
    /// Reported service status.
    pub service_status: ServiceStatus,
    /// Derived status.
    pub sensor_status: SensorStatus,
    /// Why, when the status needs explaining (e.g. an expired activation token).
    pub sensor_status_detail: Option<String>,
    /// Version it runs.
    pub version: Option<String>,
    /// In the delayed update ring.
    pub delayed_update: bool,
    /// Worst open issue.
    pub health_status: HealthStatus,
    /// Open issue count.
    pub health_issues: i64,
    /// When onboarded.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// Last contact.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub last_seen_at: Option<Timestamp>,
    /// Applied configuration version.
    pub config_version_applied: i64,
    /// Desired configuration version.
    pub config_version_desired: i64,
    /// TI package version.
    pub ti_version: Option<i64>,
    /// Free text.
    pub description: String,
    /// Operator-set configuration.
    pub config: SensorConfig,
    /// When the activation token was used.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub activated_at: Option<Timestamp>,
    /// When the host was marked decommissioned.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub decommissioned_at: Option<Timestamp>,
    /// When the sensor's pinned client certificate expires (recorded at activation and at each
    /// rotation); in the details of one sensor only, absent from lists and when unknown.
    #[serde(default, with = "crate::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub cert_expires_at: Option<Timestamp>,
}

fn default_subscription() -> String {
    "default".to_string()
}

fn default_zone() -> String {
    "default".to_string()
}

fn default_true() -> bool {
    true
}

fn default_mode() -> Mode {
    Mode::CloudConnected
}

/// `POST /api/v1/sensors`: onboard a sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// Host-name-like name (include the host's IP to tell hosts apart, e.g. `DC01-10-0-0-5`).
    pub name: String,
    /// What it watches.
    #[serde(rename = "type")]
    pub sensor_type: SensorType,
    /// FQDN of its domain.
    #[serde(default)]
    pub domain: String,
    /// Subscription (default `default`).
    #[serde(default = "default_subscription")]
    pub subscription: String,
    /// Site.
    #[serde(default)]
    pub site: String,
    /// Zone (default `default`).
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Mode (default `cloud_connected`).
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Push TI packages (default true).
    #[serde(default = "default_true")]
    pub auto_ti_updates: bool,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Delayed ring (default false).
    #[serde(default)]
    pub delayed_update: bool,
    /// Configuration.
    #[serde(default)]
    pub config: SensorConfig,
}

/// `PATCH /api/v1/sensors/{id}`: absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSensorRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// New zone (must exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// New tags (replace all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Delayed ring membership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed_update: Option<bool>,
    /// TI push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_ti_updates: Option<bool>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New configuration (replaces it; bumps the desired config version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SensorConfig>,
}

/// A page of a list: `{"items", "next_cursor", "total"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage<T> {
    /// This page.
    pub items: Vec<T>,
    /// Pass as `cursor=` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// How many match in all.
    pub total: u64,
}

/// `GET /api/v1/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sensors in scope.
    pub total: u64,
    /// Cloud connected.
    pub cloud_connected: u64,
    /// Locally managed.
    pub locally_managed: u64,
    /// Count per sensor_status (all values present).
    pub by_sensor_status: BTreeMap<String, u64>,
    /// Count per health_status (all values present).
    pub by_health_status: BTreeMap<String, u64>,
}

/// A zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneView {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When created.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
}

/// `POST /api/v1/zones` and `POST /api/v1/subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNamed {
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionView {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When created.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Role.
    pub role: Role,
    /// Limit to these subscriptions; absent or null = all.
    #[serde(default)]
    pub subscriptions: Option<Vec<String>>,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    /// Id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Limited to these subscriptions; null = all.
    pub subscriptions: Option<Vec<String>>,
    /// Free text.
    pub description: String,
    /// When created.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// When revoked.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub revoked_at: Option<Timestamp>,
}

/// The answer to `POST /api/v1/tokens`: the secret, shown only this once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Limited to these subscriptions; null = all.
    pub subscriptions: Option<Vec<String>>,
    /// The secret bearer token.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// An audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    /// Increasing id.
    pub id: i64,
    /// When.
    #[serde(with = "crate::time::rfc3339")]
    pub at: Timestamp,
    /// Who (`token:<id>`, `user:<name>`, `system`).
    pub actor: String,
    /// What (`sensor.onboard`, ...).
    pub action: String,
    /// Kind of record.
    pub target_kind: String,
    /// Its id or name.
    pub target_id: String,
    /// The record before.
    pub before: Option<serde_json::Value>,
    /// The record after.
    pub after: Option<serde_json::Value>,
}

/// The CSV export's header, in the contract's order.
pub const CSV_COLUMNS: [&str; 16] = [
    "Sensor",
    "Type",
    "Domain",
    "Subscription",
    "Site",
    "Zone",
    "Tags",
    "Mode",
    "Service Status",
    "Sensor Status",
    "Version",
    "Delayed Update",
    "Health Status",
    "Health Issues",
    "Created",
    "Last Seen",
];
