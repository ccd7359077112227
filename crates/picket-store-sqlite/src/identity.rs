//! `SensorIdentityStore` on SQLite: activation as one conditional `UPDATE` on the single
//! writer connection (`BEGIN IMMEDIATE`), so concurrent attempts queue and exactly one finds
//! the token unused; heartbeats of a whole batch in one transaction.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::identity::sql as isql;
use picket_store::sql::{self, Columns};
use picket_store::{ActivationError, Audit, Heartbeat, SensorIdentityStore, SensorRow, StoreError, StoreResult};

use super::{Cols, SqliteStore, audit, db_err, dynamic, load_sensor};

/// Heartbeats per statement: bounds the JSON text handed to SQLite (~200 bytes a row).
const HEARTBEAT_CHUNK: usize = 5_000;

/// A heartbeat batch as one statement (`$1`: [`heartbeats_json`]) instead of one `UPDATE`
/// per sensor: each statement is a round trip to sqlx's SQLite worker thread, which cost
/// more than the update itself. Same effect per row as `identity::sql::HEARTBEAT`.
const HEARTBEATS_FROM_JSON: &str = "UPDATE sensors SET \
last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < v.at THEN v.at ELSE last_seen_at END, \
service_status = v.service_status, version = v.version, version_key = v.version_key, \
config_version_applied = v.applied, ti_version = v.ti_version, service_started_at = v.started, \
rss_bytes = v.rss, cpu_permille = v.cpu \
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at, \
json_extract(value, '$[2]') AS service_status, json_extract(value, '$[3]') AS version, \
json_extract(value, '$[4]') AS version_key, json_extract(value, '$[5]') AS applied, \
json_extract(value, '$[6]') AS ti_version, json_extract(value, '$[7]') AS started, \
json_extract(value, '$[8]') AS rss, json_extract(value, '$[9]') AS cpu FROM json_each($1)) AS v \
WHERE sensors.id = v.id AND sensors.activated_at IS NOT NULL";

/// The rows of [`HEARTBEATS_FROM_JSON`]: one JSON array per heartbeat, in its column order.
fn heartbeats_json(batch: &[&Heartbeat]) -> String {
    let rows: Vec<serde_json::Value> = batch
        .iter()
        .map(|h| {
            serde_json::json!([
                h.sensor_id,
                h.at.0,
                h.service_status.as_str(),
                h.version.map(|v| v.to_string()),
                h.version.map(|v| v.key()),
                h.config_version_applied,
                h.ti_version,
                h.service_started_at.map(|t| t.0),
                h.rss_bytes,
                h.cpu_permille,
            ])
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

#[async_trait]
impl SensorIdentityStore for SqliteStore {
    async fn activate_sensor(
        &self,
        sensor_id: &str,
        token_hash: &str,
        cert_fingerprint: &str,
        now: Timestamp,
    ) -> Result<SensorRow, ActivationError> {
        let mut tx = self.write().await?;
        let before = load_sensor(&mut tx, sensor_id).await?;
        let done = sqlx::query(isql::ACTIVATE)
            .bind(sensor_id.to_string())
            .bind(token_hash.to_string())
            .bind(cert_fingerprint.to_string())
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| isql::activation_conflict(db_err(e)))?;
        if done.rows_affected() != 1 {
            let state = sqlx::query(isql::ACTIVATION_STATE)
                .bind(sensor_id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .map(|r| -> StoreResult<_> {
                    let c = Cols(&r);
                    Ok((
                        c.opt_text("activation_token_hash")?,
                        c.opt_int("activation_expires_at")?,
                        c.opt_int("activated_at")?,
                    ))
                })
                .transpose()?;
            return Err(isql::refusal(state, token_hash, now));
        }
        let after = load_sensor(&mut tx, sensor_id).await?.ok_or(ActivationError::Unknown)?;
        let a = Audit { actor: format!("sensor:{sensor_id}"), action: "sensor.activate".to_string(), at: now };
        audit(&mut tx, sql::audit_values(&a, "sensor", sensor_id, before.as_ref(), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn sensor_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<SensorRow>> {
        let row = dynamic(isql::select_by_fingerprint_sql())
            .bind(fingerprint.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_sensor(&Cols(&r))).transpose()
    }

    async fn sensors_by_fingerprints(&self, fingerprints: &[String]) -> StoreResult<Vec<SensorRow>> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(fingerprints).map_err(|e| StoreError::Backend(e.to_string()))?;
        let rows = dynamic(format!(
            "SELECT {} FROM sensors WHERE cert_fingerprint IN (SELECT value FROM json_each($1))",
            picket_store::query::SENSOR_COLUMNS
        ))
        .bind(list)
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_sensor(&Cols(r))).collect()
    }

    async fn record_heartbeats(&self, batch: &[Heartbeat]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // One sensor once (the latest of the batch wins, as the server's batcher keeps it).
        let mut latest: Vec<&Heartbeat> = Vec::with_capacity(batch.len());
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        for h in batch.iter().rev() {
            if seen.insert(h.sensor_id.as_str()) {
                latest.push(h);
            }
        }
        let mut tx = self.write().await?;
        for chunk in latest.chunks(HEARTBEAT_CHUNK) {
            sqlx::query(HEARTBEATS_FROM_JSON).bind(heartbeats_json(chunk)).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn record_config_pull(&self, sensor_id: &str, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(isql::CONFIG_PULL)
            .bind(sensor_id.to_string())
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}
