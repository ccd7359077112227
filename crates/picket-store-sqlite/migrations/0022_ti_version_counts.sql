-- The Threat intelligence page counts the sensors that take TI (cloud connected, activated,
-- not decommissioned) per TI version in the viewer's subscriptions. A GROUP BY over every
-- sensor took ~0.4 s on a million rows per page view; these counts, kept by triggers in the
-- writing transaction like `rollout_group_counts` (0017), make it a read of a few rows
-- (`picket_store::ti_packages::sql::sensors_by_version_sql`). Append-only: never edit a
-- landed file.
--
-- `ti_version` is -1 for a sensor that has reported none (a primary key column cannot be
-- NULL here); a real TI version is never negative. The reader maps -1 back to NULL. Rows
-- whose count fell to 0 are kept and ignored by the reader.
CREATE TABLE ti_version_counts (
    subscription TEXT NOT NULL,
    ti_version INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (subscription, ti_version)
);
INSERT INTO ti_version_counts (subscription, ti_version, n)
    SELECT subscription, COALESCE(ti_version, -1), COUNT(*) FROM sensors
    WHERE mode = 'cloud_connected' AND activated_at IS NOT NULL AND decommissioned_at IS NULL
    GROUP BY 1, 2;

CREATE TRIGGER ti_version_counts_insert AFTER INSERT ON sensors
WHEN NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL
BEGIN
    INSERT INTO ti_version_counts (subscription, ti_version, n)
        VALUES (NEW.subscription, COALESCE(NEW.ti_version, -1), 1)
        ON CONFLICT (subscription, ti_version) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER ti_version_counts_delete AFTER DELETE ON sensors
WHEN OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL
BEGIN
    UPDATE ti_version_counts SET n = n - 1
        WHERE subscription = OLD.subscription AND ti_version = COALESCE(OLD.ti_version, -1);
END;
-- Fires only when the key or whether the sensor counts changes: a heartbeat rewrites
-- `ti_version` with the same value, and then only the WHEN is evaluated.
CREATE TRIGGER ti_version_counts_update
AFTER UPDATE OF subscription, ti_version, mode, activated_at, decommissioned_at ON sensors
WHEN OLD.subscription IS NOT NEW.subscription OR OLD.ti_version IS NOT NEW.ti_version OR OLD.mode IS NOT NEW.mode
    OR (OLD.activated_at IS NULL) IS NOT (NEW.activated_at IS NULL)
    OR (OLD.decommissioned_at IS NULL) IS NOT (NEW.decommissioned_at IS NULL)
BEGIN
    UPDATE ti_version_counts SET n = n - 1
        WHERE OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL
        AND subscription = OLD.subscription AND ti_version = COALESCE(OLD.ti_version, -1);
    INSERT INTO ti_version_counts (subscription, ti_version, n)
        SELECT NEW.subscription, COALESCE(NEW.ti_version, -1), 1
        WHERE NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL
        ON CONFLICT (subscription, ti_version) DO UPDATE SET n = n + 1;
END;
