//! Notification webhook calls of the client: list, add, remove (admin without a
//! subscription limit).

use picket_proto::webhooks::{CreateWebhookRequest, CreatedWebhook, WebhookView};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /api/v1/webhooks`.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookView>, ClientError> {
        self.get(&["api", "v1", "webhooks"]).await
    }

    /// `POST /api/v1/webhooks`: adds a webhook; the answer holds its secret, shown this once.
    pub async fn create_webhook(&self, req: &CreateWebhookRequest) -> Result<CreatedWebhook, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "webhooks"], req).await
    }

    /// `DELETE /api/v1/webhooks/{id}`: removes a webhook and its pending deliveries.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ClientError> {
        self.no_content(Method::DELETE, &["api", "v1", "webhooks", id]).await
    }
}
