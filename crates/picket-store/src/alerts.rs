//! Detection alerts in storage (`AlertStore`, migration 0011): the table `alerts`, one row per
//! (`sensor_id`, `id`) however often a sensor uploads it (the primary key, with
//! `ON CONFLICT DO NOTHING`, so retried and concurrent uploads store one), and the
//! `alert.raised` notification written to `notification_outbox` in the same transaction as
//! each newly stored alert, so forwarding (webhooks, syslog CEF) rides the delivery worker and
//! a crash can lose neither.
//!
//! Alerts keep the sensor's name and subscription as they were when stored (no foreign key:
//! an alert is evidence and outlives its sensor's record); lists are scoped by that
//! subscription, newest first (`time`, then `sensor_id`, then `id`, descending), keyset paged.

use async_trait::async_trait;
use picket_domain::{Severity, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::model::{Scope, SensorRow};
use crate::query::{SqlParam, SqlQuery};
use crate::sql::{Columns, Value};

/// The notification event of a newly stored alert.
pub const ALERT_RAISED: &str = "alert.raised";

/// An alert as a sensor sent it, already checked and normalized by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The sensor's alert id (the idempotency key with the sensor id).
    pub id: String,
    /// When the event matched (sensor clock).
    pub time: Timestamp,
    /// Indicator type: `ip`, `cidr`, `domain`, `sha256` or `pattern`.
    pub indicator_type: String,
    /// Indicator value.
    pub indicator_value: String,
    /// How bad.
    pub severity: Severity,
    /// The start of the raw event (already cut to its limit).
    pub excerpt: String,
    /// The indicator's description, if any.
    pub description: Option<String>,
    /// The TI version that matched, if the sensor said.
    pub ti_version: Option<i64>,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    /// The sensor's alert id.
    pub id: String,
    /// The sensor that raised it.
    pub sensor_id: String,
    /// Its name when the alert was stored.
    pub sensor_name: String,
    /// Its subscription when the alert was stored (the scope of the alert).
    pub subscription: String,
    /// When the event matched (sensor clock).
    pub time: Timestamp,
    /// Indicator type.
    pub indicator_type: String,
    /// Indicator value.
    pub indicator_value: String,
    /// How bad.
    pub severity: Severity,
    /// The start of the raw event.
    pub excerpt: String,
    /// The indicator's description, if any.
    pub description: Option<String>,
    /// The TI version that matched, if known.
    pub ti_version: Option<i64>,
    /// When the control plane stored it.
    pub received_at: Timestamp,
}

/// What one upload stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertInsert {
    /// Alerts stored by this call (each with its outbox row).
    pub accepted: u64,
    /// Alerts that were already stored (also repeats inside the batch).
    pub duplicates: u64,
}

/// Which alerts to list; each field is "any of these" (empty: any) and fields combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Sensors.
    pub sensor_id: Vec<String>,
    /// Severities.
    pub severity: Vec<Severity>,
    /// Only alerts whose `time` is at or after this.
    pub since: Option<Timestamp>,
}

/// Where a page of alerts ended (lists are newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertCursor {
    /// The last row's `time` (ms).
    pub time: i64,
    /// The last row's sensor.
    pub sensor_id: String,
    /// The last row's id.
    pub id: String,
}

impl AlertCursor {
    /// The opaque `next_cursor` text.
    pub fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a client's cursor back.
    pub fn decode(text: &str) -> Option<AlertCursor> {
        serde_json::from_slice(&hex::decode(text).ok()?).ok()
    }
}

/// A page request for alerts.
#[derive(Debug, Clone)]
pub struct AlertQuery {
    /// What the caller may see (by the alerts' subscriptions).
    pub scope: Scope,
    /// Filters.
    pub filter: AlertFilter,
    /// Start after this position.
    pub after: Option<AlertCursor>,
    /// Page size.
    pub limit: u32,
}

/// Alerts in storage. `Store` requires this trait, so every backend implements it.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Stores `sensor`'s alerts in one transaction: each (`sensor.id`, `id`) at most once
    /// ever; every newly stored one writes its `alert.raised` outbox row in that transaction.
    async fn insert_alerts(
        &self,
        sensor: &SensorRow,
        alerts: &[NewAlert],
        received_at: Timestamp,
    ) -> StoreResult<AlertInsert>;

    /// One page of alerts, newest first.
    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Vec<StoredAlert>>;

    /// How many alerts match.
    async fn count_alerts(&self, scope: &Scope, filter: &AlertFilter) -> StoreResult<u64>;
}

