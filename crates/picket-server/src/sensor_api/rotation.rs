//! The two rotation routes of the sensor API. `POST /sensor/v1/cert/propose` is made with the
//! pinned certificate (an `AuthedSensor`) and carries the new one; `POST /sensor/v1/cert/confirm`
//! is made over a connection presenting the proposed certificate, and is the only route where
//! a pending fingerprint authenticates. Thin: the checks and the swap are `App` use cases.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use picket_proto::sensor::{CertConfirmResponse, CertProposeRequest, CertProposeResponse};
use picket_store::RotationError;

use super::AuthedSensor;
use super::tls::PeerFingerprint;
use crate::api::error::ApiError;
use crate::api::extract::ApiJson;
use crate::app::App;
use crate::app::rotation::RotationRefusal;

impl From<RotationRefusal> for ApiError {
    fn from(e: RotationRefusal) -> ApiError {
        match e {
            RotationRefusal::BadCertificate(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_certificate", m),
            RotationRefusal::Refused(r) => {
                let (status, code) = match r {
                    RotationError::UnknownCertificate | RotationError::NotProposed => {
                        (StatusCode::UNAUTHORIZED, "unauthorized")
                    }
                    RotationError::CertificateInUse => (StatusCode::CONFLICT, "certificate_in_use"),
                    RotationError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                ApiError::new(status, code, r.to_string())
            }
            RotationRefusal::App(e) => e.into(),
        }
    }
}

/// `POST /sensor/v1/cert/propose`.
pub async fn propose(
    State(app): State<Arc<App>>,
    AuthedSensor(sensor): AuthedSensor,
    Extension(PeerFingerprint(current)): Extension<PeerFingerprint>,
    ApiJson(req): ApiJson<CertProposeRequest>,
) -> Result<Json<CertProposeResponse>, ApiError> {
    Ok(Json(app.propose_sensor_certificate(&sensor, &current, &req).await?))
}

/// `POST /sensor/v1/cert/confirm` (no body).
pub async fn confirm(
    State(app): State<Arc<App>>,
    Extension(PeerFingerprint(presented)): Extension<PeerFingerprint>,
) -> Result<Json<CertConfirmResponse>, ApiError> {
    Ok(Json(app.confirm_sensor_certificate(&presented).await?))
}

/// How often the control plane looks for certificates inside the rotation window.
pub const CERT_EXPIRY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Raises `cert_expiring` health issues at start and every `CERT_EXPIRY_CHECK_EVERY` until
/// `stop` says so (every replica may run it: opening an issue is idempotent).
pub async fn cert_expiry_loop(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CERT_EXPIRY_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = app.sync_cert_expiring_issues().await {
            tracing::warn!(error = %e, "checking certificate expiries failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_refusals_have_their_own_status_and_code() {
        let check = |e: RotationRefusal, status: StatusCode, code: &str| {
            let api = ApiError::from(e);
            assert_eq!((api.status, api.code), (status, code), "{}", api.message);
            assert!(!api.message.is_empty());
        };
        check(
            RotationRefusal::BadCertificate("cert_pem: expired".into()),
            StatusCode::BAD_REQUEST,
            "invalid_certificate",
        );
        check(RotationRefusal::Refused(RotationError::NotProposed), StatusCode::UNAUTHORIZED, "unauthorized");
        check(RotationRefusal::Refused(RotationError::UnknownCertificate), StatusCode::UNAUTHORIZED, "unauthorized");
        check(RotationRefusal::Refused(RotationError::CertificateInUse), StatusCode::CONFLICT, "certificate_in_use");
    }
}
