//! The SQLite backend of the Picket store (the embedded default): one file under the data
//! dir in WAL mode, one writer connection that takes the write lock up front
//! (`BEGIN IMMEDIATE`) beside a pool of readers, and migrations run at open.
//!
//! This crate must not be chosen anywhere but once at start: callers hold an
//! `Arc<dyn picket_store::Store>` and never name `SqliteStore` beyond that choice.

mod alerts;
mod export;
mod first_run;
mod health;
mod identity;
mod notify;
mod releases;
mod rollouts;
mod rotation;
mod ti_packages;
mod users;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use picket_domain::{StatusContext, Timestamp, Version};
use picket_store::sql::{self, Columns, Value};
use picket_store::{
    ApiToken, Audit, AuditEntry, ListedSensor, NewSensor, Scope, SensorFilter, SensorPatch, SensorQuery, SensorRow,
    SortValue, Store, StoreError, StoreResult, Subscription, SummaryCounts, Zone, query, query::SortValueKind,
};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How many connections serve reads at once (WAL lets them run beside the writer).
const READERS: u32 = 4;

/// From this many matching sensors on, a page walks the sort column's index.
const WALK_SORT_INDEX_FROM: u64 = 5_000;

/// A Picket store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that writes, so writers queue here instead of failing busy.
    writer: SqlitePool,
    /// Read-only connections.
    reader: SqlitePool,
    /// Sensors per batch of a streamed export (`export::EXPORT_BATCH_ROWS`).
    export_batch_rows: u32,
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return StoreError::Conflict(d.message().to_string());
        }
        if d.is_foreign_key_violation() {
            return StoreError::InvalidReference("unknown zone or subscription".to_string());
        }
    }
    StoreError::Backend(e.to_string())
}

fn bind(mut q: Query<'_>, values: Vec<Value>) -> Query<'_> {
    for v in values {
        q = match v {
            Value::Text(s) => q.bind(s),
            Value::OptText(s) => q.bind(s),
            Value::Int(i) => q.bind(i),
            Value::OptInt(i) => q.bind(i),
            Value::Bool(b) => q.bind(b),
        };
    }
    q
}

/// Builds a query from SQL text assembled from our own constants (never from input).
/// Whether `PRAGMA compile_options` lists `DEFAULT_MEMSTATUS=0`.
async fn memstatus_off(pool: &SqlitePool) -> StoreResult<bool> {
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options").fetch_all(pool).await.map_err(db_err)?;
    Ok(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"))
}

fn dynamic(sql: String) -> Query<'static> {
    sqlx::query(AssertSqlSafe(sql))
}

struct Cols<'a>(&'a SqliteRow);

impl Columns for Cols<'_> {
    fn text(&self, name: &str) -> StoreResult<String> {
        self.0.try_get(name).map_err(corrupt)
    }
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.0.try_get(name).map_err(corrupt)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        self.0.try_get(name).map_err(corrupt)
    }
    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>> {
        self.0.try_get(name).map_err(corrupt)
    }
    fn boolean(&self, name: &str) -> StoreResult<bool> {
        self.0.try_get(name).map_err(corrupt)
    }
}

