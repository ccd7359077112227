//! Notification delivery: the worker that `serve` runs beside the API. It reads the outbox
//! (`notification_outbox`, filled in the same transaction as whatever raised the
//! notification), fans each row out into one delivery per webhook (and one for syslog when
//! this replica has `--syslog`), claims due deliveries through the database with a lease,
//! sends them, and records the outcome: delivered, retry later (capped exponential backoff
//! with jitter), or given up after `Backoff::give_up_after`.
//!
//! At-least-once: a delivery is marked delivered only after the target accepted it, and a
//! replica that dies mid-send leaves a lease that runs out; the delivery id is stable across
//! retries so receivers can deduplicate. Several replicas on one PostgreSQL claim disjoint
//! sets (`FOR UPDATE SKIP LOCKED` plus a conditional update), so none is sent twice on purpose.
//!
//! Events are not interpreted here beyond rendering (`cef`): whatever event a future feature
//! puts in the outbox is delivered the same way.

pub mod backoff;
pub mod cef;
pub mod syslog;
mod targets;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use picket_domain::Timestamp;
use picket_store::StoreError;
use picket_store::notify::{Claim, ClaimedDelivery, DeliveryOutcome, NewDelivery, TargetKind};
use serde_json::Value;
use tokio::sync::watch;

pub use backoff::Backoff;
pub use syslog::{SyslogSender, SyslogTarget};
pub use targets::GENERATED_SECRET_PREFIX;
pub use webhook::WebhookSender;

use crate::App;
use crate::ids::{new_uuid, random_bytes};

/// Counter of delivery attempts (`target` = webhook|syslog, `outcome` = delivered|retry|gave_up).
pub const DELIVERIES: &str = "picket_notification_deliveries_total";
/// Gauge of deliveries waiting (neither delivered nor given up), cluster-wide.
pub const PENDING: &str = "picket_notification_deliveries_pending";
/// Gauge of deliveries given up, cluster-wide.
pub const FAILED: &str = "picket_notification_deliveries_failed";
/// Gauge of outbox rows not fanned out yet.
pub const UNFANNED: &str = "picket_notification_outbox_unfanned";

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pause between rounds when there is nothing due.
    pub poll_every: Duration,
    /// Deliveries claimed per round (sent concurrently).
    pub batch: u32,
    /// How long a claim holds its deliveries: longer than a round can take (a batch of
    /// syslog messages over a hanging TCP collector: 32 × 5 s), or a delivery may be sent twice.
    pub lease: Duration,
    /// Timeout of one webhook request.
    pub webhook_timeout: Duration,
    /// Retry schedule.
    pub backoff: Backoff,
    /// Finished deliveries older than this are purged.
    pub retention: Duration,
    /// Version in CEF headers and the webhook User-Agent.
    pub version: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            poll_every: Duration::from_millis(500),
            batch: 32,
            lease: Duration::from_secs(300),
            webhook_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            retention: Duration::from_secs(30 * 86_400),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The delivery worker.
pub struct Notifier {
    app: Arc<App>,
    settings: Settings,
    webhooks: WebhookSender,
    syslog: Option<SyslogSender>,
    hostname: String,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

impl Notifier {
    /// A worker over `app`'s store, sending syslog to `syslog` if given.
    pub fn new(app: Arc<App>, settings: Settings, syslog: Option<SyslogTarget>) -> Result<Notifier, String> {
        let webhooks = WebhookSender::new(settings.webhook_timeout, &settings.version)?;
        Ok(Notifier {
            app,
            settings,
            webhooks,
            syslog: syslog.map(SyslogSender::new),
            hostname: syslog::local_hostname(),
        })
    }

