-- `ti_stale` joins `sensors.blocked_kinds` (migration 0023) as bit 64, and its search ranges
-- over the sensors without an open or muted `ti_stale` issue: once any TI package was old
-- enough, every status-job tick read every sensor (`COALESCE(ti_version, 0) < ...` on no
-- index) to find the few that had not imported it. Append-only: never edit a landed file.
DROP TRIGGER blocked_kinds_insert;
DROP TRIGGER blocked_kinds_update;
DROP TRIGGER blocked_kinds_delete;

CREATE TRIGGER blocked_kinds_insert AFTER INSERT ON health_issues
WHEN NEW.status = 'open' OR NEW.muted BEGIN
    UPDATE sensors SET blocked_kinds = (
        SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
            WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
            WHEN 'outdated' THEN 32 WHEN 'ti_stale' THEN 64 ELSE 0 END), 0)
        FROM health_issues h WHERE h.sensor_id = NEW.sensor_id AND (h.status = 'open' OR h.muted))
    WHERE id = NEW.sensor_id;
END;

CREATE TRIGGER blocked_kinds_update AFTER UPDATE OF sensor_id, kind, status, muted ON health_issues BEGIN
    UPDATE sensors SET blocked_kinds = (
        SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
            WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
            WHEN 'outdated' THEN 32 WHEN 'ti_stale' THEN 64 ELSE 0 END), 0)
        FROM health_issues h WHERE h.sensor_id = sensors.id AND (h.status = 'open' OR h.muted))
    WHERE id IN (OLD.sensor_id, NEW.sensor_id);
END;

CREATE TRIGGER blocked_kinds_delete AFTER DELETE ON health_issues
WHEN OLD.status = 'open' OR OLD.muted BEGIN
    UPDATE sensors SET blocked_kinds = (
        SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2
            WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16
            WHEN 'outdated' THEN 32 WHEN 'ti_stale' THEN 64 ELSE 0 END), 0)
        FROM health_issues h WHERE h.sensor_id = OLD.sensor_id AND (h.status = 'open' OR h.muted))
    WHERE id = OLD.sensor_id;
END;

UPDATE sensors SET blocked_kinds = blocked_kinds | 64
WHERE id IN (SELECT sensor_id FROM health_issues WHERE kind = 'ti_stale' AND (status = 'open' OR muted));

CREATE INDEX sensors_unblocked_ti_stale ON sensors (COALESCE(ti_version, 0))
    WHERE mode = 'cloud_connected' AND (blocked_kinds & 64) = 0;
