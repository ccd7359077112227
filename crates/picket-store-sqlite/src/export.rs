//! `SensorExportStore` on SQLite: keyset pages that always walk the sort column's index
//! (one pass over it for the whole export, however selective the filter), on the reader pool;
//! the streamed export is the same walk in batches of a few thousand sensors, each batch one
//! JSON text built by SQLite, all in one read transaction (one snapshot under WAL).

use std::borrow::Cow;

use async_trait::async_trait;
use futures_util::StreamExt;
use picket_domain::HealthStatus;
use picket_store::export::{
    ExportCells, ExportChunker, ExportChunks, ExportEncoder, ExportRow, ExportSender, SensorExportStore, col,
    decode_export_row, export_page_sql, export_stream_sql, pump_export, spawn_export, status_from_rank,
};
use picket_store::query::{CursorPos, NameSearch, SortValueKind};
use picket_store::sql::{Columns, Value};
use picket_store::{SensorQuery, SortValue, StoreError, StoreResult};
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};

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

    fn export_stream(&self, q: &SensorQuery, encoder: Box<dyn ExportEncoder>, chunk_bytes: usize) -> ExportChunks {
        let reader = self.reader.clone();
        if q.filter.q.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            // A name search: every batch would run the trigram search again (a statement
            // cannot keep its matches), quadratic in the matches; one statement reads them once.
            let built = export_stream_sql(q, true, NameSearch::Fts5Trigram);
            let values: Vec<Value> = built.params.into_iter().map(Value::from).collect();
            return spawn_export(move |tx| async move {
                let mut conn = reader.acquire().await.map_err(db_err)?;
                let rows = bind(dynamic(built.sql), values).fetch(&mut *conn).map(|r| r.map_err(db_err));
                pump_export(rows, cells, encoder, chunk_bytes, &tx).await
            });
        }
        let query = SensorQuery { after: None, limit: self.export_batch_rows, ..q.clone() };
        spawn_export(move |tx| async move {
            let mut conn = reader.acquire().await.map_err(db_err)?;
            let mut chunker = ExportChunker::new(encoder, chunk_bytes);
            // One read transaction: every batch reads the snapshot of the first (WAL keeps it
            // without blocking the writer), so the export is one consistent moment.
            let mut txn = conn.begin().await.map_err(db_err)?;
            let finished = match query.sort.key.kind() {
                SortValueKind::Text => export_batches::<Cow<'_, str>>(&mut txn, query, &mut chunker, &tx).await?,
                SortValueKind::Int => export_batches::<i64>(&mut txn, query, &mut chunker, &tx).await?,
            };
            txn.rollback().await.map_err(db_err)?;
            if finished && let Some(rest) = chunker.finish() {
                let _ = tx.send(Ok(rest)).await;
            }
            Ok(())
        })
    }
}

/// Sensors per batch of the streamed export: one statement returns them all as one JSON text
/// (about 250 bytes a sensor), instead of a row (and a cross-thread hand-off of its values)
/// per sensor.
pub(crate) const EXPORT_BATCH_ROWS: u32 = 2048;

/// Reads `query` batch after batch (keyset pages of [`EXPORT_BATCH_ROWS`], each one row of
/// JSON) and encodes them, fetching the next batch while the current one is encoded.
/// `S` is the sort key's value type (`Cow<str>` or `i64`), for the next batch's cursor.
/// Returns false when the consumer went away.
async fn export_batches<S>(
    conn: &mut SqliteConnection,
    mut query: SensorQuery,
    chunker: &mut ExportChunker,
    tx: &ExportSender,
) -> StoreResult<bool>
where
    S: for<'de> Deserialize<'de> + SortJson,
{
    let mut batch = fetch_batch(conn, &query).await?;
    loop {
        let rows: Vec<BatchRow<'_, S>> =
            serde_json::from_str(&batch).map_err(|e| StoreError::Corrupt(format!("export batch: {e}")))?;
        let Some(last) = rows.last() else { return Ok(true) };
        let more = rows.len() >= query.limit as usize;
        query.after =
            Some(CursorPos { sort: String::new(), value: last.sort_value.to_sort_value(), id: last.id.to_string() });
        let next = async { if more { fetch_batch(conn, &query).await.map(Some) } else { Ok(None) } };
        let encode = async {
            for row in &rows {
                if let Some(full) = chunker.push(&row.cells()?)?
                    && tx.send(Ok(full)).await.is_err()
                {
                    return Ok(false);
                }
            }
            StoreResult::Ok(true)
        };
        let (next, consumer_here) = tokio::join!(next, encode);
        if !consumer_here? {
            return Ok(false);
        }
        match next? {
            Some(b) => batch = b,
            None => return Ok(true),
        }
    }
}

