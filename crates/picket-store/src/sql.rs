//! What the two SQL backends share verbatim: statements in the `$N` dialect both SQLite and
//! PostgreSQL accept, the values a sensor is written with, how rows are read back, and the
//! messages of their errors. No driver type appears here: a backend adapts its row type to
//! [`Columns`] and binds [`Value`]s itself, so each backend stays plain sqlx code of its own.

use picket_domain::{HealthStatus, SensorStatus, Version};
use serde::Serialize;

use crate::error::{StoreError, StoreResult};
use crate::model::{ApiToken, Audit, AuditEntry, NewSensor, SensorPatch, SensorRow, Subscription, SummaryCounts, Zone};
use crate::query::{SENSOR_COLUMNS, SqlParam};
use picket_domain::{Mode, ServiceStatus, Timestamp, UpdateState};

/// A value bound to a `$N` placeholder, nullable ones typed so PostgreSQL knows their type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Text(String),
    /// Nullable text.
    OptText(Option<String>),
    /// Integer.
    Int(i64),
    /// Nullable integer.
    OptInt(Option<i64>),
    /// Boolean.
    Bool(bool),
}

impl From<SqlParam> for Value {
    fn from(p: SqlParam) -> Value {
        match p {
            SqlParam::Text(s) => Value::Text(s),
            SqlParam::Int(i) => Value::Int(i),
            SqlParam::Bool(b) => Value::Bool(b),
        }
    }
}

/// Read access to one result row by column name; each backend implements it for its row type.
pub trait Columns {
    /// A non-null text column.
    fn text(&self, name: &str) -> StoreResult<String>;
    /// A nullable text column.
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>>;
    /// A non-null integer column (any integer width).
    fn int(&self, name: &str) -> StoreResult<i64>;
    /// A nullable integer column.
    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>>;
    /// A non-null boolean column.
    fn boolean(&self, name: &str) -> StoreResult<bool>;
}

// ---- messages ----

/// The conflict of a duplicate sensor name.
pub fn name_conflict(name: &str) -> StoreError {
    StoreError::Conflict(format!("a sensor named {name} already exists"))
}

/// The error of an unknown zone.
pub fn unknown_zone(zone: &str) -> StoreError {
    StoreError::InvalidReference(format!("unknown zone \"{zone}\": create it first with `picket zones create {zone}`"))
}

/// The error of an unknown subscription.
pub fn unknown_subscription(s: &str) -> StoreError {
    StoreError::InvalidReference(format!(
        "unknown subscription \"{s}\": create it first with `picket subscriptions create {s}`"
    ))
}

/// The conflict of minting an activation token for a sensor that already used one.
pub fn already_activated(id: &str) -> StoreError {
    StoreError::Conflict(format!("sensor {id} is already activated; to reactivate it, delete it and onboard it again"))
}

/// The conflict of a duplicate zone, subscription or token.
pub fn exists(kind: &str, name: &str) -> StoreError {
    StoreError::Conflict(format!("a {kind} named {name} already exists"))
}

// ---- sensors ----

/// Rows per multi-row INSERT when importing: 31 values each stays below SQLite's 32766 and
/// PostgreSQL's 65535 parameters per statement.
pub const IMPORT_BATCH_ROWS: usize = 500;

/// Tag pairs per multi-row INSERT into `sensor_tags` (two values each).
pub const TAG_BATCH_PAIRS: usize = 5_000;

/// The columns a sensor is written with, in the order of [`sensor_values`].
pub fn sensor_write_columns() -> String {
    format!("{SENSOR_COLUMNS}, name_lower, version_key")
}

fn sensor_column_count() -> usize {
    sensor_write_columns().split(',').count()
}

fn placeholders(start: usize, n: usize) -> String {
    let ph: Vec<String> = (start..start + n).map(|i| format!("${i}")).collect();
    format!("({})", ph.join(", "))
}

