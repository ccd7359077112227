//! Health issues: the use cases of the REST API and portal (list, a sensor's issues, close,
//! reopen), and the status job that raises and auto-closes issues as conditions start and end.
//!
//! The job runs in every `picket serve` replica every `health_check_every`. Each tick derives
//! one `StatusContext` (the same clock, timings and `watching_since` as the sensor list, so a
//! restarted server gives every sensor a full grace period before any issue opens), sets
//! `service_status = unknown` on the disconnected cloud-connected sensors (DESIGN.md:
//! "`unknown` when not heard from"; their next heartbeat writes the reported value), closes
//! the open issues whose condition ended, and opens issues for the sensors the store selects
//! with the conditions' SQL, each kind through an index range its condition implies (only
//! those whose condition started come back, and an idle tick reads the sensors whose
//! condition may hold, never the whole fleet). Replicas running it at once cannot duplicate an issue (the
//! store's partial unique index decides).

use std::sync::Arc;
use std::time::Duration;

use picket_domain::issues::describe;
use picket_proto::ListPage;
use picket_proto::health::HealthIssueView;
use picket_store::HealthIssue;
use picket_store::health::{
    ENDED_BATCH, HealthIssueFilter, HealthIssueQuery, IssueCursor, NewHealthIssue, health_facts,
};

use super::{App, AppError, AppResult, MAX_LIMIT};
use crate::auth::{Operator, Viewer};
use crate::ids::new_uuid;

/// Sensors read per store round trip while opening issues; memory stays bounded by this.
pub const HEALTH_BATCH: u32 = 500;

/// A parsed list request for health issues.
#[derive(Debug, Clone, Default)]
pub struct IssueListRequest {
    /// Filters.
    pub filter: HealthIssueFilter,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1..=`MAX_LIMIT`).
    pub limit: u32,
}

/// What one tick of the status job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HealthTick {
    /// Issues opened.
    pub opened: usize,
    /// Issues auto-closed.
    pub closed: usize,
}

/// An issue as the API shows it.
pub fn issue_view(i: HealthIssue) -> HealthIssueView {
    HealthIssueView {
        id: i.id,
        sensor_id: i.sensor_id,
        sensor_name: i.sensor_name,
        kind: i.kind,
        severity: i.severity,
        status: i.status,
        opened_at: i.opened_at,
        closed_at: i.closed_at,
        closed_by: i.closed_by,
        title: i.title,
        detail: i.detail,
        recommendation: i.recommendation,
    }
}