/// One batch of the export: the page `query` names as a JSON array of rows, each an array of
/// the export's columns, the status rank and the sort value ([`BatchRow`]).
async fn fetch_batch(conn: &mut SqliteConnection, query: &SensorQuery) -> StoreResult<String> {
    let built = export_page_sql(query, true, NameSearch::Fts5Trigram);
    // The page's own order, stated again for the aggregate (SQLite does not promise that an
    // aggregate sees a subquery's rows in its order): the next cursor is the last element.
    let dir = if query.sort.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT json_group_array(json_array(id, name, sensor_type, domain, subscription, site, zone, tags, mode, \
service_status, version, delayed_update, health_rank, open_issues, created_at, last_seen_at, status_rank, sort_value) \
ORDER BY sort_value {dir}, id {dir}) AS batch FROM ({})",
        built.sql
    );
    let values: Vec<Value> = built.params.into_iter().map(Value::from).collect();
    let row = bind(dynamic(sql), values).fetch_one(&mut *conn).await.map_err(db_err)?;
    row.try_get::<String, _>("batch").map_err(corrupt)
}

/// One sensor of an export batch, in `fetch_batch`'s column order; text borrowed from the
/// batch's JSON unless it had to be unescaped.
#[derive(Deserialize)]
struct BatchRow<'a, S> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    sensor_type: Cow<'a, str>,
    #[serde(borrow)]
    domain: Cow<'a, str>,
    #[serde(borrow)]
    subscription: Cow<'a, str>,
    #[serde(borrow)]
    site: Cow<'a, str>,
    #[serde(borrow)]
    zone: Cow<'a, str>,
    #[serde(borrow)]
    tags: Cow<'a, str>,
    #[serde(borrow)]
    mode: Cow<'a, str>,
    #[serde(borrow)]
    service_status: Cow<'a, str>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    delayed_update: i64,
    health_rank: i64,
    open_issues: i64,
    created_at: i64,
    last_seen_at: Option<i64>,
    status_rank: i64,
    sort_value: S,
}

impl<S> BatchRow<'_, S> {
    /// Its CSV cells.
    fn cells(&self) -> StoreResult<ExportCells<'_>> {
        Ok(ExportCells {
            name: &self.name,
            sensor_type: &self.sensor_type,
            domain: &self.domain,
            subscription: &self.subscription,
            site: &self.site,
            zone: &self.zone,
            tags_json: &self.tags,
            mode: &self.mode,
            service_status: &self.service_status,
            sensor_status: status_from_rank(self.status_rank)?,
            version: self.version.as_deref(),
            delayed_update: self.delayed_update != 0,
            health_status: HealthStatus::from_rank(self.health_rank),
            open_issues: self.open_issues,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
        })
    }
}

/// A sort value as an export batch carries it, turned into a cursor's.
trait SortJson {
    /// The cursor value.
    fn to_sort_value(&self) -> SortValue;
}

impl SortJson for Cow<'_, str> {
    fn to_sort_value(&self) -> SortValue {
        SortValue::Text(self.to_string())
    }
}

impl SortJson for i64 {
    fn to_sort_value(&self) -> SortValue {
        SortValue::Int(*self)
    }
}

/// A row of `export_stream_sql` (the name-search path), read by column position.
fn cells(r: &SqliteRow) -> StoreResult<ExportCells<'_>> {
    let text = |i: usize| r.try_get::<&str, _>(i).map_err(corrupt);
    let int = |i: usize| r.try_get::<i64, _>(i).map_err(corrupt);
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
