-- The Releases page's rollout view counts the sensors a rollout concerns (cloud connected,
-- activated, not decommissioned) per (subscription, delayed_update, reported version). A
-- GROUP BY over every sensor took 3-5 s on a million rows per render and per 5 s refresh;
-- these counts, kept by triggers in the writing transaction like `sensor_counts` (0012),
-- make it a read of a few dozen rows (`picket_store::rollouts::sql::GROUP_SENSORS`).
-- Append-only: never edit a landed file.
--
-- `version` is '' for a sensor that has reported none (a primary key column cannot be NULL
-- here: SQLite would treat NULLs as distinct and never hit the conflict); a real version is
-- never empty (it parses as MAJOR.MINOR.PATCH). The reader maps '' back to NULL.
-- `delayed` is 0 or 1. Rows whose count fell to 0 are kept and ignored by the reader.
CREATE TABLE rollout_group_counts (
    subscription TEXT NOT NULL,
    delayed INTEGER NOT NULL,
    version TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (subscription, delayed, version)
);
INSERT INTO rollout_group_counts (subscription, delayed, version, n)
    SELECT subscription, CASE WHEN delayed_update THEN 1 ELSE 0 END, COALESCE(version, ''), COUNT(*) FROM sensors
    WHERE mode = 'cloud_connected' AND activated_at IS NOT NULL AND decommissioned_at IS NULL
    GROUP BY 1, 2, 3;

CREATE TRIGGER rollout_group_counts_insert AFTER INSERT ON sensors
WHEN NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL
BEGIN
    INSERT INTO rollout_group_counts (subscription, delayed, version, n)
        VALUES (NEW.subscription, CASE WHEN NEW.delayed_update THEN 1 ELSE 0 END, COALESCE(NEW.version, ''), 1)
        ON CONFLICT (subscription, delayed, version) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER rollout_group_counts_delete AFTER DELETE ON sensors
WHEN OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL
BEGIN
    UPDATE rollout_group_counts SET n = n - 1 WHERE subscription = OLD.subscription
        AND delayed = (CASE WHEN OLD.delayed_update THEN 1 ELSE 0 END) AND version = COALESCE(OLD.version, '');
END;
-- Fires only when a group key or whether the sensor counts changes: a heartbeat rewrites
-- `version` with the same value (and `last_seen_at`), and then only the WHEN is evaluated.
CREATE TRIGGER rollout_group_counts_update
AFTER UPDATE OF subscription, delayed_update, version, mode, activated_at, decommissioned_at ON sensors
WHEN OLD.subscription IS NOT NEW.subscription OR OLD.delayed_update IS NOT NEW.delayed_update
    OR OLD.version IS NOT NEW.version OR OLD.mode IS NOT NEW.mode
    OR (OLD.activated_at IS NULL) IS NOT (NEW.activated_at IS NULL)
    OR (OLD.decommissioned_at IS NULL) IS NOT (NEW.decommissioned_at IS NULL)
BEGIN
    UPDATE rollout_group_counts SET n = n - 1
        WHERE OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL
        AND subscription = OLD.subscription AND delayed = (CASE WHEN OLD.delayed_update THEN 1 ELSE 0 END)
        AND version = COALESCE(OLD.version, '');
    INSERT INTO rollout_group_counts (subscription, delayed, version, n)
        SELECT NEW.subscription, CASE WHEN NEW.delayed_update THEN 1 ELSE 0 END, COALESCE(NEW.version, ''), 1
        WHERE NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL
        ON CONFLICT (subscription, delayed, version) DO UPDATE SET n = n + 1;
END;
