-- The exact `total` of a list filtered on `sensor_status` from kept counts (issue 2: list p99
-- under 50 ms on a million sensors, also while heartbeats rewrite every row: an index-only
-- count then visits the heap for nearly every entry, because a heartbeat clears its page's
-- visibility-map bit). Append-only: never edit a landed file. (0018 is unused.)
--
-- `sensor_counts` (0012) gains `status_base`, the time-independent part of the status. A
-- status the clock cannot move (not_applicable, pending_activation, unreachable) is then a
-- sum of cells; a status the clock can move to disconnected or start_failed (update_failed,
-- updating, not_configured, syncing) is that sum minus the few sensors of its base the clock
-- moved: an index range on `sensors_status_clock` (disconnected) and on the partial index
-- below (start_failed). See picket_store::query::fast_count_sql. A heartbeat changes
-- `status_base` only when the configuration it applied catches up; the update trigger's WHEN
-- keeps every other heartbeat off the counts.
DROP TRIGGER sensor_counts_insert_delete ON sensors;
DROP TRIGGER sensor_counts_update ON sensors;
DROP FUNCTION sensor_counts_track();
DROP FUNCTION sensor_counts_add(TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT);
DROP TABLE sensor_counts;
CREATE TABLE sensor_counts (
    subscription TEXT COLLATE "C" NOT NULL,
    zone TEXT COLLATE "C" NOT NULL,
    sensor_type TEXT COLLATE "C" NOT NULL,
    mode TEXT COLLATE "C" NOT NULL,
    health_rank BIGINT NOT NULL,
    status_base BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (subscription, zone, sensor_type, mode, health_rank, status_base)
);
INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, status_base, n)
    SELECT subscription, zone, sensor_type, mode, health_rank, status_base, COUNT(*) FROM sensors
    GROUP BY 1, 2, 3, 4, 5, 6;

CREATE FUNCTION sensor_counts_add(s TEXT, z TEXT, t TEXT, m TEXT, h BIGINT, b BIGINT, d BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, status_base, n)
    VALUES (s, z, t, m, h, b, d)
    ON CONFLICT (subscription, zone, sensor_type, mode, health_rank, status_base) DO UPDATE SET n = sensor_counts.n + d;
$$;

-- A transaction changing two cells locks them in key order (no deadlock between writers).
CREATE FUNCTION sensor_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM sensor_counts_add(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM sensor_counts_add(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, OLD.status_base, -1);
    ELSIF ROW(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, OLD.status_base)
        < ROW(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base) THEN
        PERFORM sensor_counts_add(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, OLD.status_base, -1);
        PERFORM sensor_counts_add(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base, 1);
    ELSE
        PERFORM sensor_counts_add(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base, 1);
        PERFORM sensor_counts_add(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, OLD.status_base, -1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sensor_counts_insert_delete AFTER INSERT OR DELETE ON sensors
    FOR EACH ROW EXECUTE FUNCTION sensor_counts_track();
-- The columns listed are every input of the cells (`status_base` is generated from mode,
-- activated_at, decommissioned_at, update_state, sensor_type, capture_setting and the two
-- configuration versions).
CREATE TRIGGER sensor_counts_update AFTER UPDATE OF subscription, zone, sensor_type, mode, health_rank,
    activated_at, decommissioned_at, update_state, capture_setting, config_version_desired, config_version_applied
    ON sensors
    FOR EACH ROW WHEN (ROW(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, OLD.status_base)
        IS DISTINCT FROM ROW(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, NEW.status_base))
    EXECUTE FUNCTION sensor_counts_track();

-- The sensors whose service started without a configuration pull since (the start_failed
-- clock runs only on them): few at any time, so the subtraction above reads a short range.
CREATE INDEX sensors_start_pending ON sensors (status_base, start_pending_since) WHERE start_pending_since IS NOT NULL;
ANALYZE sensor_counts;
