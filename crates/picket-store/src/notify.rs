//! What notification delivery persists: webhook targets (URL and the HMAC secret), the outbox
//! (`notification_outbox`, written by whatever raises a notification, in its own transaction),
//! and per-target delivery state (attempts, next attempt, lease, delivered or given up, last
//! error). The `NotificationStore` trait, its records and the SQL both backends share.
//!
//! Work is claimed through the database: a claim sets a lease token and moves the row's
//! `next_attempt_at` to the end of the lease in one conditional `UPDATE`, so two replicas on
//! one PostgreSQL never both send the same delivery, and a replica that dies mid-send only
//! delays it until its lease runs out (at-least-once).

use async_trait::async_trait;
use picket_domain::Timestamp;
use serde::Serialize;

use crate::sql::{Columns, Value};
use crate::{Audit, StoreError, StoreResult};

/// A webhook target as stored. The secret is kept in clear (it keys the HMAC of every
/// request), is never serialized and never shown after creation.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Id (UUID form).
    pub id: String,
    /// `http://` or `https://` URL the notifications are POSTed to.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Picket-Signature` header.
    #[serde(skip)]
    pub secret: String,
    /// When created.
    pub created_at: Timestamp,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// One row of the outbox: something to tell every target about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Increasing id.
    pub id: i64,
    /// When it was raised.
    pub created_at: Timestamp,
    /// What happened, e.g. `health_issue.opened`.
    pub event: String,
    /// The JSON document delivered (as is) to webhooks.
    pub payload: String,
}

/// Where a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A webhook (the delivery names which).
    Webhook,
    /// The syslog target of the replica that sends it (`picket serve --syslog`).
    Syslog,
}

impl TargetKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Webhook => "webhook",
            TargetKind::Syslog => "syslog",
        }
    }

    fn parse(s: &str) -> StoreResult<TargetKind> {
        match s {
            "webhook" => Ok(TargetKind::Webhook),
            "syslog" => Ok(TargetKind::Syslog),
            other => Err(StoreError::Corrupt(format!("unknown delivery target {other:?}"))),
        }
    }
}

/// A delivery to create when a notification is fanned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Unique id, sent as `X-Picket-Delivery` (stable across retries).
    pub id: String,
    /// The outbox row.
    pub notification_id: i64,
    /// Webhook or syslog.
    pub target: TargetKind,
    /// Which webhook (for `TargetKind::Webhook`).
    pub webhook_id: Option<String>,
}

/// A request to claim due deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Deliveries whose next attempt is at or before this are due.
    pub now: Timestamp,
    /// Until when the claimer holds them; they are due again after it.
    pub lease_until: Timestamp,
    /// A token unique to this claim; finishing a delivery needs it.
    pub lease: String,
    /// At most this many.
    pub limit: u32,
    /// Whether to claim syslog deliveries too (only a replica with a syslog target does).
    pub syslog: bool,
}

/// A claimed delivery with what sending it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// Delivery id.
    pub id: String,
    /// Webhook or syslog.
    pub target: TargetKind,
    /// The webhook, for webhook deliveries (`None` if it was removed meanwhile).
    pub webhook: Option<Webhook>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// What to deliver.
    pub notification: Notification,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target accepted it.
    Delivered {
        /// When.
        at: Timestamp,
    },
    /// It failed; try again at `next_attempt_at`.
    Retry {
        /// When to try next.
        next_attempt_at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// It failed for good (too old, or its webhook is gone).
    GaveUp {
        /// When.
        at: Timestamp,
        /// What went wrong.
        error: String,
    },
}

/// A delivery's state, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    /// Delivery id.
    pub id: String,
    /// The outbox row.
    pub notification_id: i64,
    /// Webhook or syslog.
    pub target: TargetKind,
    /// Which webhook.
    pub webhook_id: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is due (again).
    pub next_attempt_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// When it was given up.
    pub failed_at: Option<Timestamp>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// Delivery state of one webhook, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookStats {
    /// The webhook.
    pub webhook_id: String,
    /// Deliveries waiting (neither delivered nor given up).
    pub pending: u64,
    /// Deliveries given up.
    pub failed: u64,
    /// When it last accepted a delivery.
    pub last_delivered_at: Option<Timestamp>,
    /// The latest error of a delivery not delivered (yet).
    pub last_error: Option<String>,
}

/// How much is waiting, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Outbox rows not fanned out yet.
    pub unfanned: u64,
    /// Deliveries neither delivered nor given up.
    pub pending: u64,
    /// Deliveries given up.
    pub failed: u64,
}

