-- Fast lists, counts and name search on a million sensors (issue 2's benchmark targets).
-- Append-only: never edit a landed file.
--
-- 1. The time-independent part of `sensor_status`, kept by SQLite itself on every write
--    (generated columns: no code path can forget them). `status_base` is the rank
--    (`SensorStatus::rank`) of the first rule that holds among the rules that depend on the
--    row alone, with 10 (`up_to_date`) when none does; the rules that depend on `now` or on
--    the published releases (disconnected 3, start_failed 4, outdated 9) are applied at query
--    time on `last_contact_at` and `start_pending_since` (picket_store::query::status_*).
--    VIRTUAL: computed on read, stored only in the indexes below.
ALTER TABLE sensors ADD COLUMN status_base INTEGER GENERATED ALWAYS AS (CASE
    WHEN mode = 'locally_managed' THEN 0
    WHEN activated_at IS NULL THEN 1
    WHEN decommissioned_at IS NOT NULL THEN 2
    WHEN update_state = 'failed' THEN 5
    WHEN update_state = 'updating' THEN 6
    WHEN sensor_type IN ('adfs', 'standalone') AND (capture_setting IS NULL OR TRIM(capture_setting) = '') THEN 7
    WHEN config_version_desired > config_version_applied THEN 8
    ELSE 10 END) VIRTUAL;
-- The last contact the `disconnected` rule measures from (NULL until activated).
ALTER TABLE sensors ADD COLUMN last_contact_at INTEGER GENERATED ALWAYS AS (CASE
    WHEN activated_at IS NULL THEN NULL
    WHEN last_seen_at IS NOT NULL AND last_seen_at > activated_at THEN last_seen_at
    ELSE activated_at END) VIRTUAL;
-- When the service started without a configuration pull since (the `start_failed` clock).
ALTER TABLE sensors ADD COLUMN start_pending_since INTEGER GENERATED ALWAYS AS (CASE
    WHEN service_started_at IS NOT NULL AND (last_config_pull_at IS NULL OR last_config_pull_at < service_started_at)
    THEN service_started_at END) VIRTUAL;

-- A status filter walks (status_base, name) for the page and counts in the covering index.
CREATE INDEX sensors_status_name ON sensors (status_base, name_lower, id);
CREATE INDEX sensors_status_clock ON sensors (status_base, last_contact_at, start_pending_since, version_key);
CREATE INDEX sensors_last_contact ON sensors (last_contact_at, status_base);

-- 2. Exact counts per (subscription, zone, type, mode, health) kept by triggers, so the
--    `total` of a list filtered on nothing else is a sum over a few hundred rows instead of
--    a count over a million.
CREATE TABLE sensor_counts (
    subscription TEXT NOT NULL,
    zone TEXT NOT NULL,
    sensor_type TEXT NOT NULL,
    mode TEXT NOT NULL,
    health_rank INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (subscription, zone, sensor_type, mode, health_rank)
);
INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, n)
    SELECT subscription, zone, sensor_type, mode, health_rank, COUNT(*) FROM sensors GROUP BY 1, 2, 3, 4, 5;

CREATE TRIGGER sensor_counts_insert AFTER INSERT ON sensors BEGIN
    INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, n)
        VALUES (NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, 1)
        ON CONFLICT (subscription, zone, sensor_type, mode, health_rank) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sensor_counts_delete AFTER DELETE ON sensors BEGIN
    UPDATE sensor_counts SET n = n - 1 WHERE subscription = OLD.subscription AND zone = OLD.zone
        AND sensor_type = OLD.sensor_type AND mode = OLD.mode AND health_rank = OLD.health_rank;
END;
CREATE TRIGGER sensor_counts_update AFTER UPDATE OF subscription, zone, sensor_type, mode, health_rank ON sensors
WHEN OLD.subscription IS NOT NEW.subscription OR OLD.zone IS NOT NEW.zone OR OLD.sensor_type IS NOT NEW.sensor_type
    OR OLD.mode IS NOT NEW.mode OR OLD.health_rank IS NOT NEW.health_rank
BEGIN
    UPDATE sensor_counts SET n = n - 1 WHERE subscription = OLD.subscription AND zone = OLD.zone
        AND sensor_type = OLD.sensor_type AND mode = OLD.mode AND health_rank = OLD.health_rank;
    INSERT INTO sensor_counts (subscription, zone, sensor_type, mode, health_rank, n)
        VALUES (NEW.subscription, NEW.zone, NEW.sensor_type, NEW.mode, NEW.health_rank, 1)
        ON CONFLICT (subscription, zone, sensor_type, mode, health_rank) DO UPDATE SET n = n + 1;
END;

-- Sensors per tag (`sensor_tags` rows are distinct per sensor), for a one-tag `total`.
CREATE TABLE sensor_tag_counts (
    tag TEXT PRIMARY KEY NOT NULL,
    n INTEGER NOT NULL
);
INSERT INTO sensor_tag_counts (tag, n) SELECT tag, COUNT(*) FROM sensor_tags GROUP BY tag;
CREATE TRIGGER sensor_tag_counts_insert AFTER INSERT ON sensor_tags BEGIN
    INSERT INTO sensor_tag_counts (tag, n) VALUES (NEW.tag, 1) ON CONFLICT (tag) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER sensor_tag_counts_delete AFTER DELETE ON sensor_tags BEGIN
    UPDATE sensor_tag_counts SET n = n - 1 WHERE tag = OLD.tag;
END;

-- 3. Name search (`q`, a substring) through a trigram index instead of a scan of every name.
--    External content: the index holds the sensors' rowids. VACUUM may renumber the rowids
--    of a table without an INTEGER PRIMARY KEY, so after a VACUUM run
--    `INSERT INTO sensor_name_search(sensor_name_search) VALUES ('rebuild')`. Matches are
--    always re-checked with LIKE on the row, so the index only narrows the candidates.
CREATE VIRTUAL TABLE sensor_name_search USING fts5(name_lower, content = 'sensors', tokenize = 'trigram');
INSERT INTO sensor_name_search (sensor_name_search) VALUES ('rebuild');
CREATE TRIGGER sensor_name_search_insert AFTER INSERT ON sensors BEGIN
    INSERT INTO sensor_name_search (rowid, name_lower) VALUES (NEW.rowid, NEW.name_lower);
END;
CREATE TRIGGER sensor_name_search_delete AFTER DELETE ON sensors BEGIN
    INSERT INTO sensor_name_search (sensor_name_search, rowid, name_lower) VALUES ('delete', OLD.rowid, OLD.name_lower);
END;
CREATE TRIGGER sensor_name_search_update AFTER UPDATE OF name_lower ON sensors
WHEN OLD.name_lower IS NOT NEW.name_lower
BEGIN
    INSERT INTO sensor_name_search (sensor_name_search, rowid, name_lower) VALUES ('delete', OLD.rowid, OLD.name_lower);
    INSERT INTO sensor_name_search (rowid, name_lower) VALUES (NEW.rowid, NEW.name_lower);
END;
