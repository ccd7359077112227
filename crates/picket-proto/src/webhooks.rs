//! Wire types of the notification targets endpoints (`/api/v1/webhooks`).

use picket_domain::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/webhooks`: a new webhook.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `http://` or `https://` URL that notifications are POSTed to.
    pub url: String,
    /// Key of the HMAC-SHA256 signature (16 to 256 characters); absent or null = generated
    /// and returned once in the answer.
    #[serde(default)]
    pub secret: Option<String>,
}

impl std::fmt::Debug for CreateWebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateWebhookRequest")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A webhook as listed (never with its secret), with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookView {
    /// Id.
    pub id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// When created.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// Deliveries waiting for their first or next attempt.
    #[serde(default)]
    pub pending: u64,
    /// Deliveries given up after retrying for days.
    #[serde(default)]
    pub failed: u64,
    /// When it last accepted a delivery.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub last_delivered_at: Option<Timestamp>,
    /// The latest error of a delivery not delivered (yet).
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The answer to `POST /api/v1/webhooks`: the webhook and its secret, shown this once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedWebhook {
    /// Id.
    pub id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// When created.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
    /// The signing secret (the one given, or the generated one); never returned again.
    pub secret: String,
}

impl std::fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}
