//! `SensorExportStore` on PostgreSQL: keyset pages (its planner picks the index) on the
//! reader pool.

use async_trait::async_trait;
use picket_store::export::{ExportRow, SensorExportStore, decode_export_row, export_page_sql};
use picket_store::query::{NameSearch, SortValueKind};
use picket_store::sql::{Columns, Value};
use picket_store::{SensorQuery, SortValue, StoreResult};
use sqlx::Row;

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
}
