//! The sensor CSV export's read path: only the columns the CSV shows, the status rank derived
//! in SQL (`query::status_rank_expr`, the same expression the list filters and sorts on), no
//! `SensorRow` per sensor. The `SensorExportStore` trait, its row types and the SQL both
//! backends share.
//!
//! Two ways to read: `export_page` (keyset pages like the list's, owned rows) and
//! `export_stream`, what the CSV endpoint uses: one snapshot read on one read connection
//! (SQLite under WAL and PostgreSQL both keep it without blocking writers). PostgreSQL (and
//! SQLite for a name search) runs one ordered query ([`export_stream_sql`]) and borrows each
//! row's cells from the database row; SQLite otherwise reads keyset pages of a few thousand
//! sensors, each one JSON text, in one read transaction (its backend says why). Either way the
//! cells ([`ExportCells`]) go to the caller's [`ExportEncoder`] through an [`ExportChunker`]
//! into a reused chunk buffer. Memory stays bounded by a few chunks (and on SQLite a batch or
//! two) however large the fleet: the reading task waits while [`EXPORT_CHUNKS_IN_FLIGHT`]
//! chunks are queued and stops when the stream is dropped.

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use picket_domain::{HealthStatus, SensorStatus};
use tokio::sync::mpsc;

use crate::query::{NameSearch, SensorQuery, SortValue, SqlQuery};
use crate::sql::Columns;
use crate::{StoreError, StoreResult};

/// The columns an export page selects (before the status rank and the sort value).
pub const EXPORT_COLUMNS: &str = "id, name, sensor_type, domain, subscription, site, zone, tags, mode, service_status, \
version, delayed_update, health_rank, open_issues, created_at, last_seen_at";

/// One sensor as the CSV shows it; enumerations as their stored (contract) text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    /// Id (for the next page's cursor).
    pub id: String,
    /// Name.
    pub name: String,
    /// Type (`SensorType::as_str`).
    pub sensor_type: String,
    /// Domain.
    pub domain: String,
    /// Subscription.
    pub subscription: String,
    /// Site.
    pub site: String,
    /// Zone.
    pub zone: String,
    /// The tags column as stored: a JSON array of strings.
    pub tags_json: String,
    /// Mode (`Mode::as_str`).
    pub mode: String,
    /// Service status (`ServiceStatus::as_str`).
    pub service_status: String,
    /// Derived status at the export's `StatusContext`.
    pub sensor_status: SensorStatus,
    /// Version it runs.
    pub version: Option<String>,
    /// In the delayed ring.
    pub delayed_update: bool,
    /// Worst open issue.
    pub health_status: HealthStatus,
    /// Open issues.
    pub open_issues: i64,
    /// Onboarded at (unix ms).
    pub created_at: i64,
    /// Last contact (unix ms).
    pub last_seen_at: Option<i64>,
    /// Its value of the sort column (for the next page's cursor).
    pub sort_value: SortValue,
}

/// Reading export pages.
#[async_trait]
pub trait SensorExportStore {
    /// One page of the export of `query` (its scope, filter, sort, cursor and limit), with
    /// every sensor's status derived at `query.status`.
    async fn export_page(&self, query: &SensorQuery) -> StoreResult<Vec<ExportRow>>;

    /// The whole export of `query` (its scope, filter, sort and status context; its cursor
    /// and limit are ignored) in one ordered pass, every row given to `encoder`, as chunks
    /// of at least `chunk_bytes` bytes (the last one shorter). The reading runs on its own
    /// task and stops when the stream is dropped; an error ends the stream after its item.
    fn export_stream(&self, query: &SensorQuery, encoder: Box<dyn ExportEncoder>, chunk_bytes: usize) -> ExportChunks;
}

/// The chunks of an export stream (see [`SensorExportStore::export_stream`]).
pub type ExportChunks = BoxStream<'static, StoreResult<Vec<u8>>>;

/// Chunks an export's reading task may have queued before it waits for the consumer.
pub const EXPORT_CHUNKS_IN_FLIGHT: usize = 2;

