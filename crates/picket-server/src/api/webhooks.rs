//! Notification target endpoints (admins without a subscription limit): list, create,
//! remove webhooks.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use picket_proto::webhooks::{CreateWebhookRequest, CreatedWebhook, WebhookView};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::App;
use crate::auth::Admin;

type ApiResult<T> = Result<T, ApiError>;

/// `GET /api/v1/webhooks`.
pub async fn list(State(app): State<Arc<App>>, who: Admin) -> ApiResult<Json<Vec<WebhookView>>> {
    Ok(Json(app.list_webhooks(&who).await?))
}

/// `POST /api/v1/webhooks`.
pub async fn create(
    State(app): State<Arc<App>>,
    who: Admin,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    Ok((StatusCode::CREATED, Json(app.create_webhook(&who, req).await?)))
}

/// `DELETE /api/v1/webhooks/{id}`.
pub async fn delete(State(app): State<Arc<App>>, who: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    app.delete_webhook(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
