-- The exact `total` of a list filtered on `sensor_status` from kept counts (issue 2: list p99
-- under 50 ms on a million sensors, also while heartbeats rewrite every row). Append-only:
-- never edit a landed file. (0018 is unused.)
--
-- `sensor_counts` (0012) gains `status_base`, the time-independent part of the status. A
-- status the clock cannot move (not_applicable, pending_activation, unreachable) is then a
-- sum of cells; a status the clock can move to disconnected or start_failed (update_failed,
-- updating, not_configured, syncing) is that sum minus the few sensors of its base the clock
-- moved: an index range on `sensors_status_clock` (disconnected) and on the partial index
-- below (start_failed). See picket_store::query::fast_count_sql. A heartbeat changes
-- `status_base` only when the configuration it applied catches up; the update trigger's WHEN
-- keeps every other heartbeat off the counts.
DROP TRIGGER sensor_counts_insert;
DROP TRIGGER sensor_counts_delete;
DROP TRIGGER sensor_counts_update;
DROP TABLE sensor_counts;
CREATE TABLE sensor_counts (
    subscription TEXT NOT NULL,
    zone TEXT NOT NULL,
    sensor_type TEXT NOT NULL,
    mode TEXT NOT NULL,
    health_rank INTEGER NOT NULL,
    status_base INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (subscription, zone, sensor_type, mode, health_rank, status_base)
);
INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, status_base, n)
    SELECT subscription, zone, sensor_type, mode, health_rank, status_base, COUNT(*) FROM sensors
    GROUP BY 1, 2, 3, 4, 5, 6;

CREATE TRIGGER sensor_counts_insert AFTER INSERT ON sensors BEGIN
    INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, status_base, n)
        VALUES (NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base, 1)
        ON CONFLICT (subscription, zone, sensor_type, mode, health_rank, status_base) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sensor_counts_delete AFTER DELETE ON sensors BEGIN
    UPDATE sensor_counts SET n = n - 1 WHERE subscription = OLD.subscription AND zone = OLD.zone
        AND sensor_type = OLD.sensor_type AND mode = OLD.mode AND health_rank = OLD.health_rank
        AND status_base = OLD.status_base;
END;
-- The columns listed are every input of the cells (`status_base` is generated from mode,
-- activated_at, decommissioned_at, update_state, sensor_type, capture_setting and the two
-- configuration versions).
CREATE TRIGGER sensor_counts_update AFTER UPDATE OF subscription, zone, sensor_type, mode, health_rank,
    activated_at, decommissioned_at, update_state, capture_setting, config_version_desired, config_version_applied
    ON sensors
WHEN OLD.subscription IS NOT NEW.subscription OR OLD.zone IS NOT NEW.zone OR OLD.sensor_type IS NOT NEW.sensor_type
    OR OLD.mode IS NOT NEW.mode OR OLD.health_rank IS NOT NEW.health_rank OR OLD.status_base IS NOT NEW.status_base
BEGIN
    UPDATE sensor_counts SET n = n - 1 WHERE subscription = OLD.subscription AND zone = OLD.zone
        AND sensor_type = OLD.sensor_type AND mode = OLD.mode AND health_rank = OLD.health_rank
        AND status_base = OLD.status_base;
    INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, status_base, n)
        VALUES (NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base, 1)
        ON CONFLICT (subscription, zone, sensor_type, mode, health_rank, status_base) DO UPDATE SET n = n + 1;
END;

-- The sensors whose service started without a configuration pull since (the start_failed
-- clock runs only on them): few at any time, so the subtraction above reads a short range.
CREATE INDEX sensors_start_pending ON sensors (status_base, start_pending_since) WHERE start_pending_since IS NOT NULL;
