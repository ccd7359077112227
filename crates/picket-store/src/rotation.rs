//! Two-phase certificate rotation in storage: a sensor proposes a new certificate while
//! authenticated with its pinned one (recorded as its *pending* fingerprint, a repeat replaces
//! it), then confirms over a connection presenting the new one, which swaps pinned := pending.
//! Until the confirm, the pinned certificate keeps working for everything. Also keeps the
//! pinned certificate's expiry (`cert_expires_at`) for the `cert_expiring` health issue.
//! `Store` requires this trait, so every backend implements it.

use async_trait::async_trait;
use picket_domain::Timestamp;

use crate::error::{StoreError, StoreResult};
use crate::model::SensorRow;

/// Why a rotation step was refused; the messages are what the sensor prints.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The sensor does not exist, or no longer pins the certificate the step was made with.
    #[error("this client certificate is not pinned to any sensor (unknown, revoked or deleted)")]
    UnknownCertificate,
    /// The proposed certificate is pinned to (or proposed by) a sensor already.
    #[error("the proposed certificate is already pinned to or proposed by a sensor; generate a new one")]
    CertificateInUse,
    /// The confirm presented a certificate that is not this sensor's pending one.
    #[error("this certificate was not proposed; propose it with the current certificate first")]
    NotProposed,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a sensor's certificates stand (also what the rotation audit entries record).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertState {
    /// The sensor.
    pub sensor_id: String,
    /// SHA-256 of the pinned certificate (hex), once activated.
    pub fingerprint: Option<String>,
    /// When the pinned certificate expires (recorded at activation and at confirm).
    pub expires_at: Option<Timestamp>,
    /// SHA-256 of the proposed, not yet confirmed certificate.
    pub pending_fingerprint: Option<String>,
    /// When the proposed certificate expires.
    pub pending_expires_at: Option<Timestamp>,
}