/// Shared SQL of the alert statements, `$N` dialect of both backends.
pub mod sql {
    use super::*;

    /// The columns an alert is read with.
    pub const ALERT_COLUMNS: &str = "sensor_id, id, sensor_name, subscription, time, indicator_type, \
indicator_value, severity, excerpt, description, ti_version, received_at";

    /// Stores an alert unless (`$1` sensor, `$2` id) is stored already.
    pub const INSERT_ALERT: &str = "INSERT INTO alerts (sensor_id, id, sensor_name, subscription, time, \
indicator_type, indicator_value, severity, excerpt, description, ti_version, received_at) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (sensor_id, id) DO NOTHING";

    /// Adds a notification to the outbox: `$1` created_at, `$2` event, `$3` payload.
    pub const INSERT_OUTBOX: &str = "INSERT INTO notification_outbox (created_at, event, payload) VALUES ($1, $2, $3)";

    /// The values of [`INSERT_ALERT`].
    pub fn alert_values(a: &StoredAlert) -> Vec<Value> {
        vec![
            Value::Text(a.sensor_id.clone()),
            Value::Text(a.id.clone()),
            Value::Text(a.sensor_name.clone()),
            Value::Text(a.subscription.clone()),
            Value::Int(a.time.0),
            Value::Text(a.indicator_type.clone()),
            Value::Text(a.indicator_value.clone()),
            Value::Text(a.severity.as_str().to_string()),
            Value::Text(a.excerpt.clone()),
            Value::OptText(a.description.clone()),
            Value::OptInt(a.ti_version),
            Value::Int(a.received_at.0),
        ]
    }

    fn where_clause(scope: &Scope, f: &AlertFilter, q: &mut SqlQuery) -> String {
        let mut parts = vec!["TRUE".to_string()];
        let mut any = |column: &str, values: Vec<String>, q: &mut SqlQuery| {
            if !values.is_empty() {
                let ph: Vec<String> = values.into_iter().map(|v| q.bind(SqlParam::Text(v))).collect();
                parts.push(format!("{column} IN ({})", ph.join(", ")));
            }
        };
        if let Scope::Subscriptions(subs) = scope {
            if subs.is_empty() {
                return "FALSE".to_string();
            }
            any("subscription", subs.clone(), q);
        }
        any("sensor_id", f.sensor_id.clone(), q);
        any("severity", f.severity.iter().map(|s| s.as_str().to_string()).collect(), q);
        if let Some(since) = f.since {
            parts.push(format!("time >= {}", q.bind(SqlParam::Int(since.0))));
        }
        parts.join(" AND ")
    }

    /// A page of alerts, newest first.
    pub fn list_sql(query: &AlertQuery) -> SqlQuery {
        let mut q = SqlQuery::default();
        let mut w = where_clause(&query.scope, &query.filter, &mut q);
        if let Some(c) = &query.after {
            let t0 = q.bind(SqlParam::Int(c.time));
            let t1 = q.bind(SqlParam::Int(c.time));
            let t2 = q.bind(SqlParam::Int(c.time));
            let s1 = q.bind(SqlParam::Text(c.sensor_id.clone()));
            let t3 = q.bind(SqlParam::Int(c.time));
            let s2 = q.bind(SqlParam::Text(c.sensor_id.clone()));
            let id = q.bind(SqlParam::Text(c.id.clone()));
            w = format!(
                "{w} AND time <= {t0} AND (time < {t1} OR (time = {t2} AND sensor_id < {s1}) \
OR (time = {t3} AND sensor_id = {s2} AND id < {id}))"
            );
        }
        let limit = q.bind(SqlParam::Int(i64::from(query.limit)));
        q.sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE {w} ORDER BY time DESC, sensor_id DESC, id DESC LIMIT {limit}"
        );
        q
    }

    /// How many alerts match.
    pub fn count_sql(scope: &Scope, f: &AlertFilter) -> SqlQuery {
        let mut q = SqlQuery::default();
        let w = where_clause(scope, f, &mut q);
        q.sql = format!("SELECT COUNT(*) AS n FROM alerts WHERE {w}");
        q
    }

    /// Reads an alert selected with [`ALERT_COLUMNS`].
    pub fn decode_alert(r: &impl Columns) -> StoreResult<StoredAlert> {
        let severity = r.text("severity")?;
        Ok(StoredAlert {
            id: r.text("id")?,
            sensor_id: r.text("sensor_id")?,
            sensor_name: r.text("sensor_name")?,
            subscription: r.text("subscription")?,
            time: Timestamp(r.int("time")?),
            indicator_type: r.text("indicator_type")?,
            indicator_value: r.text("indicator_value")?,
            severity: severity.parse().map_err(|e| StoreError::Corrupt(format!("column severity: {e}")))?,
            excerpt: r.text("excerpt")?,
            description: r.opt_text("description")?,
            ti_version: r.opt_int("ti_version")?,
            received_at: Timestamp(r.int("received_at")?),
        })
    }
}

