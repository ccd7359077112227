//! The sensor API (`/sensor/v1`) on its own mutual-TLS listener (`--sensor-listen`).
//!
//! Every connection presents a client certificate (`tls`); its SHA-256 fingerprint rides in
//! the request extensions. `POST /sensor/v1/activate` pins it to a sensor with the one-time
//! token; every other route takes an `AuthedSensor`, which looks the fingerprint up through
//! `App::authenticate_sensor` (the store, behind a 2 s cache that a delete through this
//! replica clears: `app::auth_cache`) and answers 401 for unknown, revoked or deleted
//! certificates. Heartbeats are answered at once and
//! written in batches every `HEARTBEAT_FLUSH_EVERY`. Certificate rotation (`rotation`):
//! propose with the pinned certificate, confirm with the proposed one (the only route where a
//! pending fingerprint authenticates).

pub mod alerts;
pub mod packages;
pub mod rotation;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use picket_proto::sensor::{
    ActivateRequest, ActivateResponse, HeartbeatRequest, HeartbeatResponse, SensorConfigResponse,
};
use picket_store::{ActivationError, SensorRow};

use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, BODY_LIMIT};
use crate::app::{App, HEARTBEAT_FLUSH_EVERY, HeartbeatBatcher, SensorAuthError};
use crate::tls::SensorTls;
use tls::PeerFingerprint;

/// What the sensor API's handlers share.
#[derive(Clone)]
pub struct SensorState {
    /// The use cases.
    pub app: Arc<App>,
    /// Heartbeats waiting to be written.
    pub batcher: HeartbeatBatcher,
}

impl FromRef<SensorState> for Arc<App> {
    fn from_ref(s: &SensorState) -> Arc<App> {
        s.app.clone()
    }
}

impl From<SensorAuthError> for ApiError {
    fn from(e: SensorAuthError) -> ApiError {
        match e {
            SensorAuthError::UnknownCertificate => ApiError::unauthorized(e.to_string()),
            SensorAuthError::Activation(a) => {
                let (status, code) = match a {
                    ActivationError::Unknown => (StatusCode::UNAUTHORIZED, "activation_refused"),
                    ActivationError::Expired { .. } => (StatusCode::GONE, "activation_expired"),
                    ActivationError::Reused => (StatusCode::CONFLICT, "activation_used"),
                    ActivationError::CertificateInUse => (StatusCode::CONFLICT, "certificate_in_use"),
                    ActivationError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                };
                ApiError::new(status, code, a.to_string())
            }
            SensorAuthError::App(e) => e.into(),
        }
    }
}

/// A sensor authenticated by the certificate pinned to it.
#[derive(Debug, Clone)]
pub struct AuthedSensor(pub SensorRow);

impl<S> FromRequestParts<S> for AuthedSensor
where
    S: Send + Sync,
    Arc<App>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<AuthedSensor, ApiError> {
        let Some(PeerFingerprint(fp)) = parts.extensions.get::<PeerFingerprint>().cloned() else {
            return Err(ApiError::unauthorized("a client certificate is required"));
        };
        let app = Arc::<App>::from_ref(state);
        Ok(AuthedSensor(app.authenticate_sensor(&fp).await?))
    }
}

async fn activate(
    State(app): State<Arc<App>>,
    Extension(PeerFingerprint(fp)): Extension<PeerFingerprint>,
    Extension(tls::PeerCertExpiry(expiry)): Extension<tls::PeerCertExpiry>,
    ApiJson(req): ApiJson<ActivateRequest>,
) -> Result<(StatusCode, Json<ActivateResponse>), ApiError> {
    let answer = app.activate_sensor(&fp, &req).await?;
    if let Some(expiry) = expiry {
        app.record_activation_cert_expiry(&answer.sensor_id, &fp, expiry).await;
    }
    Ok((StatusCode::OK, Json(answer)))
}

async fn heartbeat(
    State(state): State<SensorState>,
    AuthedSensor(sensor): AuthedSensor,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let mut answer = state.app.sensor_heartbeat(&sensor, &req, &state.batcher)?;
    answer.update = state.app.rollout_heartbeat(&sensor, &req).await?;
    answer.ti = state.app.ti_offer(&sensor, &req);
    Ok(Json(answer))
}

async fn config(
    State(app): State<Arc<App>>,
    AuthedSensor(sensor): AuthedSensor,
) -> Result<Json<SensorConfigResponse>, ApiError> {
    Ok(Json(app.sensor_config(&sensor).await?))
}

/// Unknown routes: 401 for an unknown certificate first, so they reveal nothing to it.
async fn not_found(_: AuthedSensor, req: axum::extract::Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// Every `(method, path)` the sensor API serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/sensor/v1/activate"),
    ("POST", "/sensor/v1/heartbeat"),
    ("GET", "/sensor/v1/config"),
    ("GET", "/sensor/v1/packages/{sha256}"),
    ("POST", "/sensor/v1/cert/propose"),
    ("POST", "/sensor/v1/cert/confirm"),
    ("POST", "/sensor/v1/alerts"),
];

