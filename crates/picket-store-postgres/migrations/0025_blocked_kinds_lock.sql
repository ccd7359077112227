-- `blocked_kinds` (migration 0023) could keep a bit of an issue closed concurrently: when two
-- transactions change issues of one sensor, the second trigger's UPDATE waits for the first's
-- row lock and then re-checks the row, but `blocked_kinds_of` (STABLE) still reads with the
-- snapshot taken before the wait, without the first transaction's change. A bit left set keeps
-- the sensor out of its kind's partial index, so no issue of that kind would open again.
-- The trigger now locks the sensor row(s) first, in id order; its UPDATE, a later statement,
-- then reads a snapshot taken after the lock. SQLite needs no counterpart: its single writer
-- runs the transactions one after the other (no 0025 there). Append-only: never edit a landed file.
CREATE OR REPLACE FUNCTION blocked_kinds_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM sensors WHERE id = NEW.sensor_id FOR UPDATE;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM sensors WHERE id = OLD.sensor_id FOR UPDATE;
    ELSE
        PERFORM 1 FROM sensors WHERE id IN (OLD.sensor_id, NEW.sensor_id) ORDER BY id FOR UPDATE;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        UPDATE sensors SET blocked_kinds = blocked_kinds_of(OLD.sensor_id)
        WHERE id = OLD.sensor_id AND blocked_kinds IS DISTINCT FROM blocked_kinds_of(OLD.sensor_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE sensors SET blocked_kinds = blocked_kinds_of(NEW.sensor_id)
        WHERE id = NEW.sensor_id AND blocked_kinds IS DISTINCT FROM blocked_kinds_of(NEW.sensor_id);
    END IF;
    RETURN NULL;
END;
$$;

-- Bits a lost update may already have left wrong.
UPDATE sensors SET blocked_kinds = blocked_kinds_of(id)
WHERE blocked_kinds <> 0 OR id IN (SELECT sensor_id FROM health_issues WHERE status = 'open' OR muted);