/// One exported sensor's cells, borrowed from the database row being read; enumerations as
/// their stored (contract) text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExportCells<'a> {
    /// Name.
    pub name: &'a str,
    /// Type (`SensorType::as_str`).
    pub sensor_type: &'a str,
    /// Domain.
    pub domain: &'a str,
    /// Subscription.
    pub subscription: &'a str,
    /// Site.
    pub site: &'a str,
    /// Zone.
    pub zone: &'a str,
    /// The tags column as stored: a JSON array of strings.
    pub tags_json: &'a str,
    /// Mode (`Mode::as_str`).
    pub mode: &'a str,
    /// Service status (`ServiceStatus::as_str`).
    pub service_status: &'a str,
    /// Derived status at the export's `StatusContext`.
    pub sensor_status: SensorStatus,
    /// Version it runs.
    pub version: Option<&'a str>,
    /// In the delayed ring.
    pub delayed_update: bool,
    /// Worst open issue.
    pub health_status: HealthStatus,
    /// Open issues.
    pub open_issues: i64,
    /// Onboarded at (unix ms).
    pub created_at: i64,
    /// Last contact (unix ms).
    pub last_seen_at: Option<i64>,
}

impl ExportRow {
    /// This row's cells, borrowed.
    pub fn cells(&self) -> ExportCells<'_> {
        ExportCells {
            name: &self.name,
            sensor_type: &self.sensor_type,
            domain: &self.domain,
            subscription: &self.subscription,
            site: &self.site,
            zone: &self.zone,
            tags_json: &self.tags_json,
            mode: &self.mode,
            service_status: &self.service_status,
            sensor_status: self.sensor_status,
            version: self.version.as_deref(),
            delayed_update: self.delayed_update,
            health_status: self.health_status,
            open_issues: self.open_issues,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
        }
    }
}

/// Turns exported rows into bytes (the server's CSV writer); runs on the reading task.
pub trait ExportEncoder: Send + 'static {
    /// Appends `row` to `out`; an error (a corrupt cell) ends the export.
    fn encode(&mut self, row: &ExportCells<'_>, out: &mut Vec<u8>) -> Result<(), String>;
}

/// Positions of the columns in a row of [`export_stream_sql`] ([`EXPORT_COLUMNS`], then the
/// status rank), so backends read cells by index, not by name.
pub mod col {
    /// `name`.
    pub const NAME: usize = 1;
    /// `sensor_type`.
    pub const SENSOR_TYPE: usize = 2;
    /// `domain`.
    pub const DOMAIN: usize = 3;
    /// `subscription`.
    pub const SUBSCRIPTION: usize = 4;
    /// `site`.
    pub const SITE: usize = 5;
    /// `zone`.
    pub const ZONE: usize = 6;
    /// `tags`.
    pub const TAGS: usize = 7;
    /// `mode`.
    pub const MODE: usize = 8;
    /// `service_status`.
    pub const SERVICE_STATUS: usize = 9;
    /// `version`.
    pub const VERSION: usize = 10;
    /// `delayed_update`.
    pub const DELAYED_UPDATE: usize = 11;
    /// `health_rank`.
    pub const HEALTH_RANK: usize = 12;
    /// `open_issues`.
    pub const OPEN_ISSUES: usize = 13;
    /// `created_at`.
    pub const CREATED_AT: usize = 14;
    /// `last_seen_at`.
    pub const LAST_SEEN_AT: usize = 15;
    /// `status_rank`.
    pub const STATUS_RANK: usize = 16;
}

/// The status a `status_rank` column names.
pub fn status_from_rank(rank: i64) -> StoreResult<SensorStatus> {
    usize::try_from(rank)
        .ok()
        .and_then(|i| SensorStatus::ALL.get(i).copied())
        .ok_or_else(|| StoreError::Corrupt(format!("status rank {rank}")))
}

/// The query of a whole export: [`export_page_sql`] without a cursor and with no practical
/// limit (`u32::MAX` rows), so the database plans one ordered pass.
pub fn export_stream_sql(query: &SensorQuery, walk_sort_index: bool, search: NameSearch) -> SqlQuery {
    let all = SensorQuery { after: None, limit: u32::MAX, ..query.clone() };
    export_page_sql(&all, walk_sort_index, search)
}

/// The sending half of an export stream, held by its reading task.
pub type ExportSender = mpsc::Sender<StoreResult<Vec<u8>>>;

