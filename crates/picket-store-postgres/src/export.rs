//! `SensorExportStore` on PostgreSQL: keyset pages (its planner picks the index) on the
//! reader pool; the streamed export is one statement whose rows arrive as they are read
//! (the socket's buffers bound what is in flight; one snapshot, no transaction needed).

use async_trait::async_trait;
use futures_util::StreamExt;
use picket_domain::HealthStatus;
use picket_store::export::{
    ExportCells, ExportChunks, ExportEncoder, ExportRow, SensorExportStore, col, decode_export_row, export_page_sql,
    export_stream_sql, pump_export, spawn_export, status_from_rank,
};
use picket_store::query::{NameSearch, SortValueKind};
use picket_store::sql::{Columns, Value};
use picket_store::{SensorQuery, SortValue, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Cols, PgStore, bind, corrupt, db_err, dynamic};

#[async_trait]
impl SensorExportStore for PgStore {
    async fn export_page(&self, q: &SensorQuery) -> StoreResult<Vec<ExportRow>> {
        let built = export_page_sql(q, false, NameSearch::Like);
        let values: Vec<Value> = built.params.into_iter().map(Value::from).collect();
        let rows = bind(dynamic(built.sql), values).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let sort_value = match q.sort.key.kind() {
                    SortValueKind::Text => SortValue::Text(r.try_get("sort_value").map_err(corrupt)?),
                    SortValueKind::Int => SortValue::Int(Cols(r).int("sort_value")?),
                };
                decode_export_row(&Cols(r), sort_value)
            })
            .collect()
    }

    fn export_stream(&self, q: &SensorQuery, encoder: Box<dyn ExportEncoder>, chunk_bytes: usize) -> ExportChunks {
        let built = export_stream_sql(q, false, NameSearch::Like);
        let values: Vec<Value> = built.params.into_iter().map(Value::from).collect();
        let pool = self.pool.clone();
        spawn_export(move |tx| async move {
            let mut conn = pool.acquire().await.map_err(db_err)?;
            let rows = bind(dynamic(built.sql), values).fetch(&mut *conn).map(|r| r.map_err(db_err));
            pump_export(rows, cells, encoder, chunk_bytes, &tx).await
        })
    }
}

/// A row of `export_stream_sql`, read by column position.
fn cells(r: &PgRow) -> StoreResult<ExportCells<'_>> {
    let text = |i: usize| r.try_get::<&str, _>(i).map_err(corrupt);
    // Every integer column is BIGINT; an INT (narrower) one would also do.
    let int = |i: usize| match r.try_get::<i64, _>(i) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnDecode { .. }) => r.try_get::<i32, _>(i).map(i64::from).map_err(corrupt),
        Err(e) => Err(corrupt(e)),
    };
    Ok(ExportCells {
        name: text(col::NAME)?,
        sensor_type: text(col::SENSOR_TYPE)?,
        domain: text(col::DOMAIN)?,
        subscription: text(col::SUBSCRIPTION)?,
        site: text(col::SITE)?,
        zone: text(col::ZONE)?,
        tags_json: text(col::TAGS)?,
        mode: text(col::MODE)?,
        service_status: text(col::SERVICE_STATUS)?,
        sensor_status: status_from_rank(int(col::STATUS_RANK)?)?,
        version: r.try_get::<Option<&str>, _>(col::VERSION).map_err(corrupt)?,
        delayed_update: r.try_get::<bool, _>(col::DELAYED_UPDATE).map_err(corrupt)?,
        health_status: HealthStatus::from_rank(int(col::HEALTH_RANK)?),
        open_issues: int(col::OPEN_ISSUES)?,
        created_at: int(col::CREATED_AT)?,
        last_seen_at: r.try_get::<Option<i64>, _>(col::LAST_SEEN_AT).map_err(corrupt)?,
    })
}
