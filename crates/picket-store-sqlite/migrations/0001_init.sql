-- Picket's first SQLite schema. Migrations are append-only: never edit a landed file.
-- Timestamps are unix milliseconds; booleans are 0/1; text compares as BINARY (byte order).

CREATE TABLE subscriptions (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
INSERT INTO subscriptions (name, description, created_at) VALUES ('default', 'The default subscription', 0);

CREATE TABLE zones (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
INSERT INTO zones (name, description, created_at) VALUES ('default', 'The default zone', 0);

CREATE TABLE sensors (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    sensor_type TEXT NOT NULL,
    domain TEXT NOT NULL,
    subscription TEXT NOT NULL REFERENCES subscriptions (name),
    site TEXT NOT NULL,
    zone TEXT NOT NULL REFERENCES zones (name),
    tags TEXT NOT NULL DEFAULT '[]',
    mode TEXT NOT NULL,
    auto_ti_updates INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    capture_setting TEXT,
    delayed_update INTEGER NOT NULL,
    service_status TEXT NOT NULL,
    version TEXT,
    version_key INTEGER,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    activated_at INTEGER,
    decommissioned_at INTEGER,
    service_started_at INTEGER,
    last_config_pull_at INTEGER,
    update_state TEXT NOT NULL,
    config_version_applied INTEGER NOT NULL,
    config_version_desired INTEGER NOT NULL,
    ti_version INTEGER,
    open_issues INTEGER NOT NULL,
    health_rank INTEGER NOT NULL,
    activation_token_hash TEXT UNIQUE,
    activation_expires_at INTEGER,
    cert_fingerprint TEXT UNIQUE
);

-- Each list sort is `ORDER BY <expr>, id`: an index on (expr, id) serves it with LIMIT.
CREATE INDEX sensors_created ON sensors (created_at, id);
CREATE INDEX sensors_last_seen ON sensors (last_seen_at);
CREATE INDEX sensors_last_seen_sort ON sensors (COALESCE(last_seen_at, -1), id);
CREATE INDEX sensors_subscription_name ON sensors (subscription, name_lower);
CREATE INDEX sensors_zone ON sensors (zone, id);
CREATE INDEX sensors_site ON sensors (site, id);
CREATE INDEX sensors_domain ON sensors (domain, id);
CREATE INDEX sensors_type ON sensors (sensor_type, id);
CREATE INDEX sensors_version_key ON sensors (version_key);
CREATE INDEX sensors_version_sort ON sensors (COALESCE(version_key, -1), id);
CREATE INDEX sensors_health ON sensors (health_rank, id);

CREATE TABLE sensor_tags (
    sensor_id TEXT NOT NULL REFERENCES sensors (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (sensor_id, tag)
);
CREATE INDEX sensor_tags_tag ON sensor_tags (tag, sensor_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    subscriptions TEXT,
    description TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    before TEXT,
    after TEXT
);

CREATE TABLE secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE releases (
    version TEXT PRIMARY KEY NOT NULL,
    version_key INTEGER NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
