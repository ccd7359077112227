-- Notification delivery (issue 3): webhook targets, and per-target delivery state of the
-- outbox rows (0004). The delivery worker fans each outbox row out into one delivery per
-- target, then claims due deliveries with a lease (`lease`, and `next_attempt_at` moved to
-- the lease's end), so a crash only delays a delivery and two replicas never send one twice.
-- Append-only: never edit a landed file.

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    -- the HMAC-SHA256 key of X-Picket-Signature; needed in clear to sign, never shown again
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Set when the worker has created the row's deliveries.
ALTER TABLE notification_outbox ADD COLUMN fanned_out_at INTEGER;
CREATE INDEX notification_outbox_unfanned ON notification_outbox (id) WHERE fanned_out_at IS NULL;

CREATE TABLE notification_deliveries (
    -- sent as X-Picket-Delivery, stable across retries
    id TEXT PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notification_outbox (id),
    -- `webhook` or `syslog`
    target TEXT NOT NULL,
    webhook_id TEXT,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease TEXT,
    delivered_at INTEGER,
    failed_at INTEGER,
    last_error TEXT
);
CREATE UNIQUE INDEX notification_deliveries_target
    ON notification_deliveries (notification_id, target, COALESCE(webhook_id, ''));
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notification_deliveries_lease ON notification_deliveries (lease);
CREATE INDEX notification_deliveries_webhook ON notification_deliveries (webhook_id);