/// Certificate rotation and expiry in storage.
#[async_trait]
pub trait CertRotationStore: Send + Sync + 'static {
    /// Records `pending` (expiring at `pending_expires_at`) as the pending certificate of the
    /// sensor that pins `current`, replacing an earlier proposal; `CertificateInUse` when
    /// `pending` is pinned to or proposed by any sensor (itself included, except a repeat of
    /// its own proposal). Audited as `sensor.cert_propose` in the same transaction.
    async fn propose_certificate(
        &self,
        current: &str,
        pending: &str,
        pending_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<CertState, RotationError>;

    /// The sensor whose *pending* certificate has this fingerprint (only the confirm step
    /// authenticates with it).
    async fn sensor_by_pending_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<SensorRow>>;

    /// Swaps pinned := pending for the sensor whose pending certificate is `pending` (and the
    /// expiry with it), clearing the pending one, in one conditional update; afterwards the
    /// old certificate authenticates nothing. `NotProposed` if no sensor has this pending
    /// fingerprint. Audited as `sensor.cert_confirm`.
    async fn confirm_certificate(&self, pending: &str, now: Timestamp) -> Result<CertState, RotationError>;

    /// Records when the certificate `fingerprint` pinned to `sensor_id` expires (at
    /// activation); nothing happens if that sensor no longer pins it.
    async fn record_cert_expiry(&self, sensor_id: &str, fingerprint: &str, expires_at: Timestamp) -> StoreResult<()>;

    /// Where the certificates of `sensor_id` stand; `None` if it does not exist.
    async fn cert_state(&self, sensor_id: &str) -> StoreResult<Option<CertState>>;

    /// Activated sensors whose pinned certificate expires before `before`, soonest first
    /// (at most `limit`), for the `cert_expiring` health issue.
    async fn certs_expiring_before(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<CertState>>;
}

/// Shared SQL of the rotation statements, `$N` dialect of both backends.
pub mod sql {
    use super::*;

    /// The columns of a [`CertState`].
    pub const CERT_STATE_COLUMNS: &str =
        "id, cert_fingerprint, cert_expires_at, pending_cert_fingerprint, pending_cert_expires_at";

    /// The sensor pinning `$1`: its id and pending fingerprint.
    pub const PINNED_BY: &str = "SELECT id, pending_cert_fingerprint FROM sensors WHERE cert_fingerprint = $1";

    /// Which sensor pins or proposes `$1` (the id), if any.
    pub const FINGERPRINT_USED: &str =
        "SELECT id FROM sensors WHERE cert_fingerprint = $1 OR pending_cert_fingerprint = $1";

    /// Records the proposal: `$1` id, `$2` pinned fingerprint, `$3` pending, `$4` its expiry.
    pub const PROPOSE: &str = "UPDATE sensors SET pending_cert_fingerprint = $3, pending_cert_expires_at = $4 \
WHERE id = $1 AND cert_fingerprint = $2";

    /// The id of the sensor whose pending certificate is `$1`.
    pub const PENDING_OF: &str = "SELECT id FROM sensors WHERE pending_cert_fingerprint = $1";

    /// The swap pinned := pending (and the expiry with it), pending cleared: `$1` id, `$2`
    /// pending fingerprint. Affects one row only while `$2` is pending (the right-hand sides
    /// read the row as it was, on both backends).
    pub const CONFIRM: &str = "UPDATE sensors SET cert_fingerprint = pending_cert_fingerprint, \
cert_expires_at = pending_cert_expires_at, pending_cert_fingerprint = NULL, pending_cert_expires_at = NULL \
WHERE id = $1 AND pending_cert_fingerprint = $2";

    /// `$1` id, `$2` fingerprint, `$3` expiry.
    pub const RECORD_EXPIRY: &str = "UPDATE sensors SET cert_expires_at = $3 WHERE id = $1 AND cert_fingerprint = $2";

    /// `SELECT <CERT_STATE_COLUMNS> FROM sensors WHERE id = $1`.
    pub fn cert_state_sql() -> String {
        format!("SELECT {CERT_STATE_COLUMNS} FROM sensors WHERE id = $1")
    }

    /// Activated sensors expiring before `$1`, soonest first, `$2` of them.
    pub fn expiring_sql() -> String {
        format!(
            "SELECT {CERT_STATE_COLUMNS} FROM sensors WHERE activated_at IS NOT NULL AND cert_expires_at IS NOT NULL \
AND cert_expires_at < $1 ORDER BY cert_expires_at, id LIMIT $2"
        )
    }

    /// Decides whether `pending` may be proposed by sensor `id` (pinning `current`, with
    /// `existing` pending), given the sensor that already pins or proposes it (`used_by`).
    pub fn check_proposal(
        id: &str,
        current: &str,
        pending: &str,
        existing: Option<&str>,
        used_by: Option<&str>,
    ) -> Result<(), RotationError> {
        if pending == current {
            return Err(RotationError::CertificateInUse);
        }
        match used_by {
            None => Ok(()),
            Some(other) if other == id && existing == Some(pending) => Ok(()),
            Some(_) => Err(RotationError::CertificateInUse),
        }
    }

    /// Decodes a row of [`CERT_STATE_COLUMNS`].
    pub fn decode_cert_state(r: &impl crate::sql::Columns) -> StoreResult<CertState> {
        Ok(CertState {
            sensor_id: r.text("id")?,
            fingerprint: r.opt_text("cert_fingerprint")?,
            expires_at: r.opt_int("cert_expires_at")?.map(Timestamp),
            pending_fingerprint: r.opt_text("pending_cert_fingerprint")?,
            pending_expires_at: r.opt_int("pending_cert_expires_at")?.map(Timestamp),
        })
    }

    /// A unique violation while proposing or confirming can only be the fingerprint.
    pub fn conflict(e: StoreError) -> RotationError {
        match e {
            StoreError::Conflict(_) => RotationError::CertificateInUse,
            e => RotationError::Store(e),
        }
    }
}
