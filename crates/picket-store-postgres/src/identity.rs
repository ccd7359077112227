//! `SensorIdentityStore` on PostgreSQL: activation as one conditional `UPDATE` whose `WHERE`
//! PostgreSQL re-checks after a concurrent winner commits, so exactly one attempt succeeds;
//! heartbeats of a whole batch in one transaction of two statements (rows locked in id order
//! so replicas flushing overlapping batches cannot deadlock, then one `UPDATE ... FROM unnest`).

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::identity::sql as isql;
use picket_store::sql::{self, Columns};
use picket_store::{ActivationError, Audit, Heartbeat, SensorIdentityStore, SensorRow, StoreResult};

use super::{Cols, PgStore, audit, db_err, dynamic, load_sensor};

/// Locks a batch's sensor rows in id order (`$1`: ids).
const LOCK_IN_ID_ORDER: &str = "SELECT id FROM sensors WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";

/// `identity::sql::HEARTBEAT` for a whole batch, one array per column (`$1` ids, `$2` times,
/// `$3` service statuses, `$4` versions, `$5` version keys, `$6` applied config versions,
/// `$7` TI versions, `$8` service starts, `$9` RSS, `$10` CPU per mille).
const HEARTBEATS_FROM_ARRAYS: &str = "UPDATE sensors AS s SET \
last_seen_at = CASE WHEN s.last_seen_at IS NULL OR s.last_seen_at < v.at THEN v.at ELSE s.last_seen_at END, \
service_status = v.service_status, version = v.version, version_key = v.version_key, \
config_version_applied = v.applied, ti_version = v.ti_version, service_started_at = v.started, \
rss_bytes = v.rss, cpu_permille = v.cpu \
FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], \
$9::int8[], $10::int8[]) AS v(id, at, service_status, version, version_key, applied, ti_version, started, rss, cpu) \
WHERE s.id = v.id COLLATE \"C\" AND s.activated_at IS NOT NULL";

#[async_trait]
impl SensorIdentityStore for PgStore {
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
        let rows = dynamic(format!(
            "SELECT {} FROM sensors WHERE cert_fingerprint = ANY($1::text[])",
            picket_store::query::SENSOR_COLUMNS
        ))
        .bind(fingerprints.to_vec())
        .fetch_all(&mut *self.read().await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_sensor(&Cols(r))).collect()
    }

    async fn record_heartbeats(&self, batch: &[Heartbeat]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // One sensor once, the latest of the batch winning: reversed, a stable sort by id
        // puts each sensor's latest beat first among its own, and `dedup_by` keeps the first.
        let mut sorted: Vec<&Heartbeat> = batch.iter().rev().collect();
        sorted.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
        sorted.dedup_by(|a, b| a.sensor_id == b.sensor_id);
        let ids: Vec<String> = sorted.iter().map(|h| h.sensor_id.clone()).collect();
        let mut tx = self.write().await?;
        // Two statements for the whole batch instead of one round trip per row: lock the rows
        // in id order (so replicas flushing overlapping batches cannot deadlock), then one
        // UPDATE joined to the batch as arrays.
        sqlx::query(LOCK_IN_ID_ORDER).bind(&ids).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query(HEARTBEATS_FROM_ARRAYS)
            .bind(&ids)
            .bind(sorted.iter().map(|h| h.at.0).collect::<Vec<i64>>())
            .bind(sorted.iter().map(|h| h.service_status.as_str().to_string()).collect::<Vec<String>>())
            .bind(sorted.iter().map(|h| h.version.map(|v| v.to_string())).collect::<Vec<Option<String>>>())
            .bind(sorted.iter().map(|h| h.version.map(|v| v.key())).collect::<Vec<Option<i64>>>())
            .bind(sorted.iter().map(|h| h.config_version_applied).collect::<Vec<i64>>())
            .bind(sorted.iter().map(|h| h.ti_version).collect::<Vec<Option<i64>>>())
            .bind(sorted.iter().map(|h| h.service_started_at.map(|t| t.0)).collect::<Vec<Option<i64>>>())
            .bind(sorted.iter().map(|h| h.rss_bytes).collect::<Vec<Option<i64>>>())
            .bind(sorted.iter().map(|h| h.cpu_permille).collect::<Vec<Option<i64>>>())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
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
