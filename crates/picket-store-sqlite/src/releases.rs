//! SQLite implementation of `ReleaseStore`: release rows and package chunks, with the SQL
//! shared in `picket_store::releases::sql`. Publishers are serialised by the write lock
//! (`BEGIN IMMEDIATE`), so the "above the current release" check cannot race.

use async_trait::async_trait;
use picket_domain::Version;
use picket_store::releases::{PACKAGE_CHUNK, PublishError, Release, ReleaseStore, sql};
use picket_store::sql as common;
use picket_store::{Audit, StoreError, StoreResult};
use sqlx::Row;

use crate::{Cols, SqliteStore, audit, db_err, dynamic};

#[async_trait]
impl ReleaseStore for SqliteStore {
    async fn publish_release(&self, r: &Release, package: &[u8], a: &Audit) -> Result<(), PublishError> {
        let mut tx = self.write().await?;
        let current: Option<String> =
            sqlx::query_scalar(sql::SELECT_CURRENT).fetch_optional(&mut *tx).await.map_err(db_err)?;
        if let Some(current) = current {
            let current: Version = current.parse().map_err(|e| StoreError::Corrupt(format!("column version: {e}")))?;
            if r.version <= current {
                return Err(PublishError::NotNewer { version: r.version, current });
            }
        }
        sqlx::query(sql::INSERT_RELEASE)
            .bind(r.version.to_string())
            .bind(r.version.key())
            .bind(r.created_at.0)
            .bind(r.sha256.clone())
            .bind(r.size as i64)
            .bind(r.manifest_json.clone())
            .bind(r.signing_key_id.clone())
            .bind(r.published_by.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (seq, chunk) in package.chunks(PACKAGE_CHUNK).enumerate() {
            sqlx::query(sql::INSERT_CHUNK)
                .bind(r.sha256.clone())
                .bind(seq as i64)
                .bind(chunk.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        audit(&mut tx, common::audit_values(a, "release", &r.version.to_string(), None, Some(r))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn list_releases(&self) -> StoreResult<Vec<Release>> {
        let rows = dynamic(sql::select_releases()).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_release(&Cols(r))).collect()
    }

    async fn release_by_sha256(&self, sha256: &str) -> StoreResult<Option<Release>> {
        let row = dynamic(sql::select_by_sha256())
            .bind(sha256.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_release(&Cols(&r))).transpose()
    }

    async fn read_package(&self, sha256: &str, offset: u64, len: usize) -> StoreResult<Vec<u8>> {
        let Some(release) = self.release_by_sha256(sha256).await? else { return Ok(Vec::new()) };
        let Some((first, last)) = sql::chunk_span(release.size, offset, len) else { return Ok(Vec::new()) };
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
        Ok(sql::cut(chunks, offset, len))
    }
}
