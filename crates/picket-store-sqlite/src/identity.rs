//! `SensorIdentityStore` on SQLite: activation as one conditional `UPDATE` on the single
//! writer connection (`BEGIN IMMEDIATE`), so concurrent attempts queue and exactly one finds
//! the token unused; heartbeats of a whole batch in one transaction.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::identity::sql as isql;
use picket_store::sql::{self, Columns};
use picket_store::{ActivationError, Audit, Heartbeat, SensorIdentityStore, SensorRow, StoreError, StoreResult};

use super::{Cols, SqliteStore, audit, bind, db_err, dynamic, load_sensor};

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
        // One prepared UPDATE per sensor inside one transaction. Tried and measured worse: the
        // batch as one `UPDATE ... FROM json_each($1)` (45-47 against 36-40 µs of server CPU
        // per heartbeat, 10,000 sensors closed loop; BENCHMARKS.md): building and re-parsing
        // the JSON costs more than the per-statement round trips it saves.
        // The latest of a sensor's beats wins, as statements run in batch order.
        let mut tx = self.write().await?;
        for h in batch {
            bind(sqlx::query(isql::HEARTBEAT), isql::heartbeat_values(h)).execute(&mut *tx).await.map_err(db_err)?;
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
