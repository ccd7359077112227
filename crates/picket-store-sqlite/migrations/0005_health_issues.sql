-- Health issues (issue 3). Raised and auto-closed by the status job, closed and reopened by
-- operators. The partial unique index makes a second open issue of one kind for one sensor
-- impossible, even with several replicas running the job at once. `muted` marks an issue an
-- operator closed while its condition persists: the job opens no new one until the condition
-- has ended. Deleting a sensor deletes its issues (ON DELETE CASCADE).
-- Append-only: never edit a landed file.
CREATE TABLE health_issues (
    id TEXT PRIMARY KEY NOT NULL,
    sensor_id TEXT NOT NULL REFERENCES sensors (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    -- 1 low, 2 medium, 3 high: the sensor's health_rank is the highest among its open issues
    severity_rank INTEGER NOT NULL,
    status TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    -- `system` (the condition ended) or the operator's principal
    closed_by TEXT,
    muted INTEGER NOT NULL DEFAULT 0,
    title TEXT NOT NULL,
    detail TEXT NOT NULL,
    recommendation TEXT NOT NULL
);
CREATE UNIQUE INDEX health_issues_one_open ON health_issues (sensor_id, kind) WHERE status = 'open';
CREATE INDEX health_issues_sensor ON health_issues (sensor_id, kind);
CREATE INDEX health_issues_newest ON health_issues (opened_at, id);
CREATE INDEX health_issues_open_kind ON health_issues (kind, id) WHERE status = 'open';
CREATE INDEX health_issues_muted ON health_issues (kind) WHERE muted;
