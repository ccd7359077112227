-- The status job's candidate search skips sensors that already have an issue of the kind
-- (issue 3: on a million sensors with 105k open issues, each 5 s tick re-found every one of
-- them through its kind's index range, 1.0-1.2 s of CPU). Append-only: never edit a landed file.
--
-- `blocked_kinds` has one bit per kind raised from facts (disconnected 1, service_stopped 2,
-- start_failed 4, not_configured 8, update_failed 16, outdated 32;
-- picket_store::health::sql::blocked_bit), set while the sensor has an open issue of that
-- kind or a muted one (an operator closed it while its condition persists). Only these
-- triggers write it, in the transaction that changes the issue. The partial indexes below
-- hold the sensors that may need a new issue and have none: a tick reads the few whose
-- condition started. The bit narrows the search and never decides; the job still checks
-- health_issues itself. `disconnected` keeps its `last_contact_at` range: an index on it
-- without the blocked sensors would be rewritten by every heartbeat.
ALTER TABLE sensors ADD COLUMN blocked_kinds INTEGER NOT NULL DEFAULT 0;

UPDATE sensors SET blocked_kinds = (
    SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
        WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
        WHEN 'outdated' THEN 32 ELSE 0 END), 0)
    FROM health_issues h WHERE h.sensor_id = sensors.id AND (h.status = 'open' OR h.muted))
WHERE id IN (SELECT sensor_id FROM health_issues WHERE status = 'open' OR muted);

CREATE TRIGGER blocked_kinds_insert AFTER INSERT ON health_issues
WHEN NEW.status = 'open' OR NEW.muted BEGIN
    UPDATE sensors SET blocked_kinds = (
        SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
            WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
            WHEN 'outdated' THEN 32 ELSE 0 END), 0)
        FROM health_issues h WHERE h.sensor_id = NEW.sensor_id AND (h.status = 'open' OR h.muted))
    WHERE id = NEW.sensor_id;
END;

CREATE TRIGGER blocked_kinds_update AFTER UPDATE OF sensor_id, kind, status, muted ON health_issues BEGIN
    UPDATE sensors SET blocked_kinds = (
        SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
            WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
            WHEN 'outdated' THEN 32 ELSE 0 END), 0)
        FROM health_issues h WHERE h.sensor_id = sensors.id AND (h.status = 'open' OR h.muted))
    WHERE id IN (OLD.sensor_id, NEW.sensor_id);
END;

CREATE TRIGGER blocked_kinds_delete AFTER DELETE ON health_issues
WHEN OLD.status = 'open' OR OLD.muted BEGIN
    UPDATE sensors SET blocked_kinds = (
        SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
            WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
            WHEN 'outdated' THEN 32 ELSE 0 END), 0)
        FROM health_issues h WHERE h.sensor_id = OLD.sensor_id AND (h.status = 'open' OR h.muted))
    WHERE id = OLD.sensor_id;
END;

CREATE INDEX sensors_unblocked_service_stopped ON sensors (id)
    WHERE service_status IN ('stopped', 'disabled') AND (blocked_kinds & 2) = 0;
CREATE INDEX sensors_unblocked_start_failed ON sensors (start_pending_since)
    WHERE start_pending_since IS NOT NULL AND (blocked_kinds & 4) = 0;
CREATE INDEX sensors_unblocked_not_configured ON sensors (status_base, id)
    WHERE sensor_type IN ('adfs', 'standalone') AND (capture_setting IS NULL OR TRIM(capture_setting) = '')
    AND (blocked_kinds & 8) = 0;
CREATE INDEX sensors_unblocked_update_failed ON sensors (id) WHERE status_base = 5 AND (blocked_kinds & 16) = 0;
CREATE INDEX sensors_unblocked_outdated ON sensors (version_key) WHERE (blocked_kinds & 32) = 0;
