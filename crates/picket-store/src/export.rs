//! The sensor CSV export's read path: only the columns the CSV shows, the status rank derived
//! in SQL (`query::status_rank_expr`, the same expression the list filters and sorts on), no
//! `SensorRow` per sensor. The `SensorExportStore` trait, its row type and the SQL both
//! backends share. Pages are keyset pages like the list's, so memory stays bounded by one
//! page however large the fleet.

use async_trait::async_trait;
use picket_domain::{HealthStatus, SensorStatus};

use crate::StoreResult;
use crate::query::{NameSearch, SensorQuery, SortValue, SqlQuery};
use crate::sql::Columns;

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
    let rank = r.int("status_rank")?;
    let sensor_status = usize::try_from(rank)
        .ok()
        .and_then(|i| SensorStatus::ALL.get(i).copied())
        .ok_or_else(|| crate::StoreError::Corrupt(format!("status rank {rank}")))?;
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
