-- The status job's search for sensors to open health issues for, as index ranges instead of
-- a pass over every sensor each tick (issue 3: an idle server on a million sensors spent
-- seconds of CPU per tick). Append-only: never edit a landed file.
--
-- Each kind raised from facts is searched through an index its condition implies
-- (picket_store::health::sql::candidates_sql). `not_configured` had none: its rule is on the
-- type and capture setting, and `status_base` (7) misses the not-configured sensors whose
-- update failed or is in progress (5, 6), which the condition also covers. Few sensors at any
-- time; a heartbeat rewrites an entry only when it moves such a sensor between 5, 6 and 7.
CREATE INDEX sensors_not_configured ON sensors (status_base, id)
    WHERE sensor_type IN ('adfs', 'standalone') AND (capture_setting IS NULL OR TRIM(capture_setting) = '');
