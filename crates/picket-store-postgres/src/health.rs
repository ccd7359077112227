//! `HealthIssueStore` on PostgreSQL: one transaction per issue so the outbox row and the
//! sensor's counts commit with it. Replicas running the status job at once race only on the
//! partial unique index (`ON CONFLICT DO NOTHING`: the second insert waits for the first and
//! then does nothing); operator changes lock the issue row (`FOR UPDATE`).

use async_trait::async_trait;
use picket_domain::issues::{HealthIssueKind, IssueStatus};
use picket_domain::{StatusContext, Timestamp};
use picket_store::health::{
    Candidate, EndedBatch, HealthIssue, HealthIssueFilter, HealthIssueQuery, HealthIssueStore, NewHealthIssue, events,
    outbox_payload, sql as hsql,
};
use picket_store::query::SqlQuery;
use picket_store::sql::{self, Columns, Value};
use picket_store::{Audit, Scope, SensorRow, StoreError, StoreResult};
use sqlx::AssertSqlSafe;
use sqlx::PgConnection;

use super::{Cols, PgStore, audit, bind, db_err, dynamic, load_sensor};

fn values(q: &SqlQuery) -> Vec<Value> {
    q.params.iter().cloned().map(Value::from).collect()
}

async fn load_issue(conn: &mut PgConnection, id: &str) -> StoreResult<Option<HealthIssue>> {
    let row = dynamic(hsql::select_issue_sql()).bind(id.to_string()).fetch_optional(conn).await.map_err(db_err)?;
    row.map(|r| hsql::decode_issue(&Cols(&r))).transpose()
}

/// Loads an issue for change (its row locked until the transaction ends) with its sensor.
async fn load_issue_in_scope(
    conn: &mut PgConnection,
    id: &str,
    scope: &Scope,
) -> StoreResult<(HealthIssue, SensorRow)> {
    let row = sqlx::query(AssertSqlSafe(format!("{} FOR UPDATE OF h", hsql::select_issue_sql())))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let issue = row.map(|r| hsql::decode_issue(&Cols(&r))).transpose()?.ok_or(StoreError::NotFound)?;
    match load_sensor(conn, &issue.sensor_id).await? {
        Some(s) if scope.allows(&s.subscription) => Ok((issue, s)),
        _ => Err(StoreError::NotFound),
    }
}

async fn recount(conn: &mut PgConnection, sensor_id: &str) -> StoreResult<()> {
    sqlx::query(hsql::RECOUNT).bind(sensor_id.to_string()).execute(conn).await.map_err(db_err)?;
    Ok(())
}

