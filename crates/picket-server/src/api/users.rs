//! Portal user endpoints (admins): list, create, change password, remove.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use picket_proto::users::{CreateUserRequest, SetPasswordRequest, UserView};

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::App;
use crate::auth::Admin;

type ApiResult<T> = Result<T, ApiError>;

/// `GET /api/v1/users`.
pub async fn list(State(app): State<Arc<App>>, who: Admin) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(app.list_users(&who).await?))
}

/// `POST /api/v1/users`.
pub async fn create(
    State(app): State<Arc<App>>,
    who: Admin,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    Ok((StatusCode::CREATED, Json(app.create_user(&who, req).await?)))
}

/// `PUT /api/v1/users/{name}/password`.
pub async fn set_password(
    State(app): State<Arc<App>>,
    who: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SetPasswordRequest>,
) -> ApiResult<StatusCode> {
    app.set_user_password(&who, &name, req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/users/{name}`.
pub async fn delete(State(app): State<Arc<App>>, who: Admin, ApiPath(name): ApiPath<String>) -> ApiResult<StatusCode> {
    app.delete_user(&who, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
