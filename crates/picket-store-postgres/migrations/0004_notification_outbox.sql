-- Notifications (issue 3): a persisted outbox. Whatever raises a notification (a health issue
-- opened or reopened, later an alert) inserts one row here in the same transaction as the
-- change itself, so a crash can never lose one. The delivery worker fans each row out to the
-- webhooks and syslog and records per-target progress in its own tables.
-- Append-only: never edit a landed file.
CREATE TABLE notification_outbox (
    id BIGSERIAL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    -- e.g. `health_issue.opened`, `health_issue.reopened`
    event TEXT NOT NULL,
    -- the JSON document delivered to webhooks (and rendered as CEF for syslog)
    payload TEXT NOT NULL
);
