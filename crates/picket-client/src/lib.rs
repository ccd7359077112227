//! Typed async client of the Picket REST API (`/api/v1`), used by the `picket` CLI, sensors'
//! tooling and tests: one method per endpoint, answers as `picket_proto` types, errors as
//! `ClientError` keeping the server's code, message and HTTP status.
//!
//! This crate must not hold business rules or depend on the server: it only speaks the wire
//! contract of `picket-proto`. The CSV export is streamed chunk by chunk, never buffered whole.

mod alerts;
mod error;
mod health;
mod params;
mod releases;
mod rollouts;
mod ti;
mod users;
mod webhooks;

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use picket_proto::{
    ActivationFile, AuditView, CreateNamed, CreateTokenRequest, CreatedToken, ErrorBody, ListPage, OnboardRequest,
    PatchSensorRequest, SensorView, SubscriptionView, Summary, TokenView, ZoneView,
};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use alerts::AlertListParams;
pub use error::ClientError;
pub use health::IssueListParams;
pub use params::SensorListParams;
pub use releases::Progress;

/// How long a JSON call may take before it is abandoned (exports have no such limit).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A list answer that is either a bare array or a page (`{"items": [...]}`), so listing
/// zones, subscriptions and tokens works whichever shape the server uses.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ListOrPage<T> {
    List(Vec<T>),
    Page { items: Vec<T> },
}

impl<T> ListOrPage<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            ListOrPage::List(v) | ListOrPage::Page { items: v } => v,
        }
    }
}