/// Webhooks, the outbox and delivery state. Webhook changes are audited (without the secret).
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores a webhook.
    async fn create_webhook(&self, webhook: &Webhook, audit: &Audit) -> StoreResult<()>;
    /// All webhooks, oldest first.
    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>>;
    /// Removes a webhook and its deliveries; `NotFound` if no such webhook.
    async fn delete_webhook(&self, id: &str, audit: &Audit) -> StoreResult<()>;

    /// Adds a row to the outbox on its own (callers that change something else insert into
    /// `notification_outbox` in that change's transaction instead); its id.
    async fn enqueue_notification(&self, at: Timestamp, event: &str, payload: &str) -> StoreResult<i64>;
    /// Outbox rows not fanned out yet, oldest first.
    async fn unfanned_notifications(&self, limit: u32) -> StoreResult<Vec<Notification>>;
    /// In one transaction: creates `deliveries` (due at `at`; skipping any whose webhook is
    /// gone or whose notification already has one for that target) and marks `notifications`
    /// fanned out.
    async fn fan_out(&self, notifications: &[i64], deliveries: &[NewDelivery], at: Timestamp) -> StoreResult<()>;
    /// Claims up to `claim.limit` due deliveries (oldest due first), counting an attempt on each.
    async fn claim_deliveries(&self, claim: &Claim) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records how an attempt ended; `false` (and no change) if the lease was lost meanwhile.
    async fn finish_delivery(&self, id: &str, lease: &str, outcome: &DeliveryOutcome) -> StoreResult<bool>;
    /// Deliveries of one notification (all if `None`), by id.
    async fn list_deliveries(&self, notification_id: Option<i64>) -> StoreResult<Vec<DeliveryRow>>;
    /// What is waiting.
    async fn delivery_counts(&self) -> StoreResult<DeliveryCounts>;
    /// Delivery state of every webhook, oldest webhook first.
    async fn webhook_stats(&self) -> StoreResult<Vec<WebhookStats>>;
    /// Deletes deliveries finished before `before`, and outbox rows fanned out before it with
    /// none left; how many rows went.
    async fn purge_notifications(&self, before: Timestamp) -> StoreResult<u64>;
}

/// The SQL both backends share (`$N` dialect).
pub mod sql {
    use super::*;

    /// Stores a webhook.
    pub const INSERT_WEBHOOK: &str = "INSERT INTO webhooks (id, url, secret, created_at) VALUES ($1, $2, $3, $4)";
    /// All webhooks, oldest first.
    pub const SELECT_WEBHOOKS: &str = "SELECT id, url, secret, created_at FROM webhooks ORDER BY created_at, id";
    /// Webhook `$1`.
    pub const SELECT_WEBHOOK: &str = "SELECT id, url, secret, created_at FROM webhooks WHERE id = $1";
    /// Deletes the deliveries of webhook `$1`.
    pub const DELETE_WEBHOOK_DELIVERIES: &str = "DELETE FROM notification_deliveries WHERE webhook_id = $1";
    /// Deletes webhook `$1`.
    pub const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = $1";

    /// Adds an outbox row; returns its id.
    pub const INSERT_NOTIFICATION: &str =
        "INSERT INTO notification_outbox (created_at, event, payload) VALUES ($1, $2, $3) RETURNING id";
    /// Outbox rows not fanned out, oldest first, at most `$1`.
    pub const SELECT_UNFANNED: &str = "SELECT id, created_at, event, payload FROM notification_outbox \
WHERE fanned_out_at IS NULL ORDER BY id LIMIT $1";
    /// Creates a delivery unless its webhook is gone or the notification has one for that
    /// target already: `$1` id, `$2` notification, `$3` target, `$4` webhook id, `$5` due.
    pub const INSERT_DELIVERY: &str = "INSERT INTO notification_deliveries \
(id, notification_id, target, webhook_id, attempts, next_attempt_at) \
SELECT $1, $2, $3, $4, 0, $5 WHERE $4 IS NULL OR EXISTS (SELECT 1 FROM webhooks WHERE id = $4) \
ON CONFLICT DO NOTHING";
    /// Marks outbox row `$1` fanned out at `$2`.
    pub const MARK_FANNED: &str =
        "UPDATE notification_outbox SET fanned_out_at = $2 WHERE id = $1 AND fanned_out_at IS NULL";

    /// The conditions of a due delivery (`$3` now, `$4` = 1 to include syslog).
    const DUE: &str = "delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $3 \
AND (target = 'webhook' OR $4 = 1)";

    /// Claims due deliveries: `$1` lease token, `$2` lease end, `$3` now, `$4` syslog (0/1),
    /// `$5` limit. `lock` is appended to the inner select (`FOR UPDATE SKIP LOCKED` on
    /// PostgreSQL); the outer conditions are checked again on the locked row, so a row
    /// another claimer took meanwhile is skipped.
    pub fn claim_sql(lock: &str) -> String {
        format!(
            "UPDATE notification_deliveries SET lease = $1, next_attempt_at = $2, attempts = attempts + 1 \
WHERE id IN (SELECT id FROM notification_deliveries WHERE {DUE} ORDER BY next_attempt_at, id LIMIT $5 {lock}) \
AND {DUE}"
        )
    }