/// `INSERT INTO sensors (...) VALUES (...), (...)` for `rows` rows.
pub fn insert_sensors_sql(rows: usize) -> String {
    let n = sensor_column_count();
    let values: Vec<String> = (0..rows).map(|r| placeholders(r * n + 1, n)).collect();
    format!("INSERT INTO sensors ({}) VALUES {}", sensor_write_columns(), values.join(", "))
}

/// `UPDATE sensors SET <every column but id> WHERE id = $1`, bound with [`sensor_values`].
pub fn update_sensor_sql() -> String {
    let cols = sensor_write_columns();
    let sets: Vec<String> = cols
        .split(',')
        .map(str::trim)
        .enumerate()
        .filter(|(_, c)| *c != "id")
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    format!("UPDATE sensors SET {} WHERE id = $1", sets.join(", "))
}

/// `SELECT <SENSOR_COLUMNS> FROM sensors WHERE id = $1`.
pub fn select_sensor_sql() -> String {
    format!("SELECT {SENSOR_COLUMNS} FROM sensors WHERE id = $1")
}

/// `INSERT INTO sensor_tags (sensor_id, tag) VALUES ...` for `pairs` pairs.
pub fn insert_tags_sql(pairs: usize) -> String {
    let values: Vec<String> = (0..pairs).map(|p| placeholders(p * 2 + 1, 2)).collect();
    format!("INSERT INTO sensor_tags (sensor_id, tag) VALUES {}", values.join(", "))
}

/// The lower-cased name kept unique in `name_lower`.
pub fn name_lower(name: &str) -> String {
    name.to_lowercase()
}

/// The `tags` column: a JSON array of the tags in their order.
pub fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".to_string())
}

/// The distinct tags of a sensor, for `sensor_tags`.
pub fn distinct_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// The values of one sensor in the order of [`sensor_write_columns`].
pub fn sensor_values(s: &SensorRow) -> Vec<Value> {
    let t = |ts: Option<Timestamp>| Value::OptInt(ts.map(|t| t.0));
    vec![
        Value::Text(s.id.clone()),
        Value::Text(s.name.clone()),
        Value::Text(s.sensor_type.as_str().to_string()),
        Value::Text(s.domain.clone()),
        Value::Text(s.subscription.clone()),
        Value::Text(s.site.clone()),
        Value::Text(s.zone.clone()),
        Value::Text(tags_json(&s.tags)),
        Value::Text(s.mode.as_str().to_string()),
        Value::Bool(s.auto_ti_updates),
        Value::Text(s.description.clone()),
        Value::OptText(s.capture_setting.clone()),
        Value::Bool(s.delayed_update),
        Value::Text(s.service_status.as_str().to_string()),
        Value::OptText(s.version.map(|v| v.to_string())),
        Value::Int(s.created_at.0),
        t(s.last_seen_at),
        t(s.activated_at),
        t(s.decommissioned_at),
        t(s.service_started_at),
        t(s.last_config_pull_at),
        Value::Text(s.update_state.as_str().to_string()),
        Value::Int(s.config_version_applied),
        Value::Int(s.config_version_desired),
        Value::OptInt(s.ti_version),
        Value::Int(s.open_issues),
        Value::Int(s.health_status.rank()),
        t(s.activation_expires_at),
        Value::OptText(s.cert_fingerprint.clone()),
        Value::Text(name_lower(&s.name)),
        Value::OptInt(s.version.map(|v| v.key())),
    ]
}