/// The stored form of `alert`, raised by `sensor`, received at `received_at`.
pub fn stored(sensor: &SensorRow, alert: &NewAlert, received_at: Timestamp) -> StoredAlert {
    StoredAlert {
        id: alert.id.clone(),
        sensor_id: sensor.id.clone(),
        sensor_name: sensor.name.clone(),
        subscription: sensor.subscription.clone(),
        time: alert.time,
        indicator_type: alert.indicator_type.clone(),
        indicator_value: alert.indicator_value.clone(),
        severity: alert.severity,
        excerpt: alert.excerpt.clone(),
        description: alert.description.clone(),
        ti_version: alert.ti_version,
        received_at,
    }
}

/// The JSON document of an alert's outbox row (the delivery worker sends it to webhooks as is,
/// and maps it to CEF for syslog): `{"event": "alert.raised", "alert": {id, sensor_id,
/// sensor_name, time, indicator: {type, value}, severity, excerpt, description, ti_version,
/// received_at}, "sensor": {id, name, type, domain, site, zone, subscription}}`.
pub fn outbox_payload(alert: &StoredAlert, sensor: &SensorRow) -> String {
    let doc = serde_json::json!({
        "event": ALERT_RAISED,
        "alert": {
            "id": alert.id,
            "sensor_id": alert.sensor_id,
            "sensor_name": alert.sensor_name,
            "time": crate::health::rfc3339(alert.time),
            "indicator": {"type": alert.indicator_type, "value": alert.indicator_value},
            "severity": alert.severity.as_str(),
            "excerpt": alert.excerpt,
            "description": alert.description,
            "ti_version": alert.ti_version,
            "received_at": crate::health::rfc3339(alert.received_at),
        },
        "sensor": {
            "id": sensor.id,
            "name": sensor.name,
            "type": sensor.sensor_type.as_str(),
            "domain": sensor.domain,
            "site": sensor.site,
            "zone": sensor.zone,
            "subscription": sensor.subscription,
        },
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_line_up_and_cursors_round_trip() {
        let after = AlertCursor { time: 5, sensor_id: "s".into(), id: "a".into() };
        assert_eq!(AlertCursor::decode(&after.encode()), Some(after.clone()));
        assert_eq!(AlertCursor::decode("zz"), None);
        let filter = AlertFilter {
            sensor_id: vec!["a".into(), "b".into()],
            severity: vec![Severity::High],
            since: Some(Timestamp(1)),
        };
        let q = AlertQuery {
            scope: Scope::Subscriptions(vec!["default".into()]),
            filter: filter.clone(),
            after: Some(after),
            limit: 10,
        };
        for built in [sql::list_sql(&q), sql::count_sql(&q.scope, &filter)] {
            let n = built.params.len();
            assert!(
                built.sql.contains(&format!("${n}")) && !built.sql.contains(&format!("${}", n + 1)),
                "{}",
                built.sql
            );
        }
        let none = sql::count_sql(&Scope::Subscriptions(vec![]), &AlertFilter::default());
        assert!(none.sql.ends_with("WHERE FALSE"), "{}", none.sql);
    }
}
