-- Rollouts: one row per release that became current (locked while grants are decided, so
-- several replicas never exceed the concurrency), and the update grants given to sensors
-- (idempotent by update_id; state granted -> succeeded | failed).
CREATE TABLE rollouts (
    version TEXT COLLATE "C" PRIMARY KEY,
    version_key BIGINT NOT NULL UNIQUE,
    started_at BIGINT NOT NULL,
    paused BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE update_grants (
    update_id TEXT COLLATE "C" PRIMARY KEY,
    rollout_version TEXT COLLATE "C" NOT NULL REFERENCES rollouts (version),
    sensor_id TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    granted_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    finished_at BIGINT,
    error TEXT
);
CREATE INDEX update_grants_sensor ON update_grants (sensor_id, state);
CREATE INDEX update_grants_rollout ON update_grants (rollout_version, state);