fn parse<T: std::str::FromStr>(column: &str, text: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// Reads a sensor selected with `SENSOR_COLUMNS`.
pub fn decode_sensor(r: &impl Columns) -> StoreResult<SensorRow> {
    let ts = |c: &str| -> StoreResult<Option<Timestamp>> { Ok(r.opt_int(c)?.map(Timestamp)) };
    let tags_text = r.text("tags")?;
    let tags: Vec<String> =
        serde_json::from_str(&tags_text).map_err(|e| StoreError::Corrupt(format!("column tags: {e}")))?;
    let version = match r.opt_text("version")? {
        Some(v) => Some(parse::<Version>("version", &v)?),
        None => None,
    };
    Ok(SensorRow {
        id: r.text("id")?,
        name: r.text("name")?,
        sensor_type: parse("sensor_type", &r.text("sensor_type")?)?,
        domain: r.text("domain")?,
        subscription: r.text("subscription")?,
        site: r.text("site")?,
        zone: r.text("zone")?,
        tags,
        mode: parse("mode", &r.text("mode")?)?,
        auto_ti_updates: r.boolean("auto_ti_updates")?,
        description: r.text("description")?,
        capture_setting: r.opt_text("capture_setting")?,
        delayed_update: r.boolean("delayed_update")?,
        service_status: parse("service_status", &r.text("service_status")?)?,
        version,
        created_at: Timestamp(r.int("created_at")?),
        last_seen_at: ts("last_seen_at")?,
        activated_at: ts("activated_at")?,
        decommissioned_at: ts("decommissioned_at")?,
        service_started_at: ts("service_started_at")?,
        last_config_pull_at: ts("last_config_pull_at")?,
        update_state: parse("update_state", &r.text("update_state")?)?,
        config_version_applied: r.int("config_version_applied")?,
        config_version_desired: r.int("config_version_desired")?,
        ti_version: r.opt_int("ti_version")?,
        open_issues: r.int("open_issues")?,
        health_status: HealthStatus::from_rank(r.int("health_rank")?),
        activation_expires_at: ts("activation_expires_at")?,
        cert_fingerprint: r.opt_text("cert_fingerprint")?,
    })
}

/// The record after a patch; a changed capture setting bumps the desired config version so
/// the sensor pulls it.
pub fn apply_patch(before: &SensorRow, p: &SensorPatch) -> SensorRow {
    let mut s = before.clone();
    if let Some(v) = &p.name {
        s.name = v.clone();
    }
    if let Some(v) = &p.site {
        s.site = v.clone();
    }
    if let Some(v) = &p.zone {
        s.zone = v.clone();
    }
    if let Some(v) = &p.tags {
        s.tags = v.clone();
    }
    if let Some(v) = &p.description {
        s.description = v.clone();
    }
    if let Some(v) = p.delayed_update {
        s.delayed_update = v;
    }
    if let Some(v) = p.auto_ti_updates {
        s.auto_ti_updates = v;
    }
    if let Some(v) = &p.capture_setting
        && *v != s.capture_setting
    {
        s.capture_setting = v.clone();
        s.config_version_desired += 1;
    }
    s
}

/// The record of a freshly onboarded sensor: not activated, never heard from, healthy,
/// configuration version 1 desired and none applied yet.
pub fn new_sensor_row(s: &NewSensor) -> SensorRow {
    SensorRow {
        id: s.id.clone(),
        name: s.name.clone(),
        sensor_type: s.sensor_type,
        domain: s.domain.clone(),
        subscription: s.subscription.clone(),
        site: s.site.clone(),
        zone: s.zone.clone(),
        tags: s.tags.clone(),
        mode: s.mode,
        auto_ti_updates: s.auto_ti_updates,
        description: s.description.clone(),
        capture_setting: s.capture_setting.clone(),
        delayed_update: s.delayed_update,
        service_status: ServiceStatus::Unknown,
        version: None,
        created_at: s.created_at,
        last_seen_at: None,
        activated_at: None,
        decommissioned_at: None,
        service_started_at: None,
        last_config_pull_at: None,
        update_state: UpdateState::Idle,
        config_version_applied: 0,
        config_version_desired: 1,
        ti_version: None,
        open_issues: 0,
        health_status: HealthStatus::Healthy,
        activation_expires_at: None,
        cert_fingerprint: None,
    }
}

/// `SELECT id FROM sensors WHERE name_lower = $1 AND id <> $2`: is the name taken by another?
pub const NAME_TAKEN: &str = "SELECT id FROM sensors WHERE name_lower = $1 AND id <> $2";
/// Removes a sensor.
pub const DELETE_SENSOR: &str = "DELETE FROM sensors WHERE id = $1";
/// Removes a sensor's tag rows.
pub const DELETE_SENSOR_TAGS: &str = "DELETE FROM sensor_tags WHERE sensor_id = $1";
/// Stores a new activation token hash and expiry.
pub const SET_ACTIVATION_TOKEN: &str =
    "UPDATE sensors SET activation_token_hash = $2, activation_expires_at = $3 WHERE id = $1";
/// Does a zone exist?
pub const ZONE_EXISTS: &str = "SELECT name FROM zones WHERE name = $1";
/// Does a subscription exist?
pub const SUBSCRIPTION_EXISTS: &str = "SELECT name FROM subscriptions WHERE name = $1";

/// Counts by derived status, health and mode, read from `summary_sql`'s groups.
pub fn summary_from_groups(groups: impl IntoIterator<Item = (i64, i64, String, i64)>) -> StoreResult<SummaryCounts> {
    let mut by_status: Vec<(SensorStatus, u64)> = SensorStatus::ALL.iter().map(|s| (*s, 0)).collect();
    let mut by_health: Vec<(HealthStatus, u64)> = HealthStatus::ALL.iter().map(|h| (*h, 0)).collect();
    let mut c = SummaryCounts::default();
    for (status_rank, health_rank, mode, n) in groups {
        let n = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))?;
        let status = usize::try_from(status_rank)
            .ok()
            .and_then(|i| SensorStatus::ALL.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("status rank {status_rank}")))?;
        if let Some(e) = by_status.iter_mut().find(|(s, _)| s == status) {
            e.1 += n;
        }
        let health = HealthStatus::from_rank(health_rank);
        if let Some(e) = by_health.iter_mut().find(|(h, _)| *h == health) {
            e.1 += n;
        }
        c.total += n;
        match parse::<Mode>("mode", &mode)? {
            Mode::CloudConnected => c.cloud_connected += n,
            Mode::LocallyManaged => c.locally_managed += n,
        }
    }
    c.by_sensor_status = by_status;
    c.by_health_status = by_health;
    Ok(c)
}

