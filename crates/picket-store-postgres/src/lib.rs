//! The PostgreSQL backend of the Picket store (the scale-out path): a connection pool shared
//! by any number of `picket serve` replicas, migrations run at connect (sqlx's migrator takes
//! an advisory lock, so replicas may start together), and rows changed by a use case locked
//! with `SELECT ... FOR UPDATE` inside its transaction.
//!
//! This crate must not be chosen anywhere but once at start: callers hold an
//! `Arc<dyn picket_store::Store>` and never name `PgStore` beyond that choice.

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

use std::time::Duration;

use async_trait::async_trait;
use picket_domain::{StatusContext, Timestamp, Version};
use picket_store::sql::{self, Columns, Value};
use picket_store::{
    ApiToken, Audit, AuditEntry, ListedSensor, NewSensor, Scope, SensorFilter, SensorPatch, SensorQuery, SensorRow,
    SortValue, Store, StoreError, StoreResult, Subscription, SummaryCounts, Zone, query, query::SortValueKind,
};
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections per replica.
const MAX_CONNECTIONS: u32 = 10;

/// A Picket store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

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
fn dynamic(sql: String) -> Query<'static> {
    sqlx::query(AssertSqlSafe(sql))
}

struct Cols<'a>(&'a PgRow);

impl Columns for Cols<'_> {
    fn text(&self, name: &str) -> StoreResult<String> {
        self.0.try_get(name).map_err(corrupt)
    }
    fn opt_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.0.try_get(name).map_err(corrupt)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        self.opt_int(name)?.ok_or_else(|| StoreError::Corrupt(format!("column {name} is NULL")))
    }
    /// BIGINT columns, and INTEGER ones from expressions like `CASE ... THEN 1` in shared SQL.
    fn opt_int(&self, name: &str) -> StoreResult<Option<i64>> {
        match self.0.try_get::<Option<i64>, _>(name) {
            Ok(v) => Ok(v),
            Err(sqlx::Error::ColumnDecode { .. }) => {
                let narrow: Option<i32> = self.0.try_get(name).map_err(corrupt)?;
                Ok(narrow.map(i64::from))
            }
            Err(e) => Err(corrupt(e)),
        }
    }
    fn boolean(&self, name: &str) -> StoreResult<bool> {
        self.0.try_get(name).map_err(corrupt)
    }
}

fn corrupt(e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl PgStore {
    /// Connects to `url` (`postgres://...`) and migrates the database.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(format!("migrating PostgreSQL: {e}")))?;
        tracing::debug!("connected to PostgreSQL store");
        Ok(PgStore { pool })
    }

    async fn write(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }

    async fn read(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(db_err)
    }
}

async fn audit(conn: &mut PgConnection, values: Vec<Value>) -> StoreResult<()> {
    bind(sqlx::query(sql::INSERT_AUDIT), values).execute(conn).await.map_err(db_err)?;
    Ok(())
}

async fn load_sensor(conn: &mut PgConnection, id: &str) -> StoreResult<Option<SensorRow>> {
    let row = dynamic(sql::select_sensor_sql()).bind(id.to_string()).fetch_optional(conn).await.map_err(db_err)?;
    row.map(|r| sql::decode_sensor(&Cols(&r))).transpose()
}

/// Loads a sensor for change, locking its row until the transaction ends.
async fn load_in_scope(conn: &mut PgConnection, id: &str, scope: &Scope) -> StoreResult<SensorRow> {
    let row = dynamic(format!("{} FOR UPDATE", sql::select_sensor_sql()))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    match row.map(|r| sql::decode_sensor(&Cols(&r))).transpose()? {
        Some(s) if scope.allows(&s.subscription) => Ok(s),
        _ => Err(StoreError::NotFound),
    }
}

async fn exists(conn: &mut PgConnection, statement: &'static str, name: &str) -> StoreResult<bool> {
    Ok(sqlx::query(statement).bind(name.to_string()).fetch_optional(conn).await.map_err(db_err)?.is_some())
}

/// Checks the references and the name of a sensor about to be written.
async fn check_sensor(conn: &mut PgConnection, s: &SensorRow, before: Option<&SensorRow>) -> StoreResult<()> {
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

async fn write_tags(conn: &mut PgConnection, pairs: Vec<(String, String)>) -> StoreResult<()> {
    for chunk in pairs.chunks(sql::TAG_BATCH_PAIRS) {
        let values = chunk.iter().flat_map(|(id, t)| [Value::Text(id.clone()), Value::Text(t.clone())]).collect();
        bind(dynamic(sql::insert_tags_sql(chunk.len())), values).execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

fn tag_pairs(s: &SensorRow) -> Vec<(String, String)> {
    sql::distinct_tags(&s.tags).into_iter().map(|t| (s.id.clone(), t)).collect()
}

async fn insert_sensors(conn: &mut PgConnection, rows: &[SensorRow]) -> StoreResult<()> {
    for chunk in rows.chunks(sql::IMPORT_BATCH_ROWS) {
        let values = chunk.iter().flat_map(sql::sensor_values).collect();
        bind(dynamic(sql::insert_sensors_sql(chunk.len())), values).execute(&mut *conn).await.map_err(db_err)?;
        write_tags(conn, chunk.iter().flat_map(tag_pairs).collect()).await?;
    }
    Ok(())
}

async fn update_row(conn: &mut PgConnection, before: &SensorRow, after: &SensorRow) -> StoreResult<()> {
    bind(dynamic(sql::update_sensor_sql()), sql::sensor_values(after)).execute(&mut *conn).await.map_err(|e| {
        match db_err(e) {
            // Another replica took the name between our check and this write.
            StoreError::Conflict(_) => sql::name_conflict(&after.name),
            e => e,
        }
    })?;
    if before.tags != after.tags {
        sqlx::query(sql::DELETE_SENSOR_TAGS).bind(after.id.clone()).execute(&mut *conn).await.map_err(db_err)?;
        write_tags(conn, tag_pairs(after)).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        let row = sqlx::query(AssertSqlSafe(format!("{} FOR UPDATE", sql::SELECT_TOKEN_BY_ID)))
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
        let built = query::list_sql(q);
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

    async fn count_sensors(&self, scope: &Scope, filter: &SensorFilter, ctx: &StatusContext) -> StoreResult<u64> {
        let built = query::fast_count_sql(scope, filter, ctx, query::NameSearch::Like);
        let values = built.params.into_iter().map(Value::from).collect();
        let row = bind(dynamic(built.sql), values).fetch_one(&mut *self.read().await?).await.map_err(db_err)?;
        let n: i64 = row.try_get("n").map_err(corrupt)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
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