    /// Runs rounds until `stop` turns true (finishing the round in progress).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if let Some(s) = &self.syslog {
            tracing::info!(target = %s.target(), "notifications go to syslog");
        }
        let mut counted_at: Option<Instant> = None;
        let mut purged_at: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let busy = match self.round().await {
                Ok(n) => n >= self.settings.batch as usize,
                Err(e) => {
                    tracing::warn!("notification delivery: {e}");
                    false
                }
            };
            if counted_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                counted_at = Some(Instant::now());
                self.export_counts().await;
            }
            if purged_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                purged_at = Some(Instant::now());
                let before = Timestamp(self.app.now().0 - ms(self.settings.retention));
                match self.app.store().purge_notifications(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "purged finished notification deliveries"),
                    Err(e) => tracing::warn!("purging notification deliveries: {e}"),
                }
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_every) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn export_counts(&self) {
        match self.app.store().delivery_counts().await {
            Ok(c) => {
                metrics::gauge!(PENDING).set(c.pending as f64);
                metrics::gauge!(FAILED).set(c.failed as f64);
                metrics::gauge!(UNFANNED).set(c.unfanned as f64);
            }
            Err(e) => tracing::warn!("counting notification deliveries: {e}"),
        }
    }

    /// One round: fan out new outbox rows, then claim and send what is due. Returns how many
    /// deliveries were attempted.
    pub async fn round(&self) -> Result<usize, StoreError> {
        self.fan_out().await?;
        let now = self.app.now();
        let claim = Claim {
            now,
            lease_until: Timestamp(now.0 + ms(self.settings.lease)),
            lease: new_uuid(),
            limit: self.settings.batch,
            syslog: self.syslog.is_some(),
        };
        let claimed = self.app.store().claim_deliveries(&claim).await?;
        let results = futures_util::future::join_all(claimed.iter().map(|d| self.attempt(d, &claim.lease))).await;
        for r in results {
            r?;
        }
        Ok(claimed.len())
    }

    async fn fan_out(&self) -> Result<(), StoreError> {
        let store = self.app.store();
        let pending = store.unfanned_notifications(100).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let webhooks = store.list_webhooks().await?;
        let mut deliveries = Vec::new();
        for n in &pending {
            for w in &webhooks {
                deliveries.push(NewDelivery {
                    id: new_uuid(),
                    notification_id: n.id,
                    target: TargetKind::Webhook,
                    webhook_id: Some(w.id.clone()),
                });
            }
            if self.syslog.is_some() {
                deliveries.push(NewDelivery {
                    id: new_uuid(),
                    notification_id: n.id,
                    target: TargetKind::Syslog,
                    webhook_id: None,
                });
            }
        }
        let ids: Vec<i64> = pending.iter().map(|n| n.id).collect();
        store.fan_out(&ids, &deliveries, self.app.now()).await
    }

    /// Sends one claimed delivery and records the outcome.
    async fn attempt(&self, d: &ClaimedDelivery, lease: &str) -> Result<(), StoreError> {
        let n = &d.notification;
        let result = match (d.target, &d.webhook, &self.syslog) {
            (TargetKind::Webhook, Some(w), _) => {
                let req = webhook::WebhookRequest {
                    url: &w.url,
                    secret: &w.secret,
                    event: &n.event,
                    delivery_id: &d.id,
                    timestamp: self.app.now().0.div_euclid(1000),
                    body: &n.payload,
                };
                self.webhooks.send(req).await
            }
            (TargetKind::Webhook, None, _) => Err("the webhook was removed".to_string()),
            (TargetKind::Syslog, _, Some(sender)) => {
                let doc: Value = serde_json::from_str(&n.payload).unwrap_or(Value::Null);
                let severity = doc
                    .pointer("/issue/severity")
                    .or_else(|| doc.pointer("/alert/severity"))
                    .or_else(|| doc.get("severity"))
                    .and_then(Value::as_str);
                let cef = cef::render_notification(&self.settings.version, &n.event, &n.payload, &d.id);
                let msg = syslog::format_rfc5424(
                    self.app.now(),
                    &self.hostname,
                    syslog::syslog_severity(severity),
                    &n.event,
                    &d.id,
                    &cef,
                );
                sender.send(&msg).await
            }
            (TargetKind::Syslog, _, None) => Err("this replica has no syslog target".to_string()),
        };
        let now = self.app.now();
        let outcome = match result {
            Ok(()) => DeliveryOutcome::Delivered { at: now },
            Err(error) if d.webhook.is_none() && d.target == TargetKind::Webhook => {
                DeliveryOutcome::GaveUp { at: now, error }
            }
            Err(error) if now.0 - n.created_at.0 >= ms(self.settings.backoff.give_up_after) => {
                tracing::warn!(delivery = %d.id, event = %n.event, target = d.target.as_str(), attempts = d.attempts,
                    "giving up a notification delivery: {error}");
                DeliveryOutcome::GaveUp { at: now, error }
            }
            Err(error) => {
                let delay = self.settings.backoff.delay(d.attempts, random_u64());
                tracing::warn!(delivery = %d.id, event = %n.event, target = d.target.as_str(), attempts = d.attempts,
                    retry_in_ms = delay.as_millis() as u64, "notification delivery failed: {error}");
                DeliveryOutcome::Retry { next_attempt_at: Timestamp(now.0 + ms(delay)), error }
            }
        };
        let label = match outcome {
            DeliveryOutcome::Delivered { .. } => "delivered",
            DeliveryOutcome::Retry { .. } => "retry",
            DeliveryOutcome::GaveUp { .. } => "gave_up",
        };
        metrics::counter!(DELIVERIES, "target" => d.target.as_str(), "outcome" => label).increment(1);
        if !self.app.store().finish_delivery(&d.id, lease, &outcome).await? {
            tracing::debug!(delivery = %d.id, "lease lost before the outcome was recorded; it will be retried");
        }
        Ok(())
    }
}

/// Starts the worker for `app` (syslog from its settings) until `stop` turns true. A syslog
/// setting that does not parse was refused by `prepare`; here it is logged and ignored.
pub fn spawn(app: Arc<App>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let syslog = match app.config().syslog.as_deref().map(SyslogTarget::parse).transpose() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}; notifications will not go to syslog");
            None
        }
    };
    match Notifier::new(app, Settings::default(), syslog) {
        Ok(n) => tokio::spawn(n.run(stop)),
        Err(e) => {
            tracing::error!("notification delivery cannot start: {e}");
            tokio::spawn(async {})
        }
    }
}
