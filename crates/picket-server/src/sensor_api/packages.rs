//! `GET /sensor/v1/packages/{sha256}`: any authenticated sensor downloads a published
//! package (a release or a TI package) by its digest, whole or by one byte range (`Range: bytes=A-B`, `A-`, or `-N`), so
//! an interrupted download resumes where it stopped. The bytes stream from the store a few
//! MiB at a time; `ETag` is the digest, so a resumed download knows it is the same file.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AuthedSensor;
use crate::api::error::ApiError;
use crate::api::extract::ApiPath;
use crate::app::App;

/// How many bytes one read from the store returns.
const PIECE: usize = 4 << 20;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file (no header, or one this server does not honour, as RFC 9110 allows).
    All,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range past the end (416).
    Unsatisfiable,
}

/// Parses a single `bytes=` range against `size`.
pub fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else { return Wanted::All };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Wanted::All };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) if size > 0 => Wanted::Part(size.saturating_sub(n), size - 1),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::All,
        },
        (false, _) => {
            let Some(start) = parse(a) else { return Wanted::All };
            let end = if b.is_empty() { Some(u64::MAX) } else { parse(b) };
            match end {
                None => Wanted::All,
                Some(end) if end < start => Wanted::All,
                Some(_) if start >= size => Wanted::Unsatisfiable,
                Some(end) => Wanted::Part(start, end.min(size - 1)),
            }
        }
        (true, true) => Wanted::All,
    }
}

/// `GET /sensor/v1/packages/{sha256}`.
pub async fn download(
    State(app): State<Arc<App>>,
    AuthedSensor(_sensor): AuthedSensor,
    ApiPath(sha256): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let release = app.sensor_package(&sha256).await?;
    let size = release.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match wanted(range, size) {
        Wanted::All => (StatusCode::OK, 0, size),
        Wanted::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Wanted::Unsatisfiable => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the package has {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let shared = release.clone();
    let stream = futures_util::stream::unfold(start, move |offset| {
        let app = app.clone();
        let package = shared.clone();
        async move {
            if offset >= end {
                return None;
            }
            let len = PIECE.min((end - offset) as usize);
            match app.read_sensor_package(&package, offset, len).await {
                Ok(bytes) if !bytes.is_empty() => {
                    let next = offset + bytes.len() as u64;
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)), next))
                }
                Ok(_) => Some((Err(std::io::Error::other("package bytes missing from the store")), end)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), end)),
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", release.sha256)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let w = |r: &str| wanted(Some(r), 100);
        assert_eq!(wanted(None, 100), Wanted::All);
        assert_eq!(w("bytes=0-9"), Wanted::Part(0, 9));
        assert_eq!(w("bytes=90-"), Wanted::Part(90, 99));
        assert_eq!(w("bytes=90-500"), Wanted::Part(90, 99));
        assert_eq!(w("bytes=-10"), Wanted::Part(90, 99));
        assert_eq!(w("bytes=-500"), Wanted::Part(0, 99));
        assert_eq!(w("bytes=100-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        for ignored in ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-", "bytes=-"] {
            assert_eq!(w(ignored), Wanted::All, "{ignored}");
        }
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }
}
