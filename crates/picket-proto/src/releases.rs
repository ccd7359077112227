//! Releases on the wire: the signed package manifest (`manifest.json` inside a package, see
//! `picket-package`) and the REST views of published releases (`GET/POST /api/v1/releases`).
//!
//! The manifest is a persisted, signed format: it carries `format` (`MANIFEST_FORMAT`), and
//! readers refuse formats they do not know. Fields are added, never repurposed.

use picket_domain::{Timestamp, Version};
use serde::{Deserialize, Serialize};

/// Current format of package manifests.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a release package holds and promises; signed with Ed25519 by an offline key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (`MANIFEST_FORMAT`).
    pub format: u32,
    /// The release version; what a sensor started from this package reports.
    pub version: Version,
    /// Relative path (in `files`) of the program the updater starts.
    pub entrypoint: String,
    /// Every regular file of the payload, by path.
    pub files: Vec<ManifestFile>,
    /// SHA-256 (hex) of the compressed payload (`payload.tar.zst`).
    pub payload_sha256: String,
    /// Size in bytes of the compressed payload.
    pub payload_size: u64,
    /// The oldest `picket-updater` that can install this package.
    pub min_updater_version: Version,
    /// When it was signed.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// After this, the package is no longer offered as a new update (a running sensor is
    /// never stopped because of it).
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
}

/// One file of a package's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative path with `/` separators, no `.` or `..` parts.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the contents.
    pub sha256: String,
    /// Unix mode: 493 (0o755) or 420 (0o644).
    pub mode: u32,
}

/// A published release as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The version.
    pub version: Version,
    /// Whether this is the current release (the newest published one).
    pub current: bool,
    /// SHA-256 (hex) of the package file; sensors download it at
    /// `/sensor/v1/packages/{sha256}`.
    pub sha256: String,
    /// Size of the package file in bytes.
    pub size: u64,
    /// The program the updater starts.
    pub entrypoint: String,
    /// The oldest updater that can install it.
    pub min_updater_version: Version,
    /// Id of the key that signed it (first 16 hex digits of the SHA-256 of the public key).
    pub signing_key_id: String,
    /// Who published it (`token:<id>` or `user:<name>`).
    pub published_by: String,
    /// When it was published.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// When it was signed.
    #[serde(with = "crate::time::rfc3339")]
    pub signed_at: Timestamp,
    /// When it stops being offered as a new update.
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
    /// How many files it installs.
    pub files: u64,
}

/// `GET /api/v1/releases`: every published release, oldest version first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseList {
    /// Releases by version, ascending; the last one is the current release.
    pub items: Vec<ReleaseView>,
    /// The current release's version; `null` before the first publish.
    pub current: Option<Version>,
}
