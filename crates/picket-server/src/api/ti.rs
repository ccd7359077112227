//! Threat-intelligence package endpoints: `GET /api/v1/ti-packages` (any role) lists them by
//! version with the current one marked; `POST /api/v1/ti-packages` (operator or admin)
//! uploads a signed TI package as the raw request body (`application/octet-stream`): 422 for a
//! bad signature, an unknown key or an invalid package, 409 for a version not above the
//! current one, 413 over the size limit; `GET /api/v1/ti-packages/{version}/download` (any
//! role) streams the package file as `picket-ti-<version>.tipkg`
//! (`picket_proto::ti::ti_package_file_name`).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use picket_package::PackageError;
use picket_proto::ti::{TiPackageList, TiPackageView};

use super::error::ApiError;
use super::extract::ApiPath;
use crate::app::App;
use crate::app::ti::TiError;
use crate::auth::{Operator, Viewer};

/// How many bytes one read from the store returns while streaming a download.
const PIECE: usize = 4 << 20;

impl From<TiError> for ApiError {
    fn from(e: TiError) -> ApiError {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        let (status, code) = match e {
            TiError::App(inner) => return inner.into(),
            TiError::Release(inner) => return inner.into(),
            TiError::NotNewer(_) => (StatusCode::CONFLICT, "version_not_newer"),
            TiError::TooLarge { .. } | TiError::Package(PackageError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            TiError::Indicators(_) => (unprocessable, "invalid_indicators"),
            TiError::Package(ref p) => match p {
                PackageError::UnknownKey { .. } => (unprocessable, "unknown_key"),
                PackageError::BadSignature { .. } => (unprocessable, "bad_signature"),
                PackageError::DigestMismatch(_) => (unprocessable, "digest_mismatch"),
                PackageError::Io { .. } => {
                    tracing::error!(error = %p, "verifying an uploaded TI package failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
                _ => (unprocessable, "invalid_package"),
            },
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// `GET /api/v1/ti-packages`.
pub async fn list(State(app): State<Arc<App>>, who: Viewer) -> Result<Json<TiPackageList>, ApiError> {
    Ok(Json(app.list_ti_packages(&who).await?))
}

/// `POST /api/v1/ti-packages`: the body is the package file.
pub async fn publish(
    State(app): State<Arc<App>>,
    who: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<TiPackageView>), ApiError> {
    let limit = app.max_ti_bytes();
    let too_large = || ApiError::from(TiError::TooLarge { limit });
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
            "send the TI package file as the request body (Content-Type: application/octet-stream)",
        ));
    }
    let view = app.publish_ti(&who, buf.into()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/v1/ti-packages/{version}/download`: the package file, streamed from the store.
pub async fn download(
    State(app): State<Arc<App>>,
    who: Viewer,
    ApiPath(version): ApiPath<String>,
) -> Result<Response, ApiError> {
    let version: i64 =
        version.parse().map_err(|_| ApiError::bad_request(format!("{version:?} is not a TI version (an integer)")))?;
    let p = app.ti_package(&who, version).await?;
    let (size, sha256) = (p.size, p.sha256.clone());
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let app = app.clone();
        let sha256 = sha256.clone();
        async move {
            if offset >= size {
                return None;
            }
            let len = PIECE.min((size - offset) as usize);
            match app.read_ti_package(&sha256, offset, len).await {
                Ok(bytes) if !bytes.is_empty() => {
                    let next = offset + bytes.len() as u64;
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)), next))
                }
                Ok(_) => Some((Err(std::io::Error::other("TI package bytes missing from the store")), size)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), size)),
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&size.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", p.sha256)) {
        h.insert(header::ETAG, v);
    }
    let name = picket_proto::ti::ti_package_file_name(p.version);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