// ---- audit ----

/// Writes one audit entry.
pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, action, target_kind, target_id, before, after) \
VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// Audit entries older than `$1`, newest first, `$2` of them.
pub const SELECT_AUDIT: &str = "SELECT id, at, actor, action, target_kind, target_id, before, after FROM audit_log \
WHERE id < $1 ORDER BY id DESC LIMIT $2";

fn json_text<T: Serialize>(v: Option<&T>) -> StoreResult<Option<String>> {
    v.map(|v| serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))).transpose()
}

/// The values of [`INSERT_AUDIT`] for a change of a `kind` record `id`.
pub fn audit_values<T: Serialize>(
    a: &Audit,
    kind: &str,
    id: &str,
    before: Option<&T>,
    after: Option<&T>,
) -> StoreResult<Vec<Value>> {
    Ok(vec![
        Value::Int(a.at.0),
        Value::Text(a.actor.clone()),
        Value::Text(a.action.clone()),
        Value::Text(kind.to_string()),
        Value::Text(id.to_string()),
        Value::OptText(json_text(before)?),
        Value::OptText(json_text(after)?),
    ])
}

/// Reads a row of [`SELECT_AUDIT`].
pub fn decode_audit(r: &impl Columns) -> StoreResult<AuditEntry> {
    let json = |c: &str| -> StoreResult<Option<serde_json::Value>> {
        r.opt_text(c)?
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("column {c}: {e}"))))
            .transpose()
    };
    Ok(AuditEntry {
        id: r.int("id")?,
        at: Timestamp(r.int("at")?),
        actor: r.text("actor")?,
        action: r.text("action")?,
        target_kind: r.text("target_kind")?,
        target_id: r.text("target_id")?,
        before: json("before")?,
        after: json("after")?,
    })
}

// ---- tokens ----

