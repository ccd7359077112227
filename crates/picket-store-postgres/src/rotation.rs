//! `CertRotationStore` on PostgreSQL: a proposal is checked and written in one transaction;
//! two sensors racing to propose the same certificate meet the unique index on the pending
//! fingerprint (one gets `CertificateInUse`); the confirm is one conditional `UPDATE`.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::rotation::{CertState, RotationError, sql as rsql};
use picket_store::sql::{self, Columns};
use picket_store::{Audit, CertRotationStore, SensorRow, StoreResult};
use sqlx::postgres::PgConnection;

use super::{Cols, PgStore, audit, db_err, dynamic};

async fn load_state(conn: &mut PgConnection, id: &str) -> StoreResult<Option<CertState>> {
    let row = dynamic(rsql::cert_state_sql()).bind(id.to_string()).fetch_optional(conn).await.map_err(db_err)?;
    row.map(|r| rsql::decode_cert_state(&Cols(&r))).transpose()
}

async fn id_where(conn: &mut PgConnection, statement: &'static str, fp: &str) -> StoreResult<Option<String>> {
    let row = sqlx::query(statement).bind(fp.to_string()).fetch_optional(conn).await.map_err(db_err)?;
    row.map(|r| Cols(&r).text("id")).transpose()
}

#[async_trait]
impl CertRotationStore for PgStore {
    async fn propose_certificate(
        &self,
        current: &str,
        pending: &str,
        pending_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<CertState, RotationError> {
        let mut tx = self.write().await?;
        let Some(before) = id_where(&mut tx, rsql::PINNED_BY, current).await? else {
            return Err(RotationError::UnknownCertificate);
        };
        let before = load_state(&mut tx, &before).await?.ok_or(RotationError::UnknownCertificate)?;
        let used_by = id_where(&mut tx, rsql::FINGERPRINT_USED, pending).await?;
        rsql::check_proposal(
            &before.sensor_id,
            current,
            pending,
            before.pending_fingerprint.as_deref(),
            used_by.as_deref(),
        )?;
        sqlx::query(rsql::PROPOSE)
            .bind(before.sensor_id.clone())
            .bind(current.to_string())
            .bind(pending.to_string())
            .bind(pending_expires_at.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| rsql::conflict(db_err(e)))?;
        let after = load_state(&mut tx, &before.sensor_id).await?.ok_or(RotationError::UnknownCertificate)?;
        let id = before.sensor_id.clone();
        let a = Audit { actor: format!("sensor:{id}"), action: "sensor.cert_propose".to_string(), at: now };
        audit(&mut tx, sql::audit_values(&a, "sensor", &id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn sensor_by_pending_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<SensorRow>> {
        let mut conn = self.read().await?;
        let Some(id) = id_where(&mut conn, rsql::PENDING_OF, fingerprint).await? else {
            return Ok(None);
        };
        super::load_sensor(&mut conn, &id).await
    }

    async fn confirm_certificate(&self, pending: &str, now: Timestamp) -> Result<CertState, RotationError> {
        let mut tx = self.write().await?;
        let Some(id) = id_where(&mut tx, rsql::PENDING_OF, pending).await? else {
            return Err(RotationError::NotProposed);
        };
        let before = load_state(&mut tx, &id).await?.ok_or(RotationError::NotProposed)?;
        let done = sqlx::query(rsql::CONFIRM)
            .bind(id.clone())
            .bind(pending.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| rsql::conflict(db_err(e)))?;
        if done.rows_affected() != 1 {
            return Err(RotationError::NotProposed);
        }
        let after = load_state(&mut tx, &id).await?.ok_or(RotationError::NotProposed)?;
        let a = Audit { actor: format!("sensor:{id}"), action: "sensor.cert_confirm".to_string(), at: now };
        audit(&mut tx, sql::audit_values(&a, "sensor", &id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn record_cert_expiry(&self, sensor_id: &str, fingerprint: &str, expires_at: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(rsql::RECORD_EXPIRY)
            .bind(sensor_id.to_string())
            .bind(fingerprint.to_string())
            .bind(expires_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn cert_state(&self, sensor_id: &str) -> StoreResult<Option<CertState>> {
        load_state(&mut *self.read().await?, sensor_id).await
    }

    async fn certs_expiring_before(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<CertState>> {
        let rows = dynamic(rsql::expiring_sql())
            .bind(before.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| rsql::decode_cert_state(&Cols(r))).collect()
    }
}
