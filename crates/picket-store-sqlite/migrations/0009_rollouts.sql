-- Rollouts: one row per release that became current (locked while grants are decided, so
-- several replicas never exceed the concurrency), and the update grants given to sensors
-- (idempotent by update_id; state granted -> succeeded | failed).
CREATE TABLE rollouts (
    version TEXT PRIMARY KEY,
    version_key INTEGER NOT NULL UNIQUE,
    started_at INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE update_grants (
    update_id TEXT PRIMARY KEY,
    rollout_version TEXT NOT NULL REFERENCES rollouts (version),
    sensor_id TEXT NOT NULL,
    version TEXT NOT NULL,
    action TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    granted_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    state TEXT NOT NULL,
    finished_at INTEGER,
    error TEXT
);
CREATE INDEX update_grants_sensor ON update_grants (sensor_id, state);
CREATE INDEX update_grants_rollout ON update_grants (rollout_version, state);