/// A client of one Picket server, authenticated with one API token; cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base.as_str()).field("token", &"<redacted>").finish()
    }
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`) using `token`.
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Client, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl { url: base_url.to_string(), reason: reason.to_string() };
        let base = Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("use an http:// or https:// URL, e.g. http://127.0.0.1:8080"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it has no host"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("picket-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Client { base, token: token.into(), http })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The URL of `segments` under the base URL, each segment escaped.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// Sends a request and turns an error answer into `ClientError::Api`.
    async fn send(&self, req: RequestBuilder, url: &Url) -> Result<Response, ClientError> {
        let resp = req.send().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(error_from(resp, url).await)
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder, url: Url) -> Result<T, ClientError> {
        let resp = self.send(req.timeout(CALL_TIMEOUT), &url).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            status,
            detail: format!("{e}; body starts with {:?}", String::from_utf8_lossy(&body[..body.len().min(200)])),
        })
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        let url = self.url(segments);
        self.json(self.request(Method::GET, url.clone()), url).await
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(segments);
        self.json(self.request(method, url.clone()).json(body), url).await
    }

    async fn no_content(&self, method: Method, segments: &[&str]) -> Result<(), ClientError> {
        let url = self.url(segments);
        self.send(self.request(method, url.clone()).timeout(CALL_TIMEOUT), &url).await.map(drop)
    }

    /// `GET /healthz`: whether the server is up (no token needed).
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let url = self.url(&["healthz"]);
        self.send(self.http.get(url.clone()).timeout(CALL_TIMEOUT), &url).await.map(drop)
    }

    /// `POST /api/v1/sensors`: onboards a sensor.
    pub async fn onboard_sensor(&self, req: &OnboardRequest) -> Result<SensorView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "sensors"], req).await
    }

    /// `GET /api/v1/sensors`: one page of sensors.
    pub async fn list_sensors(&self, params: &SensorListParams) -> Result<ListPage<SensorView>, ClientError> {
        let url = self.url(&["api", "v1", "sensors"]);
        self.json(self.request(Method::GET, url.clone()).query(&params.to_query()), url).await
    }

    /// `GET /api/v1/sensors/{id}`.
    pub async fn get_sensor(&self, id: &str) -> Result<SensorView, ClientError> {
        self.get(&["api", "v1", "sensors", id]).await
    }

    /// `PATCH /api/v1/sensors/{id}`: changes the fields set in `patch`.
    pub async fn patch_sensor(&self, id: &str, patch: &PatchSensorRequest) -> Result<SensorView, ClientError> {
        self.send_json(Method::PATCH, &["api", "v1", "sensors", id], patch).await
    }

    /// `DELETE /api/v1/sensors/{id}` (revokes its certificate).
    pub async fn delete_sensor(&self, id: &str) -> Result<(), ClientError> {
        self.no_content(Method::DELETE, &["api", "v1", "sensors", id]).await
    }

    /// `POST /api/v1/sensors/{id}/decommission`: its host left the directory.
    pub async fn decommission_sensor(&self, id: &str) -> Result<SensorView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "sensors", id, "decommission"], &serde_json::json!({})).await
    }

    /// `GET /api/v1/sensors/{id}/activation-file`.
    pub async fn activation_file(&self, id: &str) -> Result<ActivationFile, ClientError> {
        self.get(&["api", "v1", "sensors", id, "activation-file"]).await
    }

    /// `GET /api/v1/sensors/export.csv` as a stream of chunks, for callers that forward it.
    pub async fn export_csv_stream(
        &self,
        params: &SensorListParams,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        let url = self.url(&["api", "v1", "sensors", "export.csv"]);
        let resp = self.send(self.request(Method::GET, url.clone()).query(&export_query(params)), &url).await?;
        let url = url.to_string();
        Ok(futures_util::stream::unfold(Some(resp), move |resp| {
            let url = url.clone();
            async move {
                let mut resp = resp?;
                match resp.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(resp))),
                    Ok(None) => None,
                    Err(source) => Some((Err(ClientError::Transport { url, source }), None)),
                }
            }
        }))
    }

    /// `GET /api/v1/sensors/export.csv` written chunk by chunk to `out`; returns the bytes
    /// written. Memory stays flat whatever the fleet size.
    pub async fn export_csv(
        &self,
        params: &SensorListParams,
        out: &mut impl std::io::Write,
    ) -> Result<u64, ClientError> {
        let url = self.url(&["api", "v1", "sensors", "export.csv"]);
        let mut resp = self.send(self.request(Method::GET, url.clone()).query(&export_query(params)), &url).await?;
        let mut written = 0u64;
        while let Some(chunk) =
            resp.chunk().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?
        {
            out.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        out.flush()?;
        Ok(written)
    }

    /// `GET /api/v1/zones`.
    pub async fn list_zones(&self) -> Result<Vec<ZoneView>, ClientError> {
        self.get::<ListOrPage<ZoneView>>(&["api", "v1", "zones"]).await.map(ListOrPage::into_vec)
    }

    /// `POST /api/v1/zones`: creates a zone.
    pub async fn create_zone(&self, req: &CreateNamed) -> Result<ZoneView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "zones"], req).await
    }

    /// `GET /api/v1/subscriptions`.
    pub async fn list_subscriptions(&self) -> Result<Vec<SubscriptionView>, ClientError> {
        self.get::<ListOrPage<SubscriptionView>>(&["api", "v1", "subscriptions"]).await.map(ListOrPage::into_vec)
    }

    /// `POST /api/v1/subscriptions`: creates a subscription.
    pub async fn create_subscription(&self, req: &CreateNamed) -> Result<SubscriptionView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "subscriptions"], req).await
    }

    /// `GET /api/v1/summary`: fleet counts.
    pub async fn summary(&self) -> Result<Summary, ClientError> {
        self.get(&["api", "v1", "summary"]).await
    }

    /// `POST /api/v1/tokens`: creates a token; the answer carries its secret, shown only once.
    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<CreatedToken, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "tokens"], req).await
    }

    /// `GET /api/v1/tokens` (never with secrets).
    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.get::<ListOrPage<TokenView>>(&["api", "v1", "tokens"]).await.map(ListOrPage::into_vec)
    }

    /// `DELETE /api/v1/tokens/{id}`: revokes a token.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.no_content(Method::DELETE, &["api", "v1", "tokens", id]).await
    }

    /// `GET /api/v1/audit`: audit entries, newest first.
    pub async fn list_audit(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ListPage<AuditView>, ClientError> {
        let url = self.url(&["api", "v1", "audit"]);
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        self.json(self.request(Method::GET, url.clone()).query(&query), url).await
    }
}

/// The export takes the list's filters and sort, but no paging.
fn export_query(params: &SensorListParams) -> Vec<(&'static str, String)> {
    SensorListParams { limit: None, cursor: None, ..params.clone() }.to_query()
}

/// Reads an error answer: the contract's `{"error": {"code", "message"}}` if it is one,
/// otherwise the status and the start of the body.
async fn error_from(resp: Response, url: &Url) -> ClientError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(&body) {
        return ClientError::Api { status: status.as_u16(), code: e.error.code, message: e.error.message };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() {
        format!("HTTP {} {reason} from {url}", status.as_u16())
    } else {
        format!("HTTP {} {reason} from {url}: {text}", status.as_u16())
    };
    let code = match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "payload_too_large",
        422 => "validation_failed",
        _ => "http_error",
    };
    ClientError::Api { status: status.as_u16(), code: code.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_base_path_and_escape_segments() {
        let c = Client::new("http://127.0.0.1:8080/picket/", "t").unwrap();
        assert_eq!(
            c.url(&["api", "v1", "sensors", "a/b c"]).as_str(),
            "http://127.0.0.1:8080/picket/api/v1/sensors/a%2Fb%20c"
        );
        let c = Client::new("http://127.0.0.1:8080", "t").unwrap();
        assert_eq!(c.url(&["healthz"]).as_str(), "http://127.0.0.1:8080/healthz");
    }

    #[test]
    fn refuses_unusable_base_urls() {
        for bad in ["127.0.0.1:8080", "ftp://x", "not a url", "mailto:a@b"] {
            assert!(matches!(Client::new(bad, "t"), Err(ClientError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Client::new("http://localhost:1", "secret-token").unwrap();
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
