//! The activation file an operator downloads and hands to `picket-updater install`.

use picket_domain::{Mode, Timestamp};
use serde::{Deserialize, Serialize};

/// Current format of activation files; readers refuse formats they do not know.
pub const ACTIVATION_FORMAT: u32 = 1;

/// Everything a host needs to join the fleet: who it is, where the control plane is, which CA
/// to pin, a one-time token, and the keys its packages must be signed with.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationFile {
    /// Format version (`ACTIVATION_FORMAT`).
    pub format: u32,
    /// The sensor's id.
    pub sensor_id: String,
    /// The name given at onboarding.
    pub sensor_name: String,
    /// Cloud connected or locally managed.
    pub mode: Mode,
    /// Sensor-listener URLs of the control plane (`https://host:port`), tried in order.
    pub control_plane_urls: Vec<String>,
    /// The control plane's CA certificate (PEM), the only one the sensor trusts.
    pub ca_cert_pem: String,
    /// One-time activation token (secret).
    pub activation_token: String,
    /// When the token expires.
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
    /// Ed25519 public keys (base64 or PEM) that packages must be signed with.
    pub package_signing_keys: Vec<String>,
}

impl std::fmt::Debug for ActivationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationFile")
            .field("sensor_id", &self.sensor_id)
            .field("sensor_name", &self.sensor_name)
            .field("mode", &self.mode)
            .field("control_plane_urls", &self.control_plane_urls)
            .field("activation_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
