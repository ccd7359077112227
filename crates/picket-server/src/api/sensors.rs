//! Sensor endpoints: onboard, list, export, get, edit, delete, decommission, activation
//! file, summary.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use picket_proto::{ListPage, OnboardRequest, PatchSensorRequest, SensorView, Summary};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::params::parse_list;
use crate::app::App;
use crate::auth::{Operator, Viewer};

type ApiResult<T> = Result<T, ApiError>;

/// `POST /api/v1/sensors`.
pub async fn onboard(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiJson(req): ApiJson<OnboardRequest>,
) -> ApiResult<(StatusCode, Json<SensorView>)> {
    Ok((StatusCode::CREATED, Json(app.onboard(&who, req).await?)))
}

/// `GET /api/v1/sensors`.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Viewer,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<ListPage<SensorView>>> {
    let req = parse_list(&q, true)?;
    Ok(Json(app.list_sensors(&who, req).await?))
}

/// `GET /api/v1/sensors/export.csv`: streamed, one store page at a time.
pub async fn export_csv(State(app): State<Arc<App>>, who: Viewer, ApiQuery(q): ApiQuery) -> ApiResult<Response> {
    let req = parse_list(&q, false)?;
    let batches = app.export_sensors(&who, req.filter, req.sort).await?;
    Ok(crate::csv::response(batches))
}

/// `GET /api/v1/sensors/{id}`.
pub async fn get_one(
    State(app): State<Arc<App>>,
    who: Viewer,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SensorView>> {
    Ok(Json(app.get_sensor(&who, &id).await?))
}

/// `PATCH /api/v1/sensors/{id}`.
pub async fn patch_one(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PatchSensorRequest>,
) -> ApiResult<Json<SensorView>> {
    Ok(Json(app.patch_sensor(&who, &id, req).await?))
}

/// `DELETE /api/v1/sensors/{id}`.
pub async fn delete_one(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    app.delete_sensor(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/sensors/{id}/decommission`.
pub async fn decommission(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SensorView>> {
    Ok(Json(app.decommission_sensor(&who, &id).await?))
}

/// `GET /api/v1/sensors/{id}/activation-file`: a new one-time token each time.
#[tracing::instrument(skip_all)]
pub async fn activation_file(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let file = app.activation_file(&who, &id).await?;
    let disposition = format!("attachment; filename=\"{}.activation.json\"", file.sensor_name);
    let mut resp = Json(file).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `GET /api/v1/summary`.
pub async fn summary(State(app): State<Arc<App>>, who: Viewer) -> ApiResult<Json<Summary>> {
    Ok(Json(app.summary(&who).await?))
}
