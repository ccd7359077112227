//! Release calls of the client: list releases, and publish a package (streamed up in pieces
//! so a caller can show progress; a large upload may take minutes, so it has its own
//! timeout).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picket_proto::releases::{ReleaseList, ReleaseView};
use reqwest::Method;

use crate::{Client, ClientError};

/// How long an upload (and the server's verification of it) may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Size of the pieces an upload is sent in (each one reported to the progress callback).
const PIECE: usize = 256 << 10;

/// Called with the number of bytes sent so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

impl Client {
    /// `GET /api/v1/releases`: releases by version, the current one marked.
    pub async fn list_releases(&self) -> Result<ReleaseList, ClientError> {
        self.get(&["api", "v1", "releases"]).await
    }

    /// `POST /api/v1/releases`: uploads a signed package; the server verifies it and answers
    /// with the new current release. `progress` hears the bytes sent so far.
    pub async fn publish_release(
        &self,
        package: Bytes,
        progress: Option<Progress>,
    ) -> Result<ReleaseView, ClientError> {
        let url = self.url(&["api", "v1", "releases"]);
        let total = package.len();
        let pieces = (0..total.div_ceil(PIECE)).map(move |i| {
            let end = ((i + 1) * PIECE).min(total);
            if let Some(p) = &progress {
                p(end as u64);
            }
            Ok::<_, std::io::Error>(package.slice(i * PIECE..end))
        });
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
        let req = self
            .request(Method::POST, url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, total.to_string())
            .body(body)
            .timeout(UPLOAD_TIMEOUT);
        let resp = self.send(req, &url).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            status,
            detail: format!("{e}; body starts with {:?}", String::from_utf8_lossy(&body[..body.len().min(200)])),
        })
    }
}
