-- The Threat intelligence page counts the sensors that take TI (cloud connected, activated,
-- not decommissioned) per TI version in the viewer's subscriptions. A GROUP BY over every
-- sensor took ~0.4 s on a million rows per page view; these counts, kept by row triggers in
-- the writing transaction like `rollout_group_counts` (0017), make it a read of a few rows
-- (`picket_store::ti_packages::sql::sensors_by_version_sql`). Append-only: never edit a
-- landed file.
--
-- `ti_version` is -1 for a sensor that has reported none (a primary key column cannot be
-- NULL); a real TI version is never negative. The reader maps -1 back to NULL. Rows whose
-- count fell to 0 are kept and ignored by the reader.
CREATE TABLE ti_version_counts (
    subscription TEXT COLLATE "C" NOT NULL,
    ti_version BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (subscription, ti_version)
);
INSERT INTO ti_version_counts (subscription, ti_version, n)
    SELECT subscription, COALESCE(ti_version, -1), COUNT(*) FROM sensors
    WHERE mode = 'cloud_connected' AND activated_at IS NOT NULL AND decommissioned_at IS NULL
    GROUP BY 1, 2;

CREATE FUNCTION ti_version_counts_add(s TEXT, v BIGINT, d BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO ti_version_counts (subscription, ti_version, n) VALUES (s, v, d)
    ON CONFLICT (subscription, ti_version) DO UPDATE SET n = ti_version_counts.n + d;
$$;

CREATE FUNCTION ti_version_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_in BOOLEAN := FALSE;
    new_in BOOLEAN := FALSE;
    os TEXT; ov BIGINT;
    ns TEXT; nv BIGINT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_in := OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL;
        os := OLD.subscription;
        ov := COALESCE(OLD.ti_version, -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_in := NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL;
        ns := NEW.subscription;
        nv := COALESCE(NEW.ti_version, -1);
    END IF;
    IF old_in AND new_in AND os = ns AND ov = nv THEN
        RETURN NULL;
    END IF;
    -- Two cells: the lower key first, so concurrent writers lock them in one order.
    IF old_in AND (NOT new_in OR ROW(os, ov) < ROW(ns, nv)) THEN
        PERFORM ti_version_counts_add(os, ov, -1);
        old_in := FALSE;
    END IF;
    IF new_in THEN
        PERFORM ti_version_counts_add(ns, nv, 1);
    END IF;
    IF old_in THEN
        PERFORM ti_version_counts_add(os, ov, -1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ti_version_counts_insert AFTER INSERT ON sensors
    FOR EACH ROW WHEN (NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL)
    EXECUTE FUNCTION ti_version_counts_track();
CREATE TRIGGER ti_version_counts_delete AFTER DELETE ON sensors
    FOR EACH ROW WHEN (OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL)
    EXECUTE FUNCTION ti_version_counts_track();
-- Fires only when the key or whether the sensor counts changes: a heartbeat rewrites
-- `ti_version` with the same value, and then only the WHEN is evaluated.
CREATE TRIGGER ti_version_counts_update
    AFTER UPDATE OF subscription, ti_version, mode, activated_at, decommissioned_at ON sensors
    FOR EACH ROW WHEN (ROW(OLD.subscription, OLD.ti_version, OLD.mode,
            OLD.activated_at IS NULL, OLD.decommissioned_at IS NULL)
        IS DISTINCT FROM ROW(NEW.subscription, NEW.ti_version, NEW.mode,
            NEW.activated_at IS NULL, NEW.decommissioned_at IS NULL))
    EXECUTE FUNCTION ti_version_counts_track();
