//! The sensor API client: mutual TLS with reqwest and rustls, trusting only the CA from the
//! activation file (no built-in roots) and presenting the sensor's own certificate. URLs are
//! tried in order; the first that answers is used until it stops answering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use picket_proto::sensor::{
    ActivateRequest, ActivateResponse, CertConfirmResponse, CertProposeRequest, CertProposeResponse, HeartbeatRequest,
    HeartbeatResponse, SensorConfigResponse,
};
use picket_proto::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;

/// How long a call may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a package download may take in all.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA, certificate or key could not be loaded.
    #[error("TLS setup: {0}")]
    Setup(String),
    /// No URL answered (connection refused, TLS handshake failed, timeout).
    #[error("cannot reach the control plane at {url}: {message}")]
    Unreachable {
        /// The last URL tried.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The control plane refused (`{"error": {"code", "message"}}`).
    #[error("the control plane refused ({status} {}): {}", .error.code, .error.message)]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its error body.
        error: ErrorDetail,
    },
    /// The answer was not what the protocol says.
    #[error("unexpected answer from {url}: {message}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// Whether the control plane does not know this certificate (deleted or revoked sensor).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Refused { status: 401, .. })
    }
}

/// A client of the sensor API for one identity.
#[derive(Debug)]
pub struct SensorClient {
    http: reqwest::Client,
    urls: Vec<String>,
    current: AtomicUsize,
}

/// The full error chain of `e`, for messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

impl SensorClient {
    /// A client for `urls` trusting only `ca_pem` and presenting `cert_pem` with `key_pem`.
    pub fn new(urls: &[String], ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<SensorClient, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::Setup("no control-plane URL".to_string()));
        }
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| ClientError::Setup(format!("the CA certificate: {}", chain(&e))))?;
        let mut pem = cert_pem.as_bytes().to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(key_pem.as_bytes());
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|e| ClientError::Setup(format!("the client certificate: {}", chain(&e))))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(identity)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("picket-sensor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup(chain(&e)))?;
        let urls = urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        Ok(SensorClient { http, urls, current: AtomicUsize::new(0) })
    }

    /// `POST /sensor/v1/activate`.
    pub async fn activate(&self, req: &ActivateRequest) -> Result<ActivateResponse, ClientError> {
        self.call(reqwest::Method::POST, "/sensor/v1/activate", Some(req)).await
    }

    /// `POST /sensor/v1/heartbeat`.
    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        self.call(reqwest::Method::POST, "/sensor/v1/heartbeat", Some(req)).await
    }

    /// `GET /sensor/v1/config`.
    pub async fn config(&self) -> Result<SensorConfigResponse, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/sensor/v1/config", None).await
    }

    /// `POST /sensor/v1/cert/propose` (with the pinned certificate).
    pub async fn propose_cert(&self, req: &CertProposeRequest) -> Result<CertProposeResponse, ClientError> {
        self.call(reqwest::Method::POST, "/sensor/v1/cert/propose", Some(req)).await
    }

    /// `POST /sensor/v1/cert/confirm` (with the proposed certificate).
    pub async fn confirm_cert(&self) -> Result<CertConfirmResponse, ClientError> {
        self.call::<(), _>(reqwest::Method::POST, "/sensor/v1/cert/confirm", None).await
    }

    /// `POST /sensor/v1/alerts`: a batch of queued alerts.
    pub async fn upload_alerts(
        &self,
        req: &picket_proto::ti::AlertUpload,
    ) -> Result<picket_proto::ti::AlertUploadResponse, ClientError> {
        self.call(reqwest::Method::POST, "/sensor/v1/alerts", Some(req)).await
    }

    /// `GET /sensor/v1/packages/{sha256}`: the package's bytes, refused past `max_bytes`
    /// (`Protocol`) without reading further.
    pub async fn download_package(&self, sha256: &str, max_bytes: u64) -> Result<Vec<u8>, ClientError> {
        let n = self.urls.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}/sensor/v1/packages/{sha256}", self.urls[idx]);
            // Downloads may take longer than a call; the size cap bounds them.
            let sent = self.http.get(&url).timeout(DOWNLOAD_TIMEOUT).send().await;
            let mut resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = Some(ClientError::Unreachable { url, message: chain(&e) });
                    continue;
                }
            };
            self.current.store(idx, Ordering::Relaxed);
            if !resp.status().is_success() {
                return decode::<serde_json::Value>(&url, resp).await.map(|_| Vec::new());
            }
            let too_big = || ClientError::Protocol {
                url: url.clone(),
                message: format!("the package is over {max_bytes} bytes"),
            };
            if resp.content_length().is_some_and(|l| l > max_bytes) {
                return Err(too_big());
            }
            let mut body = Vec::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        if body.len() as u64 + c.len() as u64 > max_bytes {
                            return Err(too_big());
                        }
                        body.extend_from_slice(&c);
                    }
                    Ok(None) => return Ok(body),
                    Err(e) => return Err(ClientError::Unreachable { url: url.clone(), message: chain(&e) }),
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Setup("no control-plane URL".to_string())))
    }

    /// One call: the current URL first, then the others in order, moving on only when a URL
    /// cannot be reached (an answer, even a refusal, ends the call).
    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let n = self.urls.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}{path}", self.urls[idx]);
            let mut rb = self.http.request(method.clone(), &url);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            match rb.send().await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return decode(&url, resp).await;
                }
                Err(e) => last = Some(ClientError::Unreachable { url, message: chain(&e) }),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Setup("no control-plane URL".to_string())))
    }
}

async fn decode<T: DeserializeOwned>(url: &str, resp: reqwest::Response) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes =
        resp.bytes().await.map_err(|e| ClientError::Unreachable { url: url.to_string(), message: chain(&e) })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol { url: url.to_string(), message: e.to_string() });
    }
    let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => b.error,
        Err(_) => ErrorDetail {
            code: "http_error".to_string(),
            message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        },
    };
    Err(ClientError::Refused { status: status.as_u16(), error })
}