/// Starts an export's reading task (`read`, given the sending half; typically acquires a
/// connection and calls [`pump_export`]) on the runtime and returns the stream of its
/// chunks. An error `read` returns becomes the stream's last item.
pub fn spawn_export<F, Fut>(read: F) -> ExportChunks
where
    F: FnOnce(ExportSender) -> Fut,
    Fut: Future<Output = StoreResult<()>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
    let task = read(tx.clone());
    tokio::spawn(async move {
        if let Err(e) = task.await {
            let _ = tx.send(Err(e)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// Encodes an export's rows into chunks of about `chunk_bytes`: the buffer every backend's
/// reading task writes rows into and hands on when full.
pub struct ExportChunker {
    encoder: Box<dyn ExportEncoder>,
    buf: Vec<u8>,
    chunk_bytes: usize,
    capacity: usize,
}

impl ExportChunker {
    /// A chunker writing rows with `encoder` into chunks of at least `chunk_bytes` (min 1).
    pub fn new(encoder: Box<dyn ExportEncoder>, chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        let capacity = chunk_bytes + chunk_bytes / 8;
        Self { encoder, buf: Vec::with_capacity(capacity), chunk_bytes, capacity }
    }

    /// Encodes one row; returns the chunk once it is full (a fresh buffer takes its place).
    pub fn push(&mut self, cells: &ExportCells<'_>) -> StoreResult<Option<Vec<u8>>> {
        self.encoder.encode(cells, &mut self.buf).map_err(StoreError::Corrupt)?;
        if self.buf.len() < self.chunk_bytes {
            return Ok(None);
        }
        Ok(Some(std::mem::replace(&mut self.buf, Vec::with_capacity(self.capacity))))
    }

    /// The last, partly filled chunk (none when empty).
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then_some(self.buf)
    }
}

/// The reading task's loop for a backend that reads row by row: encodes each row of `rows`
/// (read into cells by `cells`) through an [`ExportChunker`] and sends every full chunk on
/// `tx`, then the rest. Returns early, without error, when the consumer has gone; the caller
/// sends an error on.
pub async fn pump_export<R, S, F>(
    rows: S,
    cells: F,
    encoder: Box<dyn ExportEncoder>,
    chunk_bytes: usize,
    tx: &ExportSender,
) -> StoreResult<()>
where
    S: Stream<Item = StoreResult<R>>,
    F: for<'r> Fn(&'r R) -> StoreResult<ExportCells<'r>>,
{
    let mut chunker = ExportChunker::new(encoder, chunk_bytes);
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.next().await {
        let row = row?;
        if let Some(full) = chunker.push(&cells(&row)?)?
            && tx.send(Ok(full)).await.is_err()
        {
            return Ok(());
        }
    }
    if let Some(rest) = chunker.finish() {
        let _ = tx.send(Ok(rest)).await;
    }
    Ok(())
}

/// The page query of an export: [`EXPORT_COLUMNS`], `status_rank` and `sort_value`.
/// `walk_sort_index`: SQLite's plan that walks the sort column's index (one pass over it for
/// the whole export, however selective the filter).
pub fn export_page_sql(query: &SensorQuery, walk_sort_index: bool, search: NameSearch) -> SqlQuery {
    crate::query::page_sql_columns(query, walk_sort_index, search, EXPORT_COLUMNS, true)
}

/// Reads a row of [`export_page_sql`]; `sort_value` is read by the backend (its type depends
/// on the sort key) and passed in.
pub fn decode_export_row(r: &impl Columns, sort_value: SortValue) -> StoreResult<ExportRow> {
    let sensor_status = status_from_rank(r.int("status_rank")?)?;
    Ok(ExportRow {
        id: r.text("id")?,
        name: r.text("name")?,
        sensor_type: r.text("sensor_type")?,
        domain: r.text("domain")?,
        subscription: r.text("subscription")?,
        site: r.text("site")?,
        zone: r.text("zone")?,
        tags_json: r.text("tags")?,
        mode: r.text("mode")?,
        service_status: r.text("service_status")?,
        sensor_status,
        version: r.opt_text("version")?,
        delayed_update: r.boolean("delayed_update")?,
        health_status: HealthStatus::from_rank(r.int("health_rank")?),
        open_issues: r.int("open_issues")?,
        created_at: r.int("created_at")?,
        last_seen_at: r.opt_int("last_seen_at")?,
        sort_value,
    })
}
