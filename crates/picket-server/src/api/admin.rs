//! Zones, subscriptions, API tokens and the audit log.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use picket_proto::{CreateNamed, CreateTokenRequest, CreatedToken, SubscriptionView, TokenView, ZoneView};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::params::parse_paging;
use crate::app::{App, AuditPage};
use crate::auth::{Admin, Operator, Viewer};

type ApiResult<T> = Result<T, ApiError>;

/// `GET /api/v1/zones`.
pub async fn list_zones(State(app): State<Arc<App>>, who: Viewer) -> ApiResult<Json<Vec<ZoneView>>> {
    Ok(Json(app.list_zones(&who).await?))
}

/// `POST /api/v1/zones`.
pub async fn create_zone(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiJson(req): ApiJson<CreateNamed>,
) -> ApiResult<(StatusCode, Json<ZoneView>)> {
    Ok((StatusCode::CREATED, Json(app.create_zone(&who, req).await?)))
}

/// `GET /api/v1/subscriptions`.
pub async fn list_subscriptions(State(app): State<Arc<App>>, who: Viewer) -> ApiResult<Json<Vec<SubscriptionView>>> {
    Ok(Json(app.list_subscriptions(&who).await?))
}

/// `POST /api/v1/subscriptions`.
pub async fn create_subscription(
    State(app): State<Arc<App>>,
    who: Admin,
    ApiJson(req): ApiJson<CreateNamed>,
) -> ApiResult<(StatusCode, Json<SubscriptionView>)> {
    Ok((StatusCode::CREATED, Json(app.create_subscription(&who, req).await?)))
}

/// `POST /api/v1/tokens`: the secret is in this answer only.
#[tracing::instrument(skip_all)]
pub async fn create_token(
    State(app): State<Arc<App>>,
    who: Admin,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(app.create_token(&who, req).await?)))
}

/// `GET /api/v1/tokens`.
pub async fn list_tokens(State(app): State<Arc<App>>, who: Admin) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(app.list_tokens(&who).await?))
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    who: Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    app.revoke_token(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/audit`.
pub async fn list_audit(State(app): State<Arc<App>>, who: Admin, ApiQuery(q): ApiQuery) -> ApiResult<Json<AuditPage>> {
    let (cursor, limit) = parse_paging(&q)?;
    Ok(Json(app.list_audit(&who, cursor.as_deref(), limit).await?))
}
