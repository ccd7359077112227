//! `SensorExportStore` on SQLite: keyset pages that always walk the sort column's index
//! (one pass over it for the whole export, however selective the filter), on the reader pool.

use async_trait::async_trait;
use picket_store::export::{ExportRow, SensorExportStore, decode_export_row, export_page_sql};
use picket_store::query::{NameSearch, SortValueKind};
use picket_store::sql::{Columns, Value};
use picket_store::{SensorQuery, SortValue, StoreResult};
use sqlx::Row;

use super::{Cols, SqliteStore, bind, corrupt, db_err, dynamic};

#[async_trait]
impl SensorExportStore for SqliteStore {
    async fn export_page(&self, q: &SensorQuery) -> StoreResult<Vec<ExportRow>> {
        let built = export_page_sql(q, true, NameSearch::Fts5Trigram);
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