/// Stores a token.
pub const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, role, subscriptions, description, secret_hash, created_at, revoked_at) \
VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// The unrevoked token with hash `$1`.
pub const SELECT_TOKEN_BY_HASH: &str = "SELECT id, role, subscriptions, description, secret_hash, created_at, revoked_at \
FROM api_tokens WHERE secret_hash = $1 AND revoked_at IS NULL";
/// The token with id `$1`.
pub const SELECT_TOKEN_BY_ID: &str = "SELECT id, role, subscriptions, description, secret_hash, created_at, revoked_at \
FROM api_tokens WHERE id = $1";
/// All tokens, oldest first.
pub const SELECT_TOKENS: &str = "SELECT id, role, subscriptions, description, secret_hash, created_at, revoked_at \
FROM api_tokens ORDER BY created_at, id";
/// Revokes token `$1` at `$2` unless already revoked.
pub const REVOKE_TOKEN: &str = "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

/// The values of [`INSERT_TOKEN`].
pub fn token_values(t: &ApiToken) -> StoreResult<Vec<Value>> {
    Ok(vec![
        Value::Text(t.id.clone()),
        Value::Text(t.role.as_str().to_string()),
        Value::OptText(json_text(t.subscriptions.as_ref())?),
        Value::Text(t.description.clone()),
        Value::Text(t.secret_hash.clone()),
        Value::Int(t.created_at.0),
        Value::OptInt(t.revoked_at.map(|t| t.0)),
    ])
}

/// Reads a token row.
pub fn decode_token(r: &impl Columns) -> StoreResult<ApiToken> {
    let subscriptions = r
        .opt_text("subscriptions")?
        .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("column subscriptions: {e}"))))
        .transpose()?;
    Ok(ApiToken {
        id: r.text("id")?,
        role: parse("role", &r.text("role")?)?,
        subscriptions,
        description: r.text("description")?,
        secret_hash: r.text("secret_hash")?,
        created_at: Timestamp(r.int("created_at")?),
        revoked_at: r.opt_int("revoked_at")?.map(Timestamp),
    })
}

// ---- zones, subscriptions, secrets, releases ----

/// Creates a zone unless the name exists (then no row is affected).
pub const INSERT_ZONE: &str =
    "INSERT INTO zones (name, description, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
/// All zones by name.
pub const SELECT_ZONES: &str = "SELECT name, description, created_at FROM zones ORDER BY name";
/// Creates a subscription unless the name exists (then no row is affected).
pub const INSERT_SUBSCRIPTION: &str =
    "INSERT INTO subscriptions (name, description, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
/// All subscriptions by name.
pub const SELECT_SUBSCRIPTIONS: &str = "SELECT name, description, created_at FROM subscriptions ORDER BY name";

/// Reads a zone row.
pub fn decode_zone(r: &impl Columns) -> StoreResult<Zone> {
    Ok(Zone { name: r.text("name")?, description: r.text("description")?, created_at: Timestamp(r.int("created_at")?) })
}

/// Reads a subscription row.
pub fn decode_subscription(r: &impl Columns) -> StoreResult<Subscription> {
    Ok(Subscription {
        name: r.text("name")?,
        description: r.text("description")?,
        created_at: Timestamp(r.int("created_at")?),
    })
}

/// Stores a secret unless one of that name exists.
pub const INSERT_SECRET: &str = "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
/// A secret's value.
pub const SELECT_SECRET: &str = "SELECT value FROM secrets WHERE name = $1";
/// Versions of all releases.
pub const SELECT_RELEASE_VERSIONS: &str = "SELECT version FROM releases ORDER BY version_key";

/// Parses a stored release version.
pub fn parse_version(text: &str) -> StoreResult<Version> {
    parse("version", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_placeholder_per_column() {
        let n = sensor_column_count();
        assert_eq!(n, 31);
        let sql = insert_sensors_sql(2);
        assert!(sql.contains(&format!("${}", 2 * n)) && !sql.contains(&format!("${}", 2 * n + 1)));
        let upd = update_sensor_sql();
        assert!(upd.contains(&format!("version_key = ${n}")) && !upd.contains("id = $1,"));
    }
}