async fn notify(
    conn: &mut PgConnection,
    event: &str,
    issue: &HealthIssue,
    sensor: &SensorRow,
    at: Timestamp,
) -> StoreResult<()> {
    sqlx::query(hsql::INSERT_OUTBOX)
        .bind(at.0)
        .bind(event.to_string())
        .bind(outbox_payload(event, issue, sensor))
        .execute(conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

impl PgStore {
    async fn auto_close(&self, close: &SqlQuery, id: &str, at: Timestamp) -> StoreResult<Option<HealthIssue>> {
        let mut tx = self.write().await?;
        let mut vals = values(close);
        vals[0] = Value::Text(id.to_string());
        vals[1] = Value::Int(at.0);
        let done = bind(dynamic(close.sql.clone()), vals).execute(&mut *tx).await.map_err(db_err)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let issue = load_issue(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        recount(&mut tx, &issue.sensor_id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(issue))
    }
}

#[async_trait]
impl HealthIssueStore for PgStore {
    async fn health_candidates(&self, ctx: &StatusContext, limit: u32) -> StoreResult<Vec<Candidate>> {
        let q = hsql::candidates_sql(ctx, limit);
        let rows =
            bind(dynamic(q.sql.clone()), values(&q)).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let c = Cols(r);
                let mut kinds = Vec::new();
                for kind in HealthIssueKind::FROM_FACTS {
                    if c.int(&hsql::flag_column(*kind))? == 1 {
                        kinds.push(*kind);
                    }
                }
                Ok(Candidate { row: sql::decode_sensor(&c)?, kinds })
            })
            .collect()
    }

    async fn open_health_issue(
        &self,
        issue: &NewHealthIssue,
        ctx: Option<&StatusContext>,
    ) -> StoreResult<Option<HealthIssue>> {
        let q = hsql::insert_issue_sql(issue.kind, ctx);
        let vals = hsql::values_with(&q, hsql::new_issue_values(issue));
        let mut tx = self.write().await?;
        let done = bind(dynamic(q.sql.clone()), vals).execute(&mut *tx).await.map_err(db_err)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let opened = load_issue(&mut tx, &issue.id).await?.ok_or(StoreError::NotFound)?;
        let sensor = load_sensor(&mut tx, &issue.sensor_id).await?.ok_or(StoreError::NotFound)?;
        recount(&mut tx, &issue.sensor_id).await?;
        notify(&mut tx, events::OPENED, &opened, &sensor, issue.opened_at).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(opened))
    }

    async fn forget_service_status(&self, ctx: &StatusContext) -> StoreResult<u64> {
        let forget = hsql::forget_service_status_sql(ctx);
        let mut tx = self.write().await?;
        let done = bind(dynamic(forget.sql.clone()), values(&forget)).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn close_ended_health_issues_after(
        &self,
        ctx: &StatusContext,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<EndedBatch> {
        let limit = limit.max(1);
        let ended = hsql::ended_batch_sql(ctx);
        let mut vals = values(&ended);
        vals[0] = Value::Text(after.unwrap_or_default().to_string());
        vals[1] = Value::Int(i64::from(limit));
        let rows = bind(dynamic(ended.sql.clone()), vals).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        let mut found: Vec<(String, HealthIssueKind)> = Vec::new();
        let mut last: Option<String> = None;
        for r in &rows {
            let c = Cols(r);
            let id = c.text("id")?;
            if c.int("ended")? == 1 {
                let kind = c.text("kind")?.parse().map_err(|e| StoreError::Corrupt(format!("column kind: {e}")))?;
                found.push((id.clone(), kind));
            }
            last = Some(id);
        }
        let mut closed = Vec::new();
        for (id, kind) in found {
            let close = hsql::auto_close_sql(kind, ctx);
            if let Some(issue) = self.auto_close(&close, &id, ctx.now).await? {
                closed.push(issue);
            }
        }
        if rows.len() == limit as usize {
            return Ok(EndedBatch { closed, next: last });
        }
        let unmute = hsql::unmute_sql(ctx);
        let mut tx = self.write().await?;
        bind(dynamic(unmute.sql.clone()), values(&unmute)).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(EndedBatch { closed, next: None })
    }

    async fn resolve_health_issue(
        &self,
        sensor_id: &str,
        kind: HealthIssueKind,
        now: Timestamp,
    ) -> StoreResult<Option<HealthIssue>> {
        let mut tx = self.write().await?;
        let open = sqlx::query(hsql::OPEN_OF_KIND)
            .bind(sensor_id.to_string())
            .bind(kind.as_str().to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = open else { return Ok(None) };
        let id = Cols(&row).text("id")?;
        sqlx::query(hsql::RESOLVE)
            .bind(sensor_id.to_string())
            .bind(kind.as_str().to_string())
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        recount(&mut tx, sensor_id).await?;
        let issue = load_issue(&mut tx, &id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(issue)
    }

    async fn get_health_issue(&self, id: &str, scope: &Scope) -> StoreResult<Option<HealthIssue>> {
        let mut conn = self.read().await?;
        match load_issue_in_scope(&mut conn, id, scope).await {
            Ok((issue, _)) => Ok(Some(issue)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_health_issues(&self, query: &HealthIssueQuery) -> StoreResult<Vec<HealthIssue>> {
        let q = hsql::list_sql(query);
        let rows =
            bind(dynamic(q.sql.clone()), values(&q)).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| hsql::decode_issue(&Cols(r))).collect()
    }

    async fn count_health_issues(&self, scope: &Scope, filter: &HealthIssueFilter) -> StoreResult<u64> {
        let q = hsql::count_sql(scope, filter);
        let row = bind(dynamic(q.sql.clone()), values(&q)).fetch_one(&mut *self.read().await?).await.map_err(db_err)?;
        let n = Cols(&row).int("n")?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
    }

    async fn close_health_issue(&self, id: &str, scope: &Scope, a: &Audit) -> StoreResult<HealthIssue> {
        let mut tx = self.write().await?;
        let (before, _) = load_issue_in_scope(&mut tx, id, scope).await?;
        if before.status != IssueStatus::Open {
            return Err(hsql::wrong_status(&before, IssueStatus::Closed));
        }
        sqlx::query(hsql::OPERATOR_CLOSE)
            .bind(id.to_string())
            .bind(a.at.0)
            .bind(a.actor.clone())
            .bind(before.kind.muted_by_operator_close())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        recount(&mut tx, &before.sensor_id).await?;
        let after = load_issue(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        audit(&mut tx, sql::audit_values(a, "health_issue", id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn reopen_health_issue(&self, id: &str, scope: &Scope, a: &Audit) -> StoreResult<HealthIssue> {
        let mut tx = self.write().await?;
        let (before, sensor) = load_issue_in_scope(&mut tx, id, scope).await?;
        if before.status != IssueStatus::Closed {
            return Err(hsql::wrong_status(&before, IssueStatus::Open));
        }
        let other = sqlx::query(hsql::OPEN_OF_KIND)
            .bind(before.sensor_id.clone())
            .bind(before.kind.as_str().to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if let Some(row) = other {
            return Err(hsql::another_open(&before, &Cols(&row).text("id")?));
        }
        // A replica's job may open one between the check and here: the unique index refuses it.
        sqlx::query(hsql::OPERATOR_REOPEN).bind(id.to_string()).bind(a.at.0).execute(&mut *tx).await.map_err(|e| {
            match db_err(e) {
                StoreError::Conflict(_) => hsql::another_open(&before, "opened just now"),
                e => e,
            }
        })?;
        recount(&mut tx, &before.sensor_id).await?;
        let after = load_issue(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        notify(&mut tx, events::REOPENED, &after, &sensor, a.at).await?;
        audit(&mut tx, sql::audit_values(a, "health_issue", id, Some(&before), Some(&after))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }
}
