-- The latest restart of a sensor's service by the updater's resource watchdog (as the sensor
-- relays it in its heartbeats, milliseconds since the epoch): recorded once per restart,
-- it opens a watchdog_restart health issue, which closes after a quiet period.
ALTER TABLE sensors ADD COLUMN watchdog_restart_at BIGINT;