    /// The deliveries claimed with lease `$1`, with their notification and webhook.
    pub const SELECT_CLAIMED: &str = "SELECT d.id AS id, d.target AS target, d.attempts AS attempts, \
o.id AS notification_id, o.created_at AS notification_created_at, o.event AS event, o.payload AS payload, \
w.id AS webhook_id, w.url AS url, w.secret AS secret, w.created_at AS webhook_created_at \
FROM notification_deliveries d JOIN notification_outbox o ON o.id = d.notification_id \
LEFT JOIN webhooks w ON w.id = d.webhook_id WHERE d.lease = $1 ORDER BY o.id, d.id";

    /// Delivery `$1` under lease `$2` was delivered at `$3`.
    pub const FINISH_DELIVERED: &str = "UPDATE notification_deliveries SET delivered_at = $3, last_error = NULL, \
lease = NULL WHERE id = $1 AND lease = $2 AND delivered_at IS NULL";
    /// Delivery `$1` under lease `$2` failed with `$4`; due again at `$3`.
    pub const FINISH_RETRY: &str = "UPDATE notification_deliveries SET next_attempt_at = $3, last_error = $4, \
lease = NULL WHERE id = $1 AND lease = $2 AND delivered_at IS NULL";
    /// Delivery `$1` under lease `$2` was given up at `$3` after `$4`.
    pub const FINISH_GAVE_UP: &str = "UPDATE notification_deliveries SET failed_at = $3, last_error = $4, \
lease = NULL WHERE id = $1 AND lease = $2 AND delivered_at IS NULL";

    const DELIVERY_COLUMNS: &str =
        "id, notification_id, target, webhook_id, attempts, next_attempt_at, delivered_at, failed_at, last_error";

    /// All deliveries, by id.
    pub fn select_deliveries_sql(one_notification: bool) -> String {
        let filter = if one_notification { "WHERE notification_id = $1 " } else { "" };
        format!("SELECT {DELIVERY_COLUMNS} FROM notification_deliveries {filter}ORDER BY id")
    }

    /// Counts for `/metrics`.
    pub const COUNTS: &str = "SELECT \
(SELECT COUNT(*) FROM notification_outbox WHERE fanned_out_at IS NULL) AS unfanned, \
(SELECT COUNT(*) FROM notification_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL) AS pending, \
(SELECT COUNT(*) FROM notification_deliveries WHERE failed_at IS NOT NULL) AS failed";

    /// Delivery state per webhook, oldest webhook first.
    pub const WEBHOOK_STATS: &str = "SELECT w.id AS webhook_id, \
(SELECT COUNT(*) FROM notification_deliveries d WHERE d.webhook_id = w.id \
AND d.delivered_at IS NULL AND d.failed_at IS NULL) AS pending, \
(SELECT COUNT(*) FROM notification_deliveries d WHERE d.webhook_id = w.id AND d.failed_at IS NOT NULL) AS failed, \
(SELECT MAX(d.delivered_at) FROM notification_deliveries d WHERE d.webhook_id = w.id) AS last_delivered_at, \
(SELECT d.last_error FROM notification_deliveries d WHERE d.webhook_id = w.id AND d.delivered_at IS NULL \
AND d.last_error IS NOT NULL ORDER BY d.next_attempt_at DESC, d.id LIMIT 1) AS last_error \
FROM webhooks w ORDER BY w.created_at, w.id";

    /// Deletes deliveries finished before `$1`.
    pub const PURGE_DELIVERIES: &str = "DELETE FROM notification_deliveries WHERE delivered_at < $1 OR failed_at < $1";
    /// Deletes outbox rows fanned out before `$1` that have no delivery left.
    pub const PURGE_OUTBOX: &str = "DELETE FROM notification_outbox WHERE fanned_out_at < $1 \
AND NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = notification_outbox.id)";

    /// The values of [`INSERT_WEBHOOK`].
    pub fn webhook_values(w: &Webhook) -> Vec<Value> {
        vec![
            Value::Text(w.id.clone()),
            Value::Text(w.url.clone()),
            Value::Text(w.secret.clone()),
            Value::Int(w.created_at.0),
        ]
    }

    /// The values of [`INSERT_DELIVERY`].
    pub fn delivery_values(d: &NewDelivery, at: Timestamp) -> Vec<Value> {
        vec![
            Value::Text(d.id.clone()),
            Value::Int(d.notification_id),
            Value::Text(d.target.as_str().to_string()),
            Value::OptText(d.webhook_id.clone()),
            Value::Int(at.0),
        ]
    }

