-- Detection alerts uploaded by cloud-connected sensors (issue 6). One row per (sensor_id, id):
-- the sensor makes the id, so a retried or repeated upload stores nothing new
-- (INSERT ... ON CONFLICT DO NOTHING). Each newly stored alert writes its `alert.raised`
-- notification_outbox row in the same transaction. The sensor's name and subscription are
-- copied as they were when the alert was stored; there is no foreign key to sensors, so an
-- alert (evidence) outlives its sensor's record. Lists are newest first by `time`.
-- Append-only: never edit a landed file.
CREATE TABLE alerts (
    sensor_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    sensor_name TEXT NOT NULL,
    subscription TEXT COLLATE "C" NOT NULL,
    -- when the event matched, ms since the epoch (sensor clock)
    time BIGINT NOT NULL,
    indicator_type TEXT NOT NULL,
    indicator_value TEXT NOT NULL,
    severity TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    description TEXT,
    ti_version BIGINT,
    -- when the control plane stored it
    received_at BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, id)
);
CREATE INDEX alerts_newest ON alerts (time, sensor_id, id);
CREATE INDEX alerts_sensor_newest ON alerts (sensor_id, time);
CREATE INDEX alerts_severity_newest ON alerts (severity, time);