/// The sensor API's routes over `state` (TLS and fingerprints are the listener's job).
pub fn router(state: SensorState) -> Router {
    Router::new()
        .route("/sensor/v1/activate", post(activate))
        .route("/sensor/v1/heartbeat", post(heartbeat))
        .route("/sensor/v1/config", get(config))
        .route("/sensor/v1/packages/{sha256}", get(packages::download))
        .route("/sensor/v1/cert/propose", post(rotation::propose))
        .route("/sensor/v1/cert/confirm", post(rotation::confirm))
        .route(
            "/sensor/v1/alerts",
            post(alerts::upload).layer(axum::extract::DefaultBodyLimit::max(alerts::ALERT_BODY_LIMIT)),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

/// Writes batched heartbeats every `HEARTBEAT_FLUSH_EVERY` until `stop` says so, then once more.
async fn flush_loop(app: Arc<App>, batcher: HeartbeatBatcher, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = batcher.flush(app.store().as_ref()).await {
            tracing::warn!(error = %e, pending = batcher.len(), "writing heartbeats failed; retrying");
        }
    }
    if let Err(e) = batcher.flush(app.store().as_ref()).await {
        tracing::warn!(error = %e, lost = batcher.len(), "writing the last heartbeats at shutdown failed");
    }
}

/// Serves the sensor API on `listener` with mutual TLS until `shutdown` completes, then
/// lets in-flight requests finish (at most 10 s) and writes the queued heartbeats.
pub async fn serve_sensors(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    tls: SensorTls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), crate::ServerError> {
    let config = tls::server_config(&tls)?;
    let batcher = HeartbeatBatcher::default();
    let router = router(SensorState { app: app.clone(), batcher: batcher.clone() });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(rotation::cert_expiry_loop(app.clone(), stop_rx.clone()));
    let flusher = tokio::spawn(flush_loop(app, batcher, stop_rx));
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let std_listener = listener.into_std().map_err(|e| crate::ServerError::Config(format!("sensor listener: {e}")))?;
    // axum-server panics on a blocking listener.
    std_listener.set_nonblocking(true).map_err(|e| crate::ServerError::Config(format!("sensor listener: {e}")))?;
    let result = axum_server::from_tcp(std_listener)
        .map_err(|e| crate::ServerError::Config(format!("sensor listener: {e}")))?
        .acceptor(tls::FingerprintAcceptor::new(config))
        .handle(handle)
        .serve(router.into_make_service())
        .await;
    let _ = stop_tx.send(true);
    let _ = flusher.await;
    result.map_err(|e| crate::ServerError::Config(format!("sensor listener: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::Timestamp;

    fn check(e: SensorAuthError, status: StatusCode, code: &str) {
        let api = ApiError::from(e);
        assert_eq!((api.status, api.code), (status, code), "{}", api.message);
        assert!(!api.message.is_empty());
    }

    #[test]
    fn refusals_have_their_own_status_and_code() {
        check(SensorAuthError::UnknownCertificate, StatusCode::UNAUTHORIZED, "unauthorized");
        check(SensorAuthError::Activation(ActivationError::Unknown), StatusCode::UNAUTHORIZED, "activation_refused");
        check(
            SensorAuthError::Activation(ActivationError::Expired { expired_at: Timestamp(0) }),
            StatusCode::GONE,
            "activation_expired",
        );
        check(SensorAuthError::Activation(ActivationError::Reused), StatusCode::CONFLICT, "activation_used");
        check(
            SensorAuthError::Activation(ActivationError::CertificateInUse),
            StatusCode::CONFLICT,
            "certificate_in_use",
        );
    }

    #[test]
    fn the_verifier_demands_a_certificate_and_offers_the_providers_schemes() {
        let provider = tls::provider();
        let v = tls::AnyClientCert::new(&provider);
        use rustls::server::danger::ClientCertVerifier;
        assert!(v.offer_client_auth() && v.client_auth_mandatory());
        assert!(v.root_hint_subjects().is_empty());
        assert!(v.supported_verify_schemes().contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256));
        let garbage = rustls::pki_types::CertificateDer::from(vec![1u8, 2, 3]);
        let now = rustls::pki_types::UnixTime::now();
        assert!(v.verify_client_cert(&garbage, &[], now).is_err());
        let cert = |from: i64, to: i64| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::default();
            let t = time::OffsetDateTime::now_utc();
            params.not_before = t + time::Duration::days(from);
            params.not_after = t + time::Duration::days(to);
            params.self_signed(&key).expect("self-signed").der().clone()
        };
        assert!(v.verify_client_cert(&cert(-1, 730), &[], now).is_ok(), "a current self-signed certificate");
        assert!(v.verify_client_cert(&cert(-10, -1), &[], now).is_err(), "an expired certificate");
        assert!(v.verify_client_cert(&cert(1, 10), &[], now).is_err(), "a certificate not valid yet");
    }
}