fn corrupt(e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // SQLite's default page cache is 2 MB: with a million sensors and a dozen indexes
            // every insert then misses. Size caches for the hot index pages (negative = KiB),
            // not the whole file: the OS page cache holds the rest, and the caches are most of
            // the server's RSS (issue 2: a full export under 200 MB; BENCHMARKS.md).
            .pragma("cache_size", "-16384");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("cache_size", "-32768"))
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        MIGRATOR.run(&writer).await.map_err(|e| StoreError::Backend(format!("migrating {}: {e}", path.display())))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        // Give the query planner statistics (bounded work), or it picks a filter's index and
        // sorts hundreds of thousands of rows where walking the sort index would stop at 50.
        for pragma in ["PRAGMA analysis_limit = 1000", "PRAGMA optimize = 0x10002"] {
            sqlx::query(pragma).execute(&writer).await.map_err(db_err)?;
        }
        if !memstatus_off(&writer).await? {
            tracing::warn!(
                "this build's SQLite keeps memory statistics (one process-wide lock around each of its \
                 allocations): build Picket from its workspace, whose .cargo/config.toml sets \
                 LIBSQLITE3_FLAGS=-DSQLITE_DEFAULT_MEMSTATUS=0; exports and heartbeats run slower without it"
            );
        }
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore { writer, reader, export_batch_rows: export::EXPORT_BATCH_ROWS })
    }

    /// Whether the linked SQLite was built without memory statistics (`.cargo/config.toml`).
    pub async fn built_without_memstatus(&self) -> StoreResult<bool> {
        memstatus_off(&self.writer).await
    }

    /// The same store with streamed exports read `rows` sensors per batch (at least 1): tests
    /// use small batches to cross batch boundaries with a small fleet.
    pub fn with_export_batch_rows(mut self, rows: u32) -> Self {
        self.export_batch_rows = rows.max(1);
        self
    }

    async fn write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }

    async fn read(&self) -> StoreResult<sqlx::pool::PoolConnection<Sqlite>> {
        self.reader.acquire().await.map_err(db_err)
    }

    /// Runs a count built by `picket_store::query` (one row, column `n`).
    async fn fetch_count(&self, built: query::SqlQuery) -> StoreResult<u64> {
        let values = built.params.into_iter().map(Value::from).collect();
        let row = bind(dynamic(built.sql), values).fetch_one(&mut *self.read().await?).await.map_err(db_err)?;
        let n: i64 = row.try_get("n").map_err(corrupt)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
    }

    /// Runs a page query built by `picket_store::query` and decodes its rows.
    async fn fetch_page(&self, q: &SensorQuery, built: query::SqlQuery) -> StoreResult<Vec<ListedSensor>> {
        let values = built.params.into_iter().map(Value::from).collect();
        let rows = bind(dynamic(built.sql), values).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let sort_value = match q.sort.key.kind() {
                    SortValueKind::Text => SortValue::Text(r.try_get("sort_value").map_err(corrupt)?),
                    SortValueKind::Int => SortValue::Int(Cols(r).int("sort_value")?),
                };
                Ok(ListedSensor { row: sql::decode_sensor(&Cols(r))?, sort_value })
            })
            .collect()
    }
}

async fn audit(conn: &mut SqliteConnection, values: Vec<Value>) -> StoreResult<()> {
    bind(sqlx::query(sql::INSERT_AUDIT), values).execute(conn).await.map_err(db_err)?;
    Ok(())
}