    /// The values of [`claim_sql`].
    pub fn claim_values(c: &Claim) -> Vec<Value> {
        vec![
            Value::Text(c.lease.clone()),
            Value::Int(c.lease_until.0),
            Value::Int(c.now.0),
            Value::Int(i64::from(c.syslog)),
            Value::Int(i64::from(c.limit)),
        ]
    }

    /// The statement and values recording `outcome` of delivery `id` under `lease`.
    pub fn finish(id: &str, lease: &str, outcome: &DeliveryOutcome) -> (&'static str, Vec<Value>) {
        let key = [Value::Text(id.to_string()), Value::Text(lease.to_string())];
        match outcome {
            DeliveryOutcome::Delivered { at } => (FINISH_DELIVERED, [key.to_vec(), vec![Value::Int(at.0)]].concat()),
            DeliveryOutcome::Retry { next_attempt_at, error } => {
                (FINISH_RETRY, [key.to_vec(), vec![Value::Int(next_attempt_at.0), Value::Text(error.clone())]].concat())
            }
            DeliveryOutcome::GaveUp { at, error } => {
                (FINISH_GAVE_UP, [key.to_vec(), vec![Value::Int(at.0), Value::Text(error.clone())]].concat())
            }
        }
    }

    /// Reads a row of [`SELECT_WEBHOOKS`].
    pub fn decode_webhook(r: &impl Columns) -> StoreResult<Webhook> {
        Ok(Webhook {
            id: r.text("id")?,
            url: r.text("url")?,
            secret: r.text("secret")?,
            created_at: Timestamp(r.int("created_at")?),
        })
    }

    /// Reads a row of [`SELECT_UNFANNED`].
    pub fn decode_notification(r: &impl Columns) -> StoreResult<Notification> {
        Ok(Notification {
            id: r.int("id")?,
            created_at: Timestamp(r.int("created_at")?),
            event: r.text("event")?,
            payload: r.text("payload")?,
        })
    }

    fn count(r: &impl Columns, name: &str) -> StoreResult<u64> {
        let n = r.int(name)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {name} {n}")))
    }

    fn attempts(r: &impl Columns) -> StoreResult<u32> {
        let n = r.int("attempts")?;
        u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("attempts {n}")))
    }

    /// Reads a row of [`SELECT_CLAIMED`].
    pub fn decode_claimed(r: &impl Columns) -> StoreResult<ClaimedDelivery> {
        let webhook = match r.opt_text("webhook_id")? {
            Some(id) => Some(Webhook {
                id,
                url: r.text("url")?,
                secret: r.text("secret")?,
                created_at: Timestamp(r.int("webhook_created_at")?),
            }),
            None => None,
        };
        Ok(ClaimedDelivery {
            id: r.text("id")?,
            target: TargetKind::parse(&r.text("target")?)?,
            webhook,
            attempts: attempts(r)?,
            notification: Notification {
                id: r.int("notification_id")?,
                created_at: Timestamp(r.int("notification_created_at")?),
                event: r.text("event")?,
                payload: r.text("payload")?,
            },
        })
    }

    /// Reads a row of [`select_deliveries_sql`].
    pub fn decode_delivery(r: &impl Columns) -> StoreResult<DeliveryRow> {
        Ok(DeliveryRow {
            id: r.text("id")?,
            notification_id: r.int("notification_id")?,
            target: TargetKind::parse(&r.text("target")?)?,
            webhook_id: r.opt_text("webhook_id")?,
            attempts: attempts(r)?,
            next_attempt_at: Timestamp(r.int("next_attempt_at")?),
            delivered_at: r.opt_int("delivered_at")?.map(Timestamp),
            failed_at: r.opt_int("failed_at")?.map(Timestamp),
            last_error: r.opt_text("last_error")?,
        })
    }

    /// Reads a row of [`WEBHOOK_STATS`].
    pub fn decode_webhook_stats(r: &impl Columns) -> StoreResult<WebhookStats> {
        Ok(WebhookStats {
            webhook_id: r.text("webhook_id")?,
            pending: count(r, "pending")?,
            failed: count(r, "failed")?,
            last_delivered_at: r.opt_int("last_delivered_at")?.map(Timestamp),
            last_error: r.opt_text("last_error")?,
        })
    }

    /// Reads the row of [`COUNTS`].
    pub fn decode_counts(r: &impl Columns) -> StoreResult<DeliveryCounts> {
        Ok(DeliveryCounts {
            unfanned: count(r, "unfanned")?,
            pending: count(r, "pending")?,
            failed: count(r, "failed")?,
        })
    }
}
