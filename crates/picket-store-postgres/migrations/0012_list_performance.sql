-- Fast lists, counts and name search on a million sensors (issue 2's benchmark targets).
-- Append-only: never edit a landed file.
--
-- 1. The time-independent part of `sensor_status`, kept by PostgreSQL itself on every write
--    (generated columns: no code path can forget them). `status_base` is the rank
--    (`SensorStatus::rank`) of the first rule that holds among the rules that depend on the
--    row alone, with 10 (`up_to_date`) when none does; the rules that depend on `now` or on
--    the published releases (disconnected 3, start_failed 4, outdated 9) are applied at query
--    time on `last_contact_at` and `start_pending_since` (picket_store::query::status_*).
--    `last_contact_at` is the last contact the `disconnected` rule measures from (NULL until
--    activated); `start_pending_since` the start not followed by a configuration pull (the
--    `start_failed` clock).
ALTER TABLE sensors
    ADD COLUMN status_base BIGINT GENERATED ALWAYS AS (CASE
        WHEN mode = 'locally_managed' THEN 0
        WHEN activated_at IS NULL THEN 1
        WHEN decommissioned_at IS NOT NULL THEN 2
        WHEN update_state = 'failed' THEN 5
        WHEN update_state = 'updating' THEN 6
        WHEN sensor_type IN ('adfs', 'standalone') AND (capture_setting IS NULL OR TRIM(capture_setting) = '') THEN 7
        WHEN config_version_desired > config_version_applied THEN 8
        ELSE 10 END) STORED,
    ADD COLUMN last_contact_at BIGINT GENERATED ALWAYS AS (CASE
        WHEN activated_at IS NULL THEN NULL
        WHEN last_seen_at IS NOT NULL AND last_seen_at > activated_at THEN last_seen_at
        ELSE activated_at END) STORED,
    ADD COLUMN start_pending_since BIGINT GENERATED ALWAYS AS (CASE
        WHEN service_started_at IS NOT NULL AND (last_config_pull_at IS NULL OR last_config_pull_at < service_started_at)
        THEN service_started_at END) STORED;

-- A status filter walks (status_base, name) for the page and counts in the covering index.
CREATE INDEX sensors_status_name ON sensors (status_base, name_lower, id);
CREATE INDEX sensors_status_clock ON sensors (status_base, last_contact_at, start_pending_since, version_key);
CREATE INDEX sensors_last_contact ON sensors (last_contact_at, status_base);

-- 2. Exact counts per (subscription, zone, type, mode, health) kept by a trigger, so the
--    `total` of a list filtered on nothing else is a sum over a few hundred rows instead of
--    a count over a million. A transaction changing two cells locks them in key order.
CREATE TABLE sensor_counts (
    subscription TEXT COLLATE "C" NOT NULL,
    zone TEXT COLLATE "C" NOT NULL,
    sensor_type TEXT COLLATE "C" NOT NULL,
    mode TEXT COLLATE "C" NOT NULL,
    health_rank BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (subscription, zone, sensor_type, mode, health_rank)
);
INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, n)
    SELECT subscription, zone, sensor_type, mode, health_rank, COUNT(*) FROM sensors GROUP BY 1, 2, 3, 4, 5;

CREATE FUNCTION sensor_counts_add(s TEXT, z TEXT, t TEXT, m TEXT, h BIGINT, d BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, n) VALUES (s, z, t, m, h, d)
    ON CONFLICT (subscription, zone, sensor_type, mode, health_rank) DO UPDATE SET n = sensor_counts.n + d;
$$;

CREATE FUNCTION sensor_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM sensor_counts_add(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM sensor_counts_add(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, -1);
    ELSIF ROW(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank)
        < ROW(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank) THEN
        PERFORM sensor_counts_add(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, -1);
        PERFORM sensor_counts_add(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, 1);
    ELSE
        PERFORM sensor_counts_add(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, 1);
        PERFORM sensor_counts_add(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank, -1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sensor_counts_insert_delete AFTER INSERT OR DELETE ON sensors
    FOR EACH ROW EXECUTE FUNCTION sensor_counts_track();
CREATE TRIGGER sensor_counts_update AFTER UPDATE OF subscription, zone, sensor_type, mode, health_rank ON sensors
    FOR EACH ROW WHEN (ROW(OLD.subscription, OLD.zone, OLD.sensor_type, OLD.mode, OLD.health_rank)
        IS DISTINCT FROM ROW(NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank))
    EXECUTE FUNCTION sensor_counts_track();

-- Sensors per tag (`sensor_tags` rows are distinct per sensor), for a one-tag `total`.
CREATE TABLE sensor_tag_counts (
    tag TEXT COLLATE "C" PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO sensor_tag_counts (tag, n) SELECT tag, COUNT(*) FROM sensor_tags GROUP BY tag;

CREATE FUNCTION sensor_tag_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sensor_tag_counts (tag, n) VALUES (NEW.tag, 1)
        ON CONFLICT (tag) DO UPDATE SET n = sensor_tag_counts.n + 1;
    ELSE
        UPDATE sensor_tag_counts SET n = n - 1 WHERE tag = OLD.tag;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER sensor_tag_counts_track AFTER INSERT OR DELETE ON sensor_tags
    FOR EACH ROW EXECUTE FUNCTION sensor_tag_counts_track();

-- 3. Name search (`q`, a substring: `name_lower LIKE '%...%'`) through a trigram index
--    instead of a scan of every name. pg_trgm ships with PostgreSQL and is a trusted
--    extension (any role that may create objects in the database may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX sensors_name_trgm ON sensors USING gin (name_lower gin_trgm_ops);

-- Statistics for the new columns and indexes (the planner's choice of a status index).
ANALYZE sensors;
