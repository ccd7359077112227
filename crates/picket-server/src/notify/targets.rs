//! Use cases of the webhook targets (admins without a subscription limit, since a webhook
//! receives notifications about every sensor): list, create (the secret is given or
//! generated, and returned only in this answer), remove. Changes are audited without the secret.

use picket_proto::webhooks::{CreateWebhookRequest, CreatedWebhook, WebhookView};
use picket_store::Scope;
use picket_store::notify::{Webhook, WebhookStats};

use super::webhook::{validate_secret, validate_url};
use crate::App;
use crate::app::{AppError, AppResult};
use crate::auth::Admin;
use crate::ids::{new_secret_hex, new_uuid};

/// Prefix of generated secrets, so they are recognisable in a receiver's configuration.
pub const GENERATED_SECRET_PREFIX: &str = "whsec_";

fn view(w: Webhook, stats: Option<&WebhookStats>) -> WebhookView {
    WebhookView {
        id: w.id,
        url: w.url,
        created_at: w.created_at,
        pending: stats.map_or(0, |s| s.pending),
        failed: stats.map_or(0, |s| s.failed),
        last_delivered_at: stats.and_then(|s| s.last_delivered_at),
        last_error: stats.and_then(|s| s.last_error.clone()),
    }
}

fn unscoped(who: &Admin) -> AppResult<()> {
    match who.principal().scope {
        Scope::All => Ok(()),
        Scope::Subscriptions(_) => Err(AppError::Forbidden(
            "webhooks receive notifications about every sensor: only an admin without a subscription limit \
             manages them"
                .to_string(),
        )),
    }
}

impl App {
    /// All webhooks, oldest first, with their delivery state (never with their secrets).
    pub async fn list_webhooks(&self, who: &Admin) -> AppResult<Vec<WebhookView>> {
        unscoped(who)?;
        let stats = self.store().webhook_stats().await?;
        let hooks = self.store().list_webhooks().await?;
        Ok(hooks
            .into_iter()
            .map(|w| {
                let s = stats.iter().find(|s| s.webhook_id == w.id);
                view(w, s)
            })
            .collect())
    }

    /// Adds a webhook; the answer carries its secret, which is never shown again.
    pub async fn create_webhook(&self, who: &Admin, req: CreateWebhookRequest) -> AppResult<CreatedWebhook> {
        unscoped(who)?;
        let url = validate_url(&req.url).map_err(AppError::Validation)?;
        let secret = match req.secret {
            Some(s) => {
                validate_secret(&s).map_err(AppError::Validation)?;
                s
            }
            None => format!("{GENERATED_SECRET_PREFIX}{}", new_secret_hex()),
        };
        let now = self.now();
        let w = Webhook { id: new_uuid(), url, secret, created_at: now };
        self.store().create_webhook(&w, &who.principal().audit("webhook.create", now)).await?;
        Ok(CreatedWebhook { id: w.id, url: w.url, created_at: w.created_at, secret: w.secret })
    }

    /// Removes a webhook; its pending deliveries are dropped.
    pub async fn delete_webhook(&self, who: &Admin, id: &str) -> AppResult<()> {
        unscoped(who)?;
        let audit = who.principal().audit("webhook.delete", self.now());
        self.store().delete_webhook(id, &audit).await.map_err(|e| AppError::from(e).not_found_as("webhook"))
    }
}
