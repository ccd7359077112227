//! SQLite implementation of `TiPackageStore`: TI package rows and chunks, and the `ti_stale`
//! queries, with the SQL shared in `picket_store::ti_packages::sql`. Publishers are serialised
//! by the write lock (`BEGIN IMMEDIATE`), so the "above the current version" check cannot race.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::Scope;
use picket_store::sql as common;
use picket_store::sql::Value;
use picket_store::ti_packages::{
    TiPackage, TiPackageStore, TiPublishError, TiStaleRule, TiStaleSensor, TiVersionCount, sql,
};
use picket_store::{Audit, StoreResult};
use sqlx::Row;

use crate::{Cols, SqliteStore, audit, bind, db_err, dynamic};

fn values(q: &picket_store::query::SqlQuery) -> Vec<Value> {
    q.params.iter().cloned().map(Value::from).collect()
}

#[async_trait]
impl TiPackageStore for SqliteStore {
    async fn publish_ti_package(&self, p: &TiPackage, bytes: &[u8], a: &Audit) -> Result<(), TiPublishError> {
        let mut tx = self.write().await?;
        let current: Option<i64> =
            sqlx::query_scalar(sql::SELECT_CURRENT_VERSION).fetch_one(&mut *tx).await.map_err(db_err)?;
        if let Some(current) = current
            && p.version <= current
        {
            return Err(TiPublishError::NotNewer { version: p.version, current });
        }
        sqlx::query(sql::INSERT_PACKAGE)
            .bind(p.version)
            .bind(p.created_at.0)
            .bind(p.sha256.clone())
            .bind(p.size as i64)
            .bind(p.manifest_json.clone())
            .bind(p.indicator_count as i64)
            .bind(p.signing_key_id.clone())
            .bind(p.published_by.clone())
            .bind(p.signed_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (seq, chunk) in sql::chunks(bytes) {
            sqlx::query(sql::INSERT_CHUNK)
                .bind(p.sha256.clone())
                .bind(seq)
                .bind(chunk.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        audit(&mut tx, common::audit_values(a, "ti_package", &p.version.to_string(), None, Some(p))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn list_ti_packages(&self) -> StoreResult<Vec<TiPackage>> {
        let rows = dynamic(sql::select_all()).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode(&Cols(r))).collect()
    }

    async fn current_ti_package(&self) -> StoreResult<Option<TiPackage>> {
        let row = dynamic(sql::select_current()).fetch_optional(&mut *self.read().await?).await.map_err(db_err)?;
        row.map(|r| sql::decode(&Cols(&r))).transpose()
    }

    async fn ti_package_by_version(&self, version: i64) -> StoreResult<Option<TiPackage>> {
        let row = dynamic(sql::select_by_version())
            .bind(version)
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode(&Cols(&r))).transpose()
    }

    async fn ti_package_by_sha256(&self, sha256: &str) -> StoreResult<Option<TiPackage>> {
        let row = dynamic(sql::select_by_sha256())
            .bind(sha256.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode(&Cols(&r))).transpose()
    }

    async fn ti_version_published_by(&self, at: Timestamp) -> StoreResult<Option<i64>> {
        sqlx::query_scalar(sql::SELECT_PUBLISHED_BY)
            .bind(at.0)
            .fetch_one(&mut *self.read().await?)
            .await
            .map_err(db_err)
    }

    async fn read_ti_package(&self, sha256: &str, offset: u64, len: usize) -> StoreResult<Vec<u8>> {
        let Some(p) = self.ti_package_by_sha256(sha256).await? else { return Ok(Vec::new()) };
        let Some((first, last)) = picket_store::releases::sql::chunk_span(p.size, offset, len) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(sql::SELECT_CHUNKS)
            .bind(sha256.to_string())
            .bind(first)
            .bind(last)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        let chunks = rows
            .iter()
            .map(|r| {
                Ok((r.try_get::<i64, _>("seq").map_err(db_err)?, r.try_get::<Vec<u8>, _>("data").map_err(db_err)?))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(picket_store::releases::sql::cut(chunks, offset, len))
    }

    async fn ti_stale_candidates(&self, rule: &TiStaleRule, limit: u32) -> StoreResult<Vec<TiStaleSensor>> {
        let q = sql::candidates_sql_with(rule, limit, picket_store::health::sql::IndexHints::IndexedBy);
        let rows =
            bind(dynamic(q.sql.clone()), values(&q)).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_stale(&Cols(r))).collect()
    }

    async fn ti_stale_ended(&self, rule: &TiStaleRule) -> StoreResult<Vec<String>> {
        let q = sql::unmute_sql(rule);
        let mut tx = self.write().await?;
        bind(dynamic(q.sql.clone()), values(&q)).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let q = sql::ended_sql(rule);
        let rows =
            bind(dynamic(q.sql.clone()), values(&q)).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>("sensor_id").map_err(db_err)).collect()
    }

    async fn sensors_by_ti_version(&self, scope: &Scope) -> StoreResult<Vec<TiVersionCount>> {
        let q = sql::sensors_by_version_sql(scope);
        let rows =
            bind(dynamic(q.sql.clone()), values(&q)).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        let counts = rows.iter().map(|r| sql::decode_version_count(&Cols(r))).collect::<StoreResult<Vec<_>>>()?;
        Ok(sql::sort_counts(counts))
    }
}
