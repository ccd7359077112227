-- The Releases page's rollout view counts the sensors a rollout concerns (cloud connected,
-- activated, not decommissioned) per (subscription, delayed_update, reported version). A
-- GROUP BY over every sensor read the whole table per render and per 5 s refresh; these
-- counts, kept by row triggers in the writing transaction like `sensor_counts` (0012), make
-- it a read of a few dozen rows (`picket_store::rollouts::sql::GROUP_SENSORS`).
-- Append-only: never edit a landed file.
--
-- `version` is '' for a sensor that has reported none (a primary key column cannot be
-- NULL); a real version is never empty (it parses as MAJOR.MINOR.PATCH). The reader maps ''
-- back to NULL. `delayed` is 0 or 1. Rows whose count fell to 0 are kept and ignored by the
-- reader. A transaction changing two cells for one sensor locks them in key order.
CREATE TABLE rollout_group_counts (
    subscription TEXT COLLATE "C" NOT NULL,
    delayed BIGINT NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (subscription, delayed, version)
);
INSERT INTO rollout_group_counts (subscription, delayed, version, n)
    SELECT subscription, CASE WHEN delayed_update THEN 1 ELSE 0 END, COALESCE(version, ''), COUNT(*) FROM sensors
    WHERE mode = 'cloud_connected' AND activated_at IS NOT NULL AND decommissioned_at IS NULL
    GROUP BY 1, 2, 3;

CREATE FUNCTION rollout_group_counts_add(s TEXT, dl BIGINT, v TEXT, d BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO rollout_group_counts (subscription, delayed, version, n) VALUES (s, dl, v, d)
    ON CONFLICT (subscription, delayed, version) DO UPDATE SET n = rollout_group_counts.n + d;
$$;

CREATE FUNCTION rollout_group_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_in BOOLEAN := FALSE;
    new_in BOOLEAN := FALSE;
    os TEXT; od BIGINT; ov TEXT;
    ns TEXT; nd BIGINT; nv TEXT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_in := OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL;
        os := OLD.subscription;
        od := CASE WHEN OLD.delayed_update THEN 1 ELSE 0 END;
        ov := COALESCE(OLD.version, '');
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_in := NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL;
        ns := NEW.subscription;
        nd := CASE WHEN NEW.delayed_update THEN 1 ELSE 0 END;
        nv := COALESCE(NEW.version, '');
    END IF;
    IF old_in AND new_in AND os = ns AND od = nd AND ov = nv THEN
        RETURN NULL;
    END IF;
    -- Two cells: the lower key first, so concurrent writers lock them in one order.
    IF old_in AND (NOT new_in OR ROW(os, od, ov) < ROW(ns, nd, nv)) THEN
        PERFORM rollout_group_counts_add(os, od, ov, -1);
        old_in := FALSE;
    END IF;
    IF new_in THEN
        PERFORM rollout_group_counts_add(ns, nd, nv, 1);
    END IF;
    IF old_in THEN
        PERFORM rollout_group_counts_add(os, od, ov, -1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER rollout_group_counts_insert AFTER INSERT ON sensors
    FOR EACH ROW WHEN (NEW.mode = 'cloud_connected' AND NEW.activated_at IS NOT NULL AND NEW.decommissioned_at IS NULL)
    EXECUTE FUNCTION rollout_group_counts_track();
CREATE TRIGGER rollout_group_counts_delete AFTER DELETE ON sensors
    FOR EACH ROW WHEN (OLD.mode = 'cloud_connected' AND OLD.activated_at IS NOT NULL AND OLD.decommissioned_at IS NULL)
    EXECUTE FUNCTION rollout_group_counts_track();
-- Fires only when a group key or whether the sensor counts changes: a heartbeat rewrites
-- `version` with the same value (and `last_seen_at`), and then only the WHEN is evaluated.
CREATE TRIGGER rollout_group_counts_update
    AFTER UPDATE OF subscription, delayed_update, version, mode, activated_at, decommissioned_at ON sensors
    FOR EACH ROW WHEN (ROW(OLD.subscription, OLD.delayed_update, OLD.version, OLD.mode,
            OLD.activated_at IS NULL, OLD.decommissioned_at IS NULL)
        IS DISTINCT FROM ROW(NEW.subscription, NEW.delayed_update, NEW.version, NEW.mode,
            NEW.activated_at IS NULL, NEW.decommissioned_at IS NULL))
    EXECUTE FUNCTION rollout_group_counts_track();
