//! Threat-intelligence package calls of the client: list TI packages, publish one (the file
//! as the request body), and download one by version (for `picket-sensor ti import` on hosts
//! without auto TI updates).

use std::time::Duration;

use bytes::Bytes;
use picket_proto::ti::{TiPackageList, TiPackageView};
use reqwest::Method;

use crate::{Client, ClientError};

/// How long an upload or download (and the server's verification) may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl Client {
    /// `GET /api/v1/ti-packages`: TI packages by version, the current one marked.
    pub async fn list_ti_packages(&self) -> Result<TiPackageList, ClientError> {
        self.get(&["api", "v1", "ti-packages"]).await
    }

    /// `POST /api/v1/ti-packages`: uploads a signed TI package; the server verifies it and
    /// answers with the new current TI package.
    pub async fn publish_ti_package(&self, package: Bytes) -> Result<TiPackageView, ClientError> {
        let url = self.url(&["api", "v1", "ti-packages"]);
        let req = self
            .request(Method::POST, url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(package)
            .timeout(TRANSFER_TIMEOUT);
        let resp = self.send(req, &url).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            status,
            detail: format!("{e}; body starts with {:?}", String::from_utf8_lossy(&body[..body.len().min(200)])),
        })
    }

    /// `GET /api/v1/ti-packages/{version}/download`: the package file's bytes.
    pub async fn download_ti_package(&self, version: i64) -> Result<Bytes, ClientError> {
        let v = version.to_string();
        let url = self.url(&["api", "v1", "ti-packages", &v, "download"]);
        let resp = self.send(self.request(Method::GET, url.clone()).timeout(TRANSFER_TIMEOUT), &url).await?;
        resp.bytes().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })
    }
}
