-- Health issues (issue 3). Raised and auto-closed by the status job, closed and reopened by
-- operators. The partial unique index makes a second open issue of one kind for one sensor
-- impossible, even with several replicas running the job at once. `muted` marks an issue an
-- operator closed while its condition persists: the job opens no new one until the condition
-- has ended. Deleting a sensor deletes its issues (ON DELETE CASCADE).
-- Append-only: never edit a landed file.
CREATE TABLE health_issues (
    id TEXT COLLATE "C" PRIMARY KEY,
    sensor_id TEXT COLLATE "C" NOT NULL REFERENCES sensors (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    -- 1 low, 2 medium, 3 high: the sensor's health_rank is the highest among its open issues
    severity_rank BIGINT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT,
    -- `system` (the condition ended) or the operator's principal
    closed_by TEXT,
    muted BOOLEAN NOT NULL DEFAULT FALSE,
    title TEXT NOT NULL,
    detail TEXT NOT NULL,
    recommendation TEXT NOT NULL
);
CREATE UNIQUE INDEX health_issues_one_open ON health_issues (sensor_id, kind) WHERE status = 'open';
CREATE INDEX health_issues_sensor ON health_issues (sensor_id, kind);
CREATE INDEX health_issues_newest ON health_issues (opened_at, id);
CREATE INDEX health_issues_open_kind ON health_issues (kind, id) WHERE status = 'open';
CREATE INDEX health_issues_muted ON health_issues (kind) WHERE muted;
