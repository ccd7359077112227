//! `POST /sensor/v1/alerts`: a cloud-connected sensor uploads a batch of queued alerts
//! (`picket_proto::ti::AlertUpload`), authenticated by its pinned certificate (the sensor id
//! comes from the certificate; an id in the body is ignored). The body may be up to
//! `ALERT_BODY_LIMIT` (a full batch of long, escaped excerpts); more than
//! `MAX_ALERTS_PER_UPLOAD` alerts is 413, malformed JSON 400, a bad field 422 naming the
//! alert and field, a locally managed sensor 403 `locally_managed`, and in every refusal
//! nothing is stored. Thin: the checks and the idempotent store are `App::upload_alerts`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use picket_proto::ti::{AlertUpload, AlertUploadResponse};

use super::AuthedSensor;
use crate::api::error::ApiError;
use crate::app::App;
use crate::app::alerts::AlertRefusal;

/// Largest body of an alert upload: 500 alerts with 2 KiB excerpts, JSON-escaped, fit.
pub const ALERT_BODY_LIMIT: usize = 8 << 20;

impl From<AlertRefusal> for ApiError {
    fn from(e: AlertRefusal) -> ApiError {
        match e {
            AlertRefusal::TooMany { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
            }
            AlertRefusal::LocallyManaged(_) => ApiError::new(StatusCode::FORBIDDEN, "locally_managed", e.to_string()),
            AlertRefusal::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m),
            AlertRefusal::App(a) => a.into(),
        }
    }
}

/// Reads the body as an upload: 413 over the limit, 400 for malformed JSON, 422 for JSON of
/// the wrong shape (serde's message names the field).
fn parse(body: Result<Bytes, BytesRejection>) -> Result<AlertUpload, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("an alert upload is at most {ALERT_BODY_LIMIT} bytes; send smaller batches"),
            )
        } else {
            ApiError::bad_request(r.body_text())
        }
    })?;
    serde_json::from_slice::<AlertUpload>(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", format!("invalid alert upload: {e}"))
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {e}")),
    })
}

/// `POST /sensor/v1/alerts`.
pub async fn upload(
    State(app): State<Arc<App>>,
    AuthedSensor(sensor): AuthedSensor,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertUploadResponse>, ApiError> {
    let upload = parse(body)?;
    Ok(Json(app.upload_alerts(&sensor, &upload).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_refused_with_their_status() {
        let status = |b: &str| parse(Ok(Bytes::from(b.to_string()))).map(|_| ()).map_err(|e| (e.status, e.code));
        assert_eq!(status(r#"{"alerts": []}"#), Ok(()));
        assert_eq!(status("{not json"), Err((StatusCode::BAD_REQUEST, "invalid_json")));
        assert_eq!(status(r#"{"alerts": 3}"#), Err((StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")));
        assert_eq!(
            status(r#"{"alerts": [{"id": "a"}]}"#),
            Err((StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"))
        );
        let too_many = ApiError::from(AlertRefusal::TooMany { got: 501 });
        assert_eq!((too_many.status, too_many.code), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
        let local = ApiError::from(AlertRefusal::LocallyManaged("OT01".into()));
        assert_eq!((local.status, local.code), (StatusCode::FORBIDDEN, "locally_managed"));
        assert!(local.message.contains("OT01") && local.message.contains("picket-sensor alerts list"));
    }
}
