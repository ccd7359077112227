//! Release endpoints: `GET /api/v1/releases` (any role) lists releases by version with the
//! current one marked; `POST /api/v1/releases` (operator or admin) uploads a signed package
//! as the raw request body (`application/octet-stream`), read up to `--max-release-size`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use picket_package::PackageError;
use picket_proto::releases::{ReleaseList, ReleaseView};

use super::error::ApiError;
use crate::app::App;
use crate::app::releases::ReleaseError;
use crate::auth::{Operator, Viewer};

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> ApiError {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        let (status, code) = match &e {
            ReleaseError::App(_) => {
                let ReleaseError::App(inner) = e else { unreachable!() };
                return inner.into();
            }
            ReleaseError::NoKeys => (unprocessable, "unknown_key"),
            ReleaseError::NotNewer(_) => (StatusCode::CONFLICT, "version_not_newer"),
            ReleaseError::TooLarge { .. } | ReleaseError::Package(PackageError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ReleaseError::Package(p) => match p {
                PackageError::UnknownKey { .. } => (unprocessable, "unknown_key"),
                PackageError::BadSignature { .. } => (unprocessable, "bad_signature"),
                PackageError::DigestMismatch(_) => (unprocessable, "digest_mismatch"),
                PackageError::Expired { .. } => (unprocessable, "package_expired"),
                PackageError::Io { .. } => {
                    tracing::error!(error = %p, "verifying an uploaded package failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
                _ => (unprocessable, "invalid_package"),
            },
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// `GET /api/v1/releases`.
pub async fn list(State(app): State<Arc<App>>, who: Viewer) -> Result<Json<ReleaseList>, ApiError> {
    Ok(Json(app.list_releases(&who).await?))
}

/// `POST /api/v1/releases`: the body is the package file.
pub async fn publish(
    State(app): State<Arc<App>>,
    who: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ReleaseView>), ApiError> {
    let limit = app.max_release_bytes();
    let too_large = || ApiError::from(ReleaseError::TooLarge { limit });
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.is_empty() {
        return Err(ApiError::bad_request(
            "send the package file as the request body (Content-Type: application/octet-stream)",
        ));
    }
    let view = app.publish_release(&who, buf.into()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}
