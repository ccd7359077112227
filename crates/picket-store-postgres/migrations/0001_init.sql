-- Picket's first PostgreSQL schema. Migrations are append-only: never edit a landed file.
-- Timestamps are BIGINT unix milliseconds. Every text column is COLLATE "C" so it sorts and
-- compares in byte order, exactly like SQLite's BINARY (list orders must agree across backends).

CREATE TABLE subscriptions (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
INSERT INTO subscriptions (name, description, created_at) VALUES ('default', 'The default subscription', 0);

CREATE TABLE zones (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
INSERT INTO zones (name, description, created_at) VALUES ('default', 'The default zone', 0);

CREATE TABLE sensors (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    name_lower TEXT COLLATE "C" NOT NULL UNIQUE,
    sensor_type TEXT COLLATE "C" NOT NULL,
    domain TEXT COLLATE "C" NOT NULL,
    subscription TEXT COLLATE "C" NOT NULL REFERENCES subscriptions (name),
    site TEXT COLLATE "C" NOT NULL,
    zone TEXT COLLATE "C" NOT NULL REFERENCES zones (name),
    tags TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    mode TEXT COLLATE "C" NOT NULL,
    auto_ti_updates BOOLEAN NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    capture_setting TEXT,
    delayed_update BOOLEAN NOT NULL,
    service_status TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C",
    version_key BIGINT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT,
    activated_at BIGINT,
    decommissioned_at BIGINT,
    service_started_at BIGINT,
    last_config_pull_at BIGINT,
    update_state TEXT COLLATE "C" NOT NULL,
    config_version_applied BIGINT NOT NULL,
    config_version_desired BIGINT NOT NULL,
    ti_version BIGINT,
    open_issues BIGINT NOT NULL,
    health_rank BIGINT NOT NULL,
    activation_token_hash TEXT COLLATE "C" UNIQUE,
    activation_expires_at BIGINT,
    cert_fingerprint TEXT COLLATE "C" UNIQUE
);

-- Each list sort is `ORDER BY <expr>, id`: an index on (expr, id) serves it with LIMIT.
CREATE INDEX sensors_created ON sensors (created_at, id);
CREATE INDEX sensors_last_seen ON sensors (last_seen_at);
CREATE INDEX sensors_last_seen_sort ON sensors ((COALESCE(last_seen_at, -1)), id);
CREATE INDEX sensors_subscription_name ON sensors (subscription, name_lower);
CREATE INDEX sensors_zone ON sensors (zone, id);
CREATE INDEX sensors_site ON sensors (site, id);
CREATE INDEX sensors_domain ON sensors (domain, id);
CREATE INDEX sensors_type ON sensors (sensor_type, id);
CREATE INDEX sensors_version_key ON sensors (version_key);
CREATE INDEX sensors_version_sort ON sensors ((COALESCE(version_key, -1)), id);
CREATE INDEX sensors_health ON sensors (health_rank, id);

CREATE TABLE sensor_tags (
    sensor_id TEXT COLLATE "C" NOT NULL REFERENCES sensors (id) ON DELETE CASCADE,
    tag TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (sensor_id, tag)
);
CREATE INDEX sensor_tags_tag ON sensor_tags (tag, sensor_id);

CREATE TABLE api_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    role TEXT NOT NULL,
    subscriptions TEXT,
    description TEXT NOT NULL DEFAULT '',
    secret_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    before TEXT,
    after TEXT
);

CREATE TABLE secrets (
    name TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE releases (
    version TEXT COLLATE "C" PRIMARY KEY,
    version_key BIGINT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
