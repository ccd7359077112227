//! Rollout endpoints: `GET /api/v1/rollouts/current` (any role) shows the rollout of the
//! current release per sensor; `POST /api/v1/rollouts/current/pause`, `.../resume` and
//! `.../rollback` (operator or admin) change it. 404 `no_rollout` before the first release.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use picket_proto::rollouts::{RollbackRequest, RollbackResponse, RolloutView};

use super::error::ApiError;
use crate::app::rollouts::NO_ROLLOUT;
use crate::app::{App, AppError};
use crate::auth::{Operator, Viewer};

/// The 404 of every rollout endpoint when there is no rollout.
fn no_rollout() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_rollout", NO_ROLLOUT)
}

/// An app error, with "no rollout" as its own code.
fn map(e: AppError) -> ApiError {
    match e {
        AppError::NotFound("rollout") => no_rollout(),
        e => e.into(),
    }
}

/// `GET /api/v1/rollouts/current`.
pub async fn current(State(app): State<Arc<App>>, who: Viewer) -> Result<Json<RolloutView>, ApiError> {
    app.current_rollout(&who).await.map_err(map)?.map(Json).ok_or_else(no_rollout)
}

/// `POST /api/v1/rollouts/current/pause`.
pub async fn pause(State(app): State<Arc<App>>, who: Operator) -> Result<Json<RolloutView>, ApiError> {
    Ok(Json(app.pause_rollout(&who).await.map_err(map)?))
}

/// `POST /api/v1/rollouts/current/resume`.
pub async fn resume(State(app): State<Arc<App>>, who: Operator) -> Result<Json<RolloutView>, ApiError> {
    Ok(Json(app.resume_rollout(&who).await.map_err(map)?))
}

/// `POST /api/v1/rollouts/current/rollback`: the JSON body is optional (`{}` or none: every
/// sensor on the current release).
pub async fn rollback(
    State(app): State<Arc<App>>,
    who: Operator,
    body: Bytes,
) -> Result<Json<RollbackResponse>, ApiError> {
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid rollback body: {e}; expected {{}}, {{\"sensor_id\": \"...\"}} or {{\"version\": \"x.y.z\"}}"
            ))
        })?
    };
    Ok(Json(app.rollback_rollout(&who, &req).await.map_err(map)?))
}
