//! Wrappers of axum's `Json`, `Path` and `Query` extractors whose rejections are our JSON
//! errors: malformed JSON is 400 `invalid_json`, a body of the wrong shape (unknown or
//! missing field, wrong type) is 422 `validation_failed` naming the field, a body over the
//! limit is 413 `payload_too_large`, bad paths and queries are 400 `bad_request`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

/// A JSON body.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// Strips axum's "Failed to deserialize ..." preamble, keeping serde's message.
fn serde_message(text: &str) -> String {
    match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("Failed to") => rest.to_string(),
        _ => text.to_string(),
    }
}

/// Our error for a JSON rejection.
pub fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {}", serde_message(&e.body_text())),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("invalid request body: {}", serde_message(&e.body_text())),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {} bytes", BODY_LIMIT),
        ),
        r => ApiError::bad_request(r.body_text()),
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await.map_err(json_rejection)?;
        Ok(ApiJson(v))
    }
}

/// Path parameters.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|r: PathRejection| ApiError::bad_request(r.body_text()))?;
        Ok(ApiPath(v))
    }
}

/// Query parameters as `(name, value)` pairs in order, repeated names kept.
#[derive(Debug, Clone)]
pub struct ApiQuery(pub Vec<(String, String)>);

impl<S> FromRequestParts<S> for ApiQuery
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|r: QueryRejection| ApiError::bad_request(serde_message(&r.body_text())))?;
        Ok(ApiQuery(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_axum_preamble() {
        assert_eq!(
            serde_message("Failed to deserialize the JSON body into the target type: unknown field `x`"),
            "unknown field `x`"
        );
        assert_eq!(serde_message("plain"), "plain");
    }
}
