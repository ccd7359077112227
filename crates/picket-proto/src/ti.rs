//! Threat-intelligence packages and detection alerts on the wire (DESIGN.md "Threat-intelligence
//! packages and alerts"): the REST listing of TI packages, the TI offer a heartbeat answer
//! carries to sensors with `auto_ti_updates`, and the alerts a sensor uploads
//! (`POST /sensor/v1/alerts`) and the API lists (`GET /api/v1/alerts`).
//! Fields are added, never repurposed; readers ignore fields they do not know.

use picket_domain::Timestamp;
use serde::{Deserialize, Serialize};

/// Most alerts one `POST /sensor/v1/alerts` may carry (larger batches get 413).
pub const MAX_ALERTS_PER_UPLOAD: usize = 500;
/// Longest alert excerpt, in bytes, the control plane stores (longer ones are cut on a char
/// boundary).
pub const MAX_EXCERPT_BYTES: usize = 2048;

/// The extension of a downloaded TI package file. Not `.pkg`: browsers take that for a macOS
/// installer and hold the download until the user confirms it.
pub const TI_PACKAGE_EXTENSION: &str = "tipkg";

/// The file name a TI package download is served as (`Content-Disposition` of
/// `GET /api/v1/ti-packages/{version}/download` and of the portal's Download link):
/// `picket-ti-<version>.tipkg`.
pub fn ti_package_file_name(version: i64) -> String {
    format!("picket-ti-{version}.{TI_PACKAGE_EXTENSION}")
}

/// One published TI package (`GET/POST /api/v1/ti-packages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiPackageView {
    /// TI version: an integer that only goes up.
    pub version: i64,
    /// Whether it is the newest published TI package (the one sensors should run).
    pub current: bool,
    /// SHA-256 (hex) of the package file; sensors download it at
    /// `/sensor/v1/packages/{sha256}`, operators at `/api/v1/ti-packages/{version}/download`.
    pub sha256: String,
    /// Size of the package file in bytes.
    pub size: u64,
    /// How many indicators it carries.
    pub indicator_count: u64,
    /// Id of the key that signed it (as for releases).
    pub signing_key_id: String,
    /// Who published it (`token:<id>` or `user:<name>`).
    pub published_by: String,
    /// When it was published.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// When it was signed.
    #[serde(with = "crate::time::rfc3339")]
    pub signed_at: Timestamp,
}

/// `GET /api/v1/ti-packages`: every published TI package, oldest version first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiPackageList {
    /// Packages by version, ascending; the last one is current.
    pub items: Vec<TiPackageView>,
    /// The current TI version; `null` before the first publish.
    pub current: Option<i64>,
}

/// In a heartbeat answer (field `ti`), to a cloud-connected sensor with `auto_ti_updates` whose
/// reported `ti_version` is below the current one: the package to fetch from
/// `GET /sensor/v1/packages/{sha256}`, verify against the activation file's keys, and apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TiOffer {
    /// The TI version to run.
    pub version: i64,
    /// SHA-256 (hex) of the package file.
    pub sha256: String,
    /// Size of the package file in bytes.
    pub size: u64,
}

/// What matched: the indicator's type (`ip`, `cidr`, `domain`, `sha256`, `pattern`) and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertIndicator {
    /// `ip`, `cidr`, `domain`, `sha256` or `pattern`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The indicator's value as written in the indicators file.
    pub value: String,
}

/// One alert as the sensor raised it (`POST /sensor/v1/alerts`; also the sensor's on-disk
/// queue and `picket-sensor alerts list --json`). `id` is made by the sensor (random, 32 hex
/// digits) and makes uploads idempotent: the control plane keeps one alert per
/// (`sensor_id`, `id`) however often it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorAlert {
    /// Made by the sensor; the idempotency key of uploads.
    pub id: String,
    /// When the event matched (sensor clock).
    #[serde(with = "crate::time::rfc3339")]
    pub time: Timestamp,
    /// What matched.
    pub indicator: AlertIndicator,
    /// `low`, `medium` or `high` (the indicator's).
    pub severity: String,
    /// The start of the raw event (at most `MAX_EXCERPT_BYTES`).
    pub excerpt: String,
    /// The indicator's description, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The TI version that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ti_version: Option<i64>,
    /// The sensor's id (filled in by the sensor for its local list; the control plane takes
    /// the id from the client certificate and ignores this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
}

/// `POST /sensor/v1/alerts` body: a batch of queued alerts, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertUpload {
    /// At most `MAX_ALERTS_PER_UPLOAD`.
    pub alerts: Vec<SensorAlert>,
}

/// The answer to an upload: every alert of the batch is now stored (the sensor may drop them
/// from its queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertUploadResponse {
    /// Alerts stored by this call.
    pub accepted: u64,
    /// Alerts of the batch that were already stored (a retried upload).
    pub duplicates: u64,
}

/// One stored alert (`GET /api/v1/alerts` items; DESIGN.md's alert fields plus extras).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// The sensor's alert id.
    pub id: String,
    /// The sensor that raised it.
    pub sensor_id: String,
    /// Its name when the alert was stored.
    #[serde(default)]
    pub sensor_name: String,
    /// When the event matched (sensor clock).
    #[serde(with = "crate::time::rfc3339")]
    pub time: Timestamp,
    /// What matched.
    pub indicator: AlertIndicator,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// The start of the raw event.
    pub excerpt: String,
    /// The indicator's description, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The TI version that matched, if the sensor said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ti_version: Option<i64>,
    /// When the control plane stored it.
    #[serde(with = "crate::time::rfc3339")]
    pub received_at: Timestamp,
}