async fn load_sensor(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<SensorRow>> {
    let row = dynamic(sql::select_sensor_sql()).bind(id.to_string()).fetch_optional(conn).await.map_err(db_err)?;
    row.map(|r| sql::decode_sensor(&Cols(&r))).transpose()
}

async fn load_in_scope(conn: &mut SqliteConnection, id: &str, scope: &Scope) -> StoreResult<SensorRow> {
    match load_sensor(conn, id).await? {
        Some(s) if scope.allows(&s.subscription) => Ok(s),
        _ => Err(StoreError::NotFound),
    }
}

async fn exists(conn: &mut SqliteConnection, statement: &'static str, name: &str) -> StoreResult<bool> {
    Ok(sqlx::query(statement).bind(name.to_string()).fetch_optional(conn).await.map_err(db_err)?.is_some())
}

/// Checks the references and the name of a sensor about to be written.
async fn check_sensor(conn: &mut SqliteConnection, s: &SensorRow, before: Option<&SensorRow>) -> StoreResult<()> {
    if before.is_none_or(|b| b.zone != s.zone) && !exists(conn, sql::ZONE_EXISTS, &s.zone).await? {
        return Err(sql::unknown_zone(&s.zone));
    }
    if before.is_none_or(|b| b.subscription != s.subscription)
        && !exists(conn, sql::SUBSCRIPTION_EXISTS, &s.subscription).await?
    {
        return Err(sql::unknown_subscription(&s.subscription));
    }
    let taken = sqlx::query(sql::NAME_TAKEN)
        .bind(sql::name_lower(&s.name))
        .bind(s.id.clone())
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    if taken.is_some() {
        return Err(sql::name_conflict(&s.name));
    }
    Ok(())
}

async fn write_tags(conn: &mut SqliteConnection, pairs: Vec<(String, String)>) -> StoreResult<()> {
    for chunk in pairs.chunks(sql::TAG_BATCH_PAIRS) {
        let values = chunk.iter().flat_map(|(id, t)| [Value::Text(id.clone()), Value::Text(t.clone())]).collect();
        bind(dynamic(sql::insert_tags_sql(chunk.len())), values).execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

fn tag_pairs(s: &SensorRow) -> Vec<(String, String)> {
    sql::distinct_tags(&s.tags).into_iter().map(|t| (s.id.clone(), t)).collect()
}

async fn insert_sensors(conn: &mut SqliteConnection, rows: &[SensorRow]) -> StoreResult<()> {
    for chunk in rows.chunks(sql::IMPORT_BATCH_ROWS) {
        let values = chunk.iter().flat_map(sql::sensor_values).collect();
        bind(dynamic(sql::insert_sensors_sql(chunk.len())), values).execute(&mut *conn).await.map_err(db_err)?;
        write_tags(conn, chunk.iter().flat_map(tag_pairs).collect()).await?;
    }
    Ok(())
}

async fn update_row(conn: &mut SqliteConnection, before: &SensorRow, after: &SensorRow) -> StoreResult<()> {
    bind(dynamic(sql::update_sensor_sql()), sql::sensor_values(after)).execute(&mut *conn).await.map_err(db_err)?;
    if before.tags != after.tags {
        sqlx::query(sql::DELETE_SENSOR_TAGS).bind(after.id.clone()).execute(&mut *conn).await.map_err(db_err)?;
        write_tags(conn, tag_pairs(after)).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&mut *self.read().await?).await.map_err(db_err)?;
        Ok(())
    }

    async fn get_or_init_secret(&self, name: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.write().await?;
        sqlx::query(sql::INSERT_SECRET)
            .bind(name.to_string())
            .bind(value.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let stored: String =
            sqlx::query_scalar(sql::SELECT_SECRET).bind(name.to_string()).fetch_one(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(stored)
    }

    async fn create_api_token(&self, token: &ApiToken, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        bind(sqlx::query(sql::INSERT_TOKEN), sql::token_values(token)?).execute(&mut *tx).await.map_err(db_err)?;
        audit(&mut tx, sql::audit_values(a, "token", &token.id, None, Some(token))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_api_token(&self, secret_hash: &str) -> StoreResult<Option<ApiToken>> {
        let row = sqlx::query(sql::SELECT_TOKEN_BY_HASH)
            .bind(secret_hash.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_token(&Cols(&r))).transpose()
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(sql::SELECT_TOKENS).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_token(&Cols(r))).collect()
    }

    async fn revoke_api_token(&self, id: &str, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sql::SELECT_TOKEN_BY_ID)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
        let before = sql::decode_token(&Cols(&row))?;
        if before.revoked_at.is_some() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(sql::REVOKE_TOKEN).bind(id.to_string()).bind(a.at.0).execute(&mut *tx).await.map_err(db_err)?;
        let after = ApiToken { revoked_at: Some(a.at), ..before.clone() };
        audit(&mut tx, sql::audit_values(a, "token", id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_subscriptions(&self, scope: &Scope) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query(sql::SELECT_SUBSCRIPTIONS).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        let all = rows.iter().map(|r| sql::decode_subscription(&Cols(r))).collect::<StoreResult<Vec<_>>>()?;
        Ok(all.into_iter().filter(|s| scope.allows(&s.name)).collect())
    }

    async fn create_subscription(&self, s: &Subscription, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql::INSERT_SUBSCRIPTION)
            .bind(s.name.clone())
            .bind(s.description.clone())
            .bind(s.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(sql::exists("subscription", &s.name));
        }
        audit(&mut tx, sql::audit_values(a, "subscription", &s.name, None, Some(s))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_zones(&self) -> StoreResult<Vec<Zone>> {
        let rows = sqlx::query(sql::SELECT_ZONES).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_zone(&Cols(r))).collect()
    }

    async fn create_zone(&self, z: &Zone, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql::INSERT_ZONE)
            .bind(z.name.clone())
            .bind(z.description.clone())
            .bind(z.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(sql::exists("zone", &z.name));
        }
        audit(&mut tx, sql::audit_values(a, "zone", &z.name, None, Some(z))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn create_sensor(&self, s: &NewSensor, a: &Audit) -> StoreResult<SensorRow> {
        let row = sql::new_sensor_row(s);
        let mut tx = self.write().await?;
        check_sensor(&mut tx, &row, None).await?;
        insert_sensors(&mut tx, std::slice::from_ref(&row)).await.map_err(|e| match e {
            StoreError::Conflict(_) => sql::name_conflict(&row.name),
            e => e,
        })?;
        audit(&mut tx, sql::audit_values(a, "sensor", &row.id, None, Some(&row))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(row)
    }

    async fn import_sensors(&self, rows: &[SensorRow]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        insert_sensors(&mut tx, rows).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_sensor(&self, id: &str, scope: &Scope) -> StoreResult<Option<SensorRow>> {
        let s = load_sensor(&mut *self.read().await?, id).await?;
        Ok(s.filter(|s| scope.allows(&s.subscription)))
    }

    async fn update_sensor(&self, id: &str, scope: &Scope, patch: &SensorPatch, a: &Audit) -> StoreResult<SensorRow> {
        let mut tx = self.write().await?;
        let before = load_in_scope(&mut tx, id, scope).await?;
        let after = sql::apply_patch(&before, patch);
        check_sensor(&mut tx, &after, Some(&before)).await?;
        update_row(&mut tx, &before, &after).await?;
        audit(&mut tx, sql::audit_values(a, "sensor", id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn delete_sensor(&self, id: &str, scope: &Scope, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let before = load_in_scope(&mut tx, id, scope).await?;
        sqlx::query(sql::DELETE_SENSOR_TAGS).bind(id.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query(sql::DELETE_SENSOR).bind(id.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        audit(&mut tx, sql::audit_values(a, "sensor", id, Some(&before), None)?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn decommission_sensor(&self, id: &str, scope: &Scope, a: &Audit) -> StoreResult<SensorRow> {
        let mut tx = self.write().await?;
        let before = load_in_scope(&mut tx, id, scope).await?;
        let after = SensorRow { decommissioned_at: before.decommissioned_at.or(Some(a.at)), ..before.clone() };
        update_row(&mut tx, &before, &after).await?;
        audit(&mut tx, sql::audit_values(a, "sensor", id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn set_activation_token(
        &self,
        id: &str,
        scope: &Scope,
        secret_hash: &str,
        expires_at: Timestamp,
        a: &Audit,
    ) -> StoreResult<SensorRow> {
        let mut tx = self.write().await?;
        let before = load_in_scope(&mut tx, id, scope).await?;
        if before.activated_at.is_some() {
            return Err(sql::already_activated(id));
        }
        sqlx::query(sql::SET_ACTIVATION_TOKEN)
            .bind(id.to_string())
            .bind(secret_hash.to_string())
            .bind(expires_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let after = SensorRow { activation_expires_at: Some(expires_at), ..before.clone() };
        audit(&mut tx, sql::audit_values(a, "sensor", id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn list_sensors(&self, q: &SensorQuery) -> StoreResult<Vec<ListedSensor>> {
        // No count from the caller: count just far enough to choose the plan.
        let built = query::capped_count_sql(
            &q.scope,
            &q.filter,
            &q.status,
            query::NameSearch::Fts5Trigram,
            WALK_SORT_INDEX_FROM,
        );
        let matches = self.fetch_count(built).await?;
        self.list_sensors_matching(q, matches).await
    }

    async fn list_sensors_matching(&self, q: &SensorQuery, matches: u64) -> StoreResult<Vec<ListedSensor>> {
        // Few matches: collecting them through the filter's index and sorting is cheapest.
        // Many: walk an index in sort order and stop after `limit` matches; the filter's own
        // `(column, sort, id)` index where there is one (a range of matches only), else the
        // sort column's index (~limit * rows / matches rows, if the matches are spread).
        let built = if matches < WALK_SORT_INDEX_FROM {
            query::list_sql_sqlite(q)
        } else if let Some(column) = query::sorted_filter_index(q) {
            query::list_sql_walking_filter_index(q, column)
        } else {
            query::list_sql_walking_sort_index(q)
        };
        self.fetch_page(q, built).await
    }

    async fn count_sensors(&self, scope: &Scope, filter: &SensorFilter, ctx: &StatusContext) -> StoreResult<u64> {
        self.fetch_count(query::fast_count_sql(scope, filter, ctx, query::NameSearch::Fts5Trigram)).await
    }

    async fn summary(&self, scope: &Scope, ctx: &StatusContext) -> StoreResult<SummaryCounts> {
        let built = query::summary_sql(scope, ctx);
        let values = built.params.into_iter().map(Value::from).collect();
        let rows = bind(dynamic(built.sql), values).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        let groups = rows
            .iter()
            .map(|r| {
                let c = Cols(r);
                Ok((c.int("status_rank")?, c.int("health_rank")?, c.text("mode")?, c.int("n")?))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        sql::summary_from_groups(groups)
    }

    async fn release_versions(&self) -> StoreResult<Vec<Version>> {
        let rows: Vec<String> = sqlx::query_scalar(sql::SELECT_RELEASE_VERSIONS)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|v| sql::parse_version(v)).collect()
    }

    async fn list_audit(&self, before_id: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(sql::SELECT_AUDIT)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_audit(&Cols(r))).collect()
    }
}
