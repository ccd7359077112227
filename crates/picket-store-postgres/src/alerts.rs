//! PostgreSQL implementation of `AlertStore`, with the SQL shared in `picket_store::alerts::sql`.
//! An upload is one transaction: each alert is an `INSERT ... ON CONFLICT DO NOTHING` (a
//! concurrent upload of the same alert waits on the primary key and then stores nothing), and
//! each row it stored gets its outbox row.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::alerts::{self, AlertFilter, AlertInsert, AlertQuery, AlertStore, NewAlert, StoredAlert, sql};
use picket_store::sql::{Columns, Value};
use picket_store::{Scope, SensorRow, StoreResult};

use crate::{Cols, PgStore, bind, db_err, dynamic};

fn values(q: &picket_store::query::SqlQuery) -> Vec<Value> {
    q.params.iter().cloned().map(Value::from).collect()
}

#[async_trait]
impl AlertStore for PgStore {
    async fn insert_alerts(
        &self,
        sensor: &SensorRow,
        batch: &[NewAlert],
        received_at: Timestamp,
    ) -> StoreResult<AlertInsert> {
        let mut tx = self.write().await?;
        let mut out = AlertInsert::default();
        // In id order, so concurrent uploads of overlapping batches take row locks in one
        // order and never deadlock.
        let mut ordered: Vec<&NewAlert> = batch.iter().collect();
        ordered.sort_by(|a, b| a.id.cmp(&b.id));
        for a in ordered {
            let row = alerts::stored(sensor, a, received_at);
            let done = bind(sqlx::query(sql::INSERT_ALERT), sql::alert_values(&row))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if done.rows_affected() == 0 {
                out.duplicates += 1;
                continue;
            }
            out.accepted += 1;
            sqlx::query(sql::INSERT_OUTBOX)
                .bind(received_at.0)
                .bind(alerts::ALERT_RAISED)
                .bind(alerts::outbox_payload(&row, sensor))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Vec<StoredAlert>> {
        let q = sql::list_sql(query);
        let rows =
            bind(dynamic(q.sql.clone()), values(&q)).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_alert(&Cols(r))).collect()
    }

    async fn count_alerts(&self, scope: &Scope, filter: &AlertFilter) -> StoreResult<u64> {
        let q = sql::count_sql(scope, filter);
        let row = bind(dynamic(q.sql.clone()), values(&q)).fetch_one(&mut *self.read().await?).await.map_err(db_err)?;
        let n = Cols(&row).int("n")?;
        u64::try_from(n).map_err(|_| picket_store::StoreError::Corrupt(format!("negative count {n}")))
    }
}