impl App {
    /// `GET /api/v1/health-issues`: newest first, in the caller's scope.
    pub async fn list_health_issues(
        &self,
        who: &Viewer,
        req: IssueListRequest,
    ) -> AppResult<ListPage<HealthIssueView>> {
        let scope = who.principal().scope.clone();
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let after = match req.cursor.as_deref() {
            Some(c) => Some(IssueCursor::decode(c).ok_or_else(|| {
                AppError::BadRequest("cursor: not a cursor returned by this server; start again without one".into())
            })?),
            None => None,
        };
        let total = self.store.count_health_issues(&scope, &req.filter).await?;
        let query = HealthIssueQuery { scope, filter: req.filter, after, limit: limit + 1 };
        let mut rows = self.store.list_health_issues(&query).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(IssueCursor { opened_at: last.opened_at.0, id: last.id.clone() }.encode()),
            _ => None,
        };
        Ok(ListPage { items: rows.into_iter().map(issue_view).collect(), next_cursor, total })
    }

    /// `GET /api/v1/sensors/{id}/health-issues`: the issues of one sensor (404 outside scope).
    pub async fn sensor_health_issues(
        &self,
        who: &Viewer,
        sensor_id: &str,
        mut req: IssueListRequest,
    ) -> AppResult<ListPage<HealthIssueView>> {
        if self.store.get_sensor(sensor_id, &who.principal().scope).await?.is_none() {
            return Err(AppError::NotFound("sensor"));
        }
        req.filter.sensor_id = vec![sensor_id.to_string()];
        self.list_health_issues(who, req).await
    }

    /// `POST /api/v1/health-issues/{id}/close`: closed until its condition ends and starts again.
    pub async fn close_health_issue(&self, who: &Operator, id: &str) -> AppResult<HealthIssueView> {
        let p = who.principal();
        let issue = self
            .store
            .close_health_issue(id, &p.scope, &p.audit("health_issue.close", self.now()))
            .await
            .map_err(|e| AppError::from(e).not_found_as("health issue"))?;
        Ok(issue_view(issue))
    }

    /// `POST /api/v1/health-issues/{id}/reopen`: open again and notified; a conflict if another
    /// issue of its kind is open for the sensor.
    pub async fn reopen_health_issue(&self, who: &Operator, id: &str) -> AppResult<HealthIssueView> {
        let p = who.principal();
        let issue = self
            .store
            .reopen_health_issue(id, &p.scope, &p.audit("health_issue.reopen", self.now()))
            .await
            .map_err(|e| AppError::from(e).not_found_as("health issue"))?;
        Ok(issue_view(issue))
    }

    /// One tick of the status job: auto-closes the issues whose condition ended and opens
    /// issues for the sensors whose condition started, for every kind raised from facts.
    pub async fn check_health(&self) -> AppResult<HealthTick> {
        let ctx = self.status_context().await?;
        let mut tick = HealthTick::default();
        // Not heard from: the service status shown is `unknown`, not the last one reported
        // (before closing; a `service_stopped` of a silent sensor ends anyway, its condition
        // needs a sensor heard from). A failure here is logged and does not keep the tick
        // from opening and closing issues.
        match self.store.forget_service_status(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sensors = n, "service status unknown: not heard from"),
            Err(e) => tracing::error!(error = %e, "setting service_status unknown failed; retrying on the next tick"),
        }
        // At most ENDED_BATCH open issues re-checked per tick, round robin: a tick's cost stays
        // bounded with a hundred thousand open issues (each check is a sensor lookup).
        let after = self.ended_cursor.take();
        let batch = self.store.close_ended_health_issues_after(&ctx, after.as_deref(), ENDED_BATCH).await?;
        self.ended_cursor.set(batch.next);
        for issue in batch.closed {
            tracing::info!(issue = %issue.id, sensor = %issue.sensor_name, kind = %issue.kind, "health issue closed: condition ended");
            tick.closed += 1;
        }
        // Each batch's issues are opened before the next is read, so the store (which skips
        // sensors whose issues are open) moves on; stop if a batch opened nothing (all raced).
        loop {
            let batch = self.store.health_candidates(&ctx, HEALTH_BATCH).await?;
            let mut opened = 0;
            for cand in &batch {
                for kind in &cand.kinds {
                    let text = describe(*kind, &health_facts(&cand.row), &ctx);
                    let new = NewHealthIssue {
                        id: new_uuid(),
                        sensor_id: cand.row.id.clone(),
                        kind: *kind,
                        opened_at: ctx.now,
                        title: text.title,
                        detail: text.detail,
                        recommendation: text.recommendation,
                    };
                    // `None`: another replica opened it, or the condition ended meanwhile.
                    if let Some(issue) = self.store.open_health_issue(&new, Some(&ctx)).await? {
                        let level = issue.severity;
                        tracing::info!(issue = %issue.id, sensor = %issue.sensor_name, kind = %issue.kind, severity = %level, detail = %issue.detail, "health issue opened");
                        opened += 1;
                    }
                }
            }
            tick.opened += opened;
            if batch.len() < HEALTH_BATCH as usize || opened == 0 {
                break;
            }
        }
        let ti = self.check_ti_stale(&ctx).await?;
        tick.opened += ti.opened;
        tick.closed += ti.closed;
        Ok(tick)
    }
}

/// Runs the status job every `every` until `stop` turns true; a failed tick is logged and
/// retried on the next one (the store's constraints make a half-done tick harmless). A tick
/// that takes long (a million sensors on a busy SQLite) is followed by a pause of twice its
/// length, so the job never takes more than a third of a core from the server.
pub fn spawn(
    app: Arc<App>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let started = std::time::Instant::now();
            match app.check_health().await {
                Ok(t) if t.opened + t.closed > 0 => tracing::debug!(
                    opened = t.opened,
                    closed = t.closed,
                    took_ms = started.elapsed().as_millis() as u64,
                    "health check"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "health check failed; retrying on the next tick"),
            }
            let took = started.elapsed();
            metrics::histogram!("picket_health_check_seconds").record(took.as_secs_f64());
            tokio::select! {
                _ = tokio::time::sleep(every.max(took * 2)) => {}
                _ = stop.changed() => break,
            }
        }
    })
}

/// Where the status job's next re-check of open issues starts (the last id the previous
/// tick's batch checked), so ticks walk the open issues round robin.
#[derive(Debug, Default)]
pub(crate) struct EndedCursor(std::sync::Mutex<Option<String>>);

impl EndedCursor {
    /// The position, leaving `None` (a failed tick starts the pass over).
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Stores the next position.
    fn set(&self, next: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }
}
