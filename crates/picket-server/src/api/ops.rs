//! Operations endpoints without authentication: liveness, Prometheus metrics, the spec.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::app::App;

/// `GET /healthz`: 200 when the store answers, 503 otherwise.
pub async fn healthz(State(app): State<Arc<App>>) -> Response {
    let backend = app.store().backend();
    match app.ping().await {
        Ok(()) => Json(json!({"status": "ok", "backend": backend})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "backend": backend})))
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(handle): State<PrometheusHandle>) -> Response {
    let mut resp = handle.render().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    let mut resp = super::OPENAPI_JSON.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
