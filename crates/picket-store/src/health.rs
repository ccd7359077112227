//! Health issues in storage (`HealthIssueStore`): the table `health_issues` (migration 0005),
//! at most one open issue per sensor and kind (a partial unique index, so several replicas
//! running the status job at once cannot duplicate one), the notification written to
//! `notification_outbox` in the same transaction as each opening, and the sensor's
//! `open_issues` / `health_rank` kept in step, also in that transaction.
//!
//! The SQL of each condition is built from the status rules of `query` (`rule_predicate`), so
//! the job selects only the sensors whose condition started or ended; the conformance suite
//! checks on random rows that it agrees with `picket_domain::issues::conditions`.

use async_trait::async_trait;
use picket_domain::issues::{HealthFacts, HealthIssueKind, IssueStatus};
use picket_domain::{SensorStatus, Severity, StatusContext, Timestamp};
use serde::Serialize;

use crate::error::{StoreError, StoreResult};
use crate::model::{Audit, Scope, SensorRow};
use crate::query::{SqlParam, SqlQuery, rule_predicate};
use crate::sql::{Columns, Value};

/// A health issue as stored (and listed, with its sensor's name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthIssue {
    /// Unique id (UUID form).
    pub id: String,
    /// The sensor it is about.
    pub sensor_id: String,
    /// The sensor's name (joined when read).
    pub sensor_name: String,
    /// What it is about.
    pub kind: HealthIssueKind,
    /// How bad.
    pub severity: Severity,
    /// Open or closed.
    pub status: IssueStatus,
    /// When it (last) opened.
    pub opened_at: Timestamp,
    /// When it closed; `None` while open.
    pub closed_at: Option<Timestamp>,
    /// Who closed it: `system` (the condition ended) or the operator's principal.
    pub closed_by: Option<String>,
    /// The kind's title.
    pub title: String,
    /// What was observed.
    pub detail: String,
    /// What to do.
    pub recommendation: String,
}

/// An issue to open (the caller chooses the id and describes it with `picket_domain::issues`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewHealthIssue {
    /// Id for the new row.
    pub id: String,
    /// The sensor.
    pub sensor_id: String,
    /// Its kind; the severity is the kind's.
    pub kind: HealthIssueKind,
    /// When.
    pub opened_at: Timestamp,
    /// Title.
    pub title: String,
    /// Detail.
    pub detail: String,
    /// Recommendation.
    pub recommendation: String,
}

/// Which issues to list; each field is "any of these" and fields combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthIssueFilter {
    /// Open or closed.
    pub status: Vec<IssueStatus>,
    /// Severities.
    pub severity: Vec<Severity>,
    /// Kinds.
    pub kind: Vec<HealthIssueKind>,
    /// Sensors.
    pub sensor_id: Vec<String>,
}

/// Where a page of issues ended (lists are newest first: `opened_at`, then id, descending).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssueCursor {
    /// The last row's `opened_at` (ms).
    pub opened_at: i64,
    /// The last row's id.
    pub id: String,
}

impl IssueCursor {
    /// The opaque `next_cursor` text.
    pub fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a client's cursor back.
    pub fn decode(text: &str) -> Option<IssueCursor> {
        serde_json::from_slice(&hex::decode(text).ok()?).ok()
    }
}

/// A sensor the status job must open issues for, and the kinds to open.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The sensor.
    pub row: SensorRow,
    /// The kinds whose condition holds with no open (or operator-closed) issue of the kind.
    pub kinds: Vec<HealthIssueKind>,
}

/// A page request for issues.
#[derive(Debug, Clone)]
pub struct HealthIssueQuery {
    /// What the caller may see (by the sensors' subscriptions).
    pub scope: Scope,
    /// Filters.
    pub filter: HealthIssueFilter,
    /// Start after this position.
    pub after: Option<IssueCursor>,
    /// Page size.
    pub limit: u32,
}

/// Open issues one [`HealthIssueStore::close_ended_health_issues`] call checks per batch.
pub const ENDED_BATCH: u32 = 10_000;

/// What one batch of [`HealthIssueStore::close_ended_health_issues_after`] did.
#[derive(Debug, Clone, Default)]
pub struct EndedBatch {
    /// The issues it closed.
    pub closed: Vec<HealthIssue>,
    /// The last id it checked when the batch was full (where the next batch starts); `None`
    /// when the pass reached the end.
    pub next: Option<String>,
}

/// Health issues in storage. `Store` requires this trait, so every backend implements it.
#[async_trait]
pub trait HealthIssueStore: Send + Sync + 'static {
    /// At most `limit` sensors (in no particular order) with a kind raised from facts whose
    /// condition holds at `ctx` and that have neither an open issue of that kind nor one an
    /// operator closed while the condition persists: what the status job must open. Each
    /// candidate carries every kind it needs. Each kind is searched through an index range
    /// its condition implies (never a pass over every sensor); once their issues are open
    /// they are not returned again.
    async fn health_candidates(&self, ctx: &StatusContext, limit: u32) -> StoreResult<Vec<Candidate>>;

    /// Opens an issue unless one of its kind is open for the sensor, writing the
    /// `health_issue.opened` notification and the sensor's counts in the same transaction.
    /// With `ctx`, only if the kind's condition holds at `ctx` and no operator closed an issue
    /// of the kind while it persists (checked in the same statement); without, whenever none
    /// is open (for kinds raised by events). `None`: nothing was opened.
    async fn open_health_issue(
        &self,
        issue: &NewHealthIssue,
        ctx: Option<&StatusContext>,
    ) -> StoreResult<Option<HealthIssue>>;

    /// Sets `service_status` to `unknown` for cloud-connected sensors not heard from (their
    /// derived status is `disconnected` at `ctx`); returns how many changed.
    async fn forget_service_status(&self, ctx: &StatusContext) -> StoreResult<u64>;

    /// Closes (`closed_by = system`) the open issues of kinds raised from facts whose condition
    /// no longer holds at `ctx`; also forgets operator closes whose condition ended, so a new
    /// start opens a new issue. Returns the issues closed. (All open issues in one call: the
    /// status job uses [`HealthIssueStore::close_ended_health_issues_after`] in batches.)
    async fn close_ended_health_issues(&self, ctx: &StatusContext) -> StoreResult<Vec<HealthIssue>> {
        let mut closed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self.close_ended_health_issues_after(ctx, after.as_deref(), ENDED_BATCH).await?;
            closed.extend(batch.closed);
            match batch.next {
                Some(next) => after = Some(next),
                None => return Ok(closed),
            }
        }
    }

    /// One batch of [`HealthIssueStore::close_ended_health_issues`]: checks at most `limit`
    /// open issues, those with an id after `after` (all from the first when `None`), in id
    /// order, and closes those whose condition ended. `next` is the last id checked when the
    /// batch was full (pass it on), `None` when the pass reached the end; operator closes
    /// are forgotten at the end of a pass. Bounds a status-job tick on a fleet with a
    /// hundred thousand open issues.
    async fn close_ended_health_issues_after(
        &self,
        ctx: &StatusContext,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<EndedBatch>;

    /// Closes the open issue of `kind` of a sensor as `system` (for kinds raised by events,
    /// when the code that raised it sees the condition end). `None` if none was open.
    async fn resolve_health_issue(
        &self,
        sensor_id: &str,
        kind: HealthIssueKind,
        now: Timestamp,
    ) -> StoreResult<Option<HealthIssue>>;

    /// One issue, if its sensor is in `scope`.
    async fn get_health_issue(&self, id: &str, scope: &Scope) -> StoreResult<Option<HealthIssue>>;

    /// One page of issues, newest first.
    async fn list_health_issues(&self, query: &HealthIssueQuery) -> StoreResult<Vec<HealthIssue>>;

    /// How many issues match.
    async fn count_health_issues(&self, scope: &Scope, filter: &HealthIssueFilter) -> StoreResult<u64>;

    /// An operator closes an open issue (audited); it stays closed while its condition
    /// persists. `NotFound` outside `scope`, `Conflict` if it is not open.
    async fn close_health_issue(&self, id: &str, scope: &Scope, audit: &Audit) -> StoreResult<HealthIssue>;

    /// An operator reopens a closed issue (audited, notified as `health_issue.reopened`).
    /// `NotFound` outside `scope`; `Conflict` if it is open, or if another issue of its kind is
    /// open for the sensor (the message names it).
    async fn reopen_health_issue(&self, id: &str, scope: &Scope, audit: &Audit) -> StoreResult<HealthIssue>;
}

/// The facts the health conditions of a stored sensor depend on.
pub fn health_facts(row: &SensorRow) -> HealthFacts {
    HealthFacts { status: row.facts(), service_status: row.service_status, sensor_type: row.sensor_type }
}

/// Shared SQL of the health statements, `$N` dialect of both backends.
pub mod sql {
    use super::*;

    /// The columns an issue is read with (from `health_issues h JOIN sensors s`).
    pub const ISSUE_COLUMNS: &str = "h.id, h.sensor_id, s.name AS sensor_name, h.kind, h.severity, h.status, \
h.opened_at, h.closed_at, h.closed_by, h.title, h.detail, h.recommendation";

    /// Rank of a severity as stored in `severity_rank` (the sensor's `health_rank` is the
    /// highest rank among its open issues, 0 for none).
    pub fn severity_rank(s: Severity) -> i64 {
        picket_domain::HealthStatus::from_worst(Some(s)).rank()
    }

    /// The SQL predicate, over unqualified `sensors` columns, "the condition of `kind` holds
    /// at `ctx`" (`picket_domain::issues::condition_holds`); `FALSE` for kinds raised by events.
    pub fn condition_sql(kind: HealthIssueKind, ctx: &StatusContext, q: &mut SqlQuery) -> String {
        use HealthIssueKind::*;
        if !HealthIssueKind::FROM_FACTS.contains(&kind) {
            return "FALSE".to_string();
        }
        let mut parts: Vec<String> =
            [SensorStatus::NotApplicable, SensorStatus::PendingActivation, SensorStatus::Unreachable]
                .iter()
                .map(|s| format!("NOT {}", rule_predicate(*s, ctx, q)))
                .collect();
        if kind == Disconnected {
            parts.push(rule_predicate(SensorStatus::Disconnected, ctx, q));
        } else {
            parts.push(format!("NOT {}", rule_predicate(SensorStatus::Disconnected, ctx, q)));
            parts.push(match kind {
                ServiceStopped => "service_status IN ('stopped', 'disabled')".to_string(),
                StartFailed => rule_predicate(SensorStatus::StartFailed, ctx, q),
                UpdateFailed => rule_predicate(SensorStatus::UpdateFailed, ctx, q),
                NotConfigured => rule_predicate(SensorStatus::NotConfigured, ctx, q),
                Outdated => rule_predicate(SensorStatus::Outdated, ctx, q),
                _ => "FALSE".to_string(),
            });
        }
        format!("({})", parts.join(" AND "))
    }

    /// The SQL of `picket_domain::issues::should_open`: [`condition_sql`], and during the grace
    /// period after a restart not for a sensor silent for `disconnect_after` or more (it would
    /// be `disconnected` outside the grace period: nothing is raised for it until then).
    pub fn open_condition_sql(kind: HealthIssueKind, ctx: &StatusContext, q: &mut SqlQuery) -> String {
        let cond = condition_sql(kind, ctx, q);
        if ctx.disconnect_cutoff().is_some() || cond == "FALSE" {
            return cond;
        }
        let shielded = rule_predicate(SensorStatus::Disconnected, &ctx.without_grace(), q);
        format!("({cond} AND NOT {shielded})")
    }

    /// How a kind's sensors are searched: the predicate that finds them through an index range,
    /// implied by the condition (so it narrows and never decides), and that index. `None` when
    /// the condition cannot hold at `ctx` (the grace period, no `outdated_below`): the kind is
    /// not searched at all.
    struct Search {
        /// The index-range predicate over unqualified `sensors` columns.
        predicate: String,
        /// The index it ranges over.
        index: &'static str,
        /// Whether the index holds `id`: then the open and muted issues are checked on the
        /// index alone, and only the sensors left are read.
        has_id: bool,
    }

    /// The bit of `kind` in `sensors.blocked_kinds` (migrations 0023 and 0024: set by triggers
    /// while the sensor has an open or muted issue of the kind); `None` for kinds raised by
    /// events (`ti_stale` has one: the job raises it from the TI versions).
    pub fn blocked_bit(kind: HealthIssueKind) -> Option<i64> {
        use HealthIssueKind::*;
        Some(match kind {
            Disconnected => 1,
            ServiceStopped => 2,
            StartFailed => 4,
            NotConfigured => 8,
            UpdateFailed => 16,
            Outdated => 32,
            TiStale => 64, // migration 0024
            _ => return None,
        })
    }

    /// `(blocked_kinds & <bit>) = 0`, written with a literal so it matches the partial indexes
    /// of migration 0023 (SQLite uses a partial index only for a query that repeats its terms).
    fn unblocked(kind: HealthIssueKind) -> String {
        format!("(blocked_kinds & {}) = 0", blocked_bit(kind).unwrap_or(0))
    }

    /// The [`Search`] of `kind`: the clock of `disconnected` on `sensors_last_contact`; the
    /// others on migration 0023's partial indexes, which hold only the sensors without an open
    /// or muted issue of the kind (`blocked_kinds`): `service_status` on
    /// `sensors_unblocked_service_stopped`, the start-failed clock on
    /// `sensors_unblocked_start_failed`, update failed (`status_base` 5) on
    /// `sensors_unblocked_update_failed`, not configured on `sensors_unblocked_not_configured`
    /// (only updating and failed sensors rank before it, 5 to 7), `version_key` on
    /// `sensors_unblocked_outdated`. A sensor whose issue is open is then not read at all.
    fn search(kind: HealthIssueKind, ctx: &StatusContext, q: &mut SqlQuery) -> Option<Search> {
        use HealthIssueKind::*;
        let s = |predicate: String, index: &'static str, has_id: bool| Some(Search { predicate, index, has_id });
        let free = unblocked(kind);
        match kind {
            Disconnected => {
                let cutoff = ctx.disconnect_cutoff()?;
                let c = q.bind(SqlParam::Int(cutoff.millis()));
                s(format!("last_contact_at <= {c} AND +status_base >= 3"), "sensors_last_contact", false)
            }
            ServiceStopped => s(
                format!("service_status IN ('stopped', 'disabled') AND {free}"),
                "sensors_unblocked_service_stopped",
                true,
            ),
            StartFailed => {
                let sf = q.bind(SqlParam::Int(ctx.start_failed_cutoff().millis()));
                let p = format!(
                    "start_pending_since IS NOT NULL AND {free} AND start_pending_since < {sf} AND +status_base >= 3"
                );
                s(p, "sensors_unblocked_start_failed", false)
            }
            UpdateFailed => s(format!("status_base = 5 AND {free}"), "sensors_unblocked_update_failed", true),
            NotConfigured => s(
                format!("{NOT_CONFIGURED} AND {free} AND status_base IN (5, 6, 7)"),
                "sensors_unblocked_not_configured",
                true,
            ),
            Outdated => {
                let below = q.bind(SqlParam::Int(ctx.outdated_below?.key()));
                s(format!("{free} AND version_key < {below}"), "sensors_unblocked_outdated", false)
            }
            _ => None,
        }
    }

    /// The `not_configured` rule as the partial index `sensors_not_configured` (migration 0020)
    /// is written, so both backends see the index's predicate in the query.
    pub const NOT_CONFIGURED: &str =
        "sensor_type IN ('adfs', 'standalone') AND (capture_setting IS NULL OR TRIM(capture_setting) = '')";

    /// `EXISTS` an open issue of `kind` for the sensor, or one an operator closed while its
    /// condition persists (`muted`).
    fn blocked(kind: HealthIssueKind, q: &mut SqlQuery) -> String {
        let k = q.bind(SqlParam::Text(kind.as_str().to_string()));
        format!(
            "EXISTS (SELECT 1 FROM health_issues h WHERE h.sensor_id = sensors.id AND h.kind = {k} AND (h.status = 'open' OR h.muted))"
        )
    }

    /// The column of [`candidates_sql`] flagging `kind` (1 when it must be opened).
    pub fn flag_column(kind: HealthIssueKind) -> String {
        format!("open_{}", kind.as_str())
    }

    /// How a statement names the index it must range over.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum IndexHints {
        /// PostgreSQL: the planner decides (its statistics follow the data).
        None,
        /// SQLite: `INDEXED BY`. Its statistics (`PRAGMA optimize`, sampled) can rate a
        /// million-row index as a thousand rows per value, and it would then range over
        /// `sensors_type` (a third of the fleet) instead of `sensors_not_configured`.
        IndexedBy,
    }

    /// The candidates of [`HealthIssueStore::health_candidates`] (PostgreSQL's text; SQLite
    /// uses [`candidates_sql_with`] and `IndexHints::IndexedBy`).
    pub fn candidates_sql(ctx: &StatusContext, limit: u32) -> SqlQuery {
        candidates_sql_with(ctx, limit, IndexHints::None)
    }

    /// The candidates of [`HealthIssueStore::health_candidates`]: the sensor's columns and one
    /// flag column per kind raised from facts ([`flag_column`]). Each kind is searched on its own
    /// through the index range of its [`search`] (at most `limit` sensors each, so the statement
    /// reads the sensors whose condition may hold, never the fleet); where the index holds `id`,
    /// the sensors with an open or muted issue of the kind are dropped on the index before any
    /// row is read (a fleet with many open issues pays an index probe for each, not a row).
    /// The flags are then computed on the (at most 6 × `limit`) sensors found, through the
    /// primary key, so a sensor comes back once with every kind it needs.
    pub fn candidates_sql_with(ctx: &StatusContext, limit: u32, hints: IndexHints) -> SqlQuery {
        let mut q = SqlQuery::default();
        let mut flags = Vec::new();
        for kind in HealthIssueKind::FROM_FACTS {
            let cond = open_condition_sql(*kind, ctx, &mut q);
            let blocked = blocked(*kind, &mut q);
            flags.push((flag_column(*kind), format!("({cond} AND NOT {blocked})")));
        }
        let mut searches = Vec::new();
        for kind in HealthIssueKind::FROM_FACTS {
            let Some(search) = search(*kind, ctx, &mut q) else { continue };
            let from = match hints {
                IndexHints::None => "sensors".to_string(),
                IndexHints::IndexedBy => format!("sensors INDEXED BY {}", search.index),
            };
            let drive = search.predicate;
            let cond = open_condition_sql(*kind, ctx, &mut q);
            let blocked = blocked(*kind, &mut q);
            let n = q.bind(SqlParam::Int(i64::from(limit)));
            let found = if search.has_id {
                format!(
                    "SELECT id FROM sensors WHERE id IN (SELECT id FROM {from} WHERE {drive} AND NOT {blocked}) \
AND {cond} LIMIT {n}"
                )
            } else {
                format!("SELECT id FROM {from} WHERE {drive} AND {cond} AND NOT {blocked} LIMIT {n}")
            };
            searches.push(format!("SELECT id FROM ({found}) k{}", searches.len()));
        }
        let select: Vec<String> =
            flags.iter().map(|(name, f)| format!("CASE WHEN {f} THEN 1 ELSE 0 END AS {name}")).collect();
        let any: Vec<String> = flags.iter().map(|(name, _)| format!("c.{name} = 1")).collect();
        let limit = q.bind(SqlParam::Int(i64::from(limit)));
        q.sql = format!(
            "SELECT * FROM (SELECT {}, {} FROM sensors WHERE id IN ({})) c WHERE {} LIMIT {limit}",
            crate::query::SENSOR_COLUMNS,
            select.join(", "),
            searches.join(" UNION ALL "),
            any.join(" OR ")
        );
        q
    }

    /// `CASE <kind column> WHEN 'disconnected' THEN <condition> ... ELSE TRUE END`: whether an
    /// open issue of its own kind goes on (`NOT picket_domain::issues::condition_ended`:
    /// `disconnected` without the grace period; kinds raised by events always "hold").
    fn condition_of_kind(kind_column: &str, ctx: &StatusContext, q: &mut SqlQuery) -> String {
        let mut s = format!("(CASE {kind_column}");
        for kind in HealthIssueKind::FROM_FACTS {
            let cond = condition_sql(*kind, &ending_ctx(*kind, ctx), q);
            s.push_str(&format!(" WHEN '{}' THEN {cond}", kind.as_str()));
        }
        s.push_str(" ELSE TRUE END)");
        s
    }

    /// The context an open issue of `kind` is judged in (`picket_domain::issues::condition_ended`):
    /// `disconnected` without the grace period after a restart, the others as they are.
    fn ending_ctx(kind: HealthIssueKind, ctx: &StatusContext) -> StatusContext {
        if kind == HealthIssueKind::Disconnected { ctx.without_grace() } else { *ctx }
    }

    /// Inserts the issue described by [`new_issue_values`] (`$1`..`$9`) if its sensor exists,
    /// none of its kind is open (the partial unique index) and, with `ctx`, its condition
    /// holds and no operator closed one of its kind while it persists.
    pub fn insert_issue_sql(kind: HealthIssueKind, ctx: Option<&StatusContext>) -> SqlQuery {
        let mut q = SqlQuery::default();
        for v in ["id", "sensor", "kind", "severity", "rank", "opened", "title", "detail", "recommendation"] {
            q.bind(SqlParam::Text(v.to_string()));
        }
        let extra = match ctx {
            Some(c) => {
                let cond = open_condition_sql(kind, c, &mut q);
                let blocked = blocked(kind, &mut q);
                format!(" AND {cond} AND NOT {blocked}")
            }
            None => String::new(),
        };
        q.sql = format!(
            "INSERT INTO health_issues (id, sensor_id, kind, severity, severity_rank, status, opened_at, closed_at, \
closed_by, muted, title, detail, recommendation) \
SELECT $1, id, $3, $4, $5, 'open', $6, NULL, NULL, FALSE, $7, $8, $9 FROM sensors WHERE id = $2{extra} \
ON CONFLICT DO NOTHING"
        );
        q
    }

    /// The values `$1`..`$9` of [`insert_issue_sql`] (the condition's values follow).
    pub fn new_issue_values(n: &NewHealthIssue) -> Vec<Value> {
        let sev = n.kind.severity();
        vec![
            Value::Text(n.id.clone()),
            Value::Text(n.sensor_id.clone()),
            Value::Text(n.kind.as_str().to_string()),
            Value::Text(sev.as_str().to_string()),
            Value::Int(severity_rank(sev)),
            Value::Int(n.opened_at.0),
            Value::Text(n.title.clone()),
            Value::Text(n.detail.clone()),
            Value::Text(n.recommendation.clone()),
        ]
    }

    /// The values of a built query, `$1`..`$9` replaced by `first` (for [`insert_issue_sql`]).
    pub fn values_with(q: &SqlQuery, first: Vec<Value>) -> Vec<Value> {
        let n = first.len();
        first.into_iter().chain(q.params.iter().skip(n).cloned().map(Value::from)).collect()
    }

    /// Open issues whose condition no longer holds: `(id, kind)`.
    pub fn ended_sql(ctx: &StatusContext) -> SqlQuery {
        let mut q = SqlQuery::default();
        let cond = condition_of_kind("h.kind", ctx, &mut q);
        q.sql = format!(
            "SELECT h.id, h.kind FROM health_issues h WHERE h.status = 'open' \
AND NOT EXISTS (SELECT 1 FROM sensors WHERE sensors.id = h.sensor_id AND {cond})"
        );
        q
    }

    /// The open issues with an id after `$1` ('' for the first), in id order, at most `$2`:
    /// `(id, kind, ended)`, `ended` 1 when the condition no longer holds (one batch of
    /// [`HealthIssueStore::close_ended_health_issues_after`]).
    pub fn ended_batch_sql(ctx: &StatusContext) -> SqlQuery {
        let mut q = SqlQuery::default();
        let after = q.bind(SqlParam::Text(String::new()));
        let limit = q.bind(SqlParam::Int(0));
        let cond = condition_of_kind("h.kind", ctx, &mut q);
        q.sql = format!(
            "SELECT h.id, h.kind, CASE WHEN NOT EXISTS (SELECT 1 FROM sensors WHERE sensors.id = h.sensor_id AND {cond}) \
THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS ended FROM health_issues h WHERE h.status = 'open' AND h.id > {after} ORDER BY h.id LIMIT {limit}"
        );
        q
    }

    /// Closes issue `$1` at `$2` as `system` if still open and its condition still ended.
    pub fn auto_close_sql(kind: HealthIssueKind, ctx: &StatusContext) -> SqlQuery {
        let mut q = SqlQuery::default();
        q.bind(SqlParam::Text("id".into()));
        q.bind(SqlParam::Int(0));
        let cond = condition_sql(kind, &ending_ctx(kind, ctx), &mut q);
        q.sql = format!(
            "UPDATE health_issues SET status = 'closed', closed_at = $2, closed_by = 'system' \
WHERE id = $1 AND status = 'open' AND NOT EXISTS (SELECT 1 FROM sensors WHERE sensors.id = health_issues.sensor_id AND {cond})"
        );
        q
    }

    /// Forgets operator closes whose condition ended.
    pub fn unmute_sql(ctx: &StatusContext) -> SqlQuery {
        let mut q = SqlQuery::default();
        let cond = condition_of_kind("health_issues.kind", ctx, &mut q);
        q.sql = format!(
            "UPDATE health_issues SET muted = FALSE WHERE muted \
AND NOT EXISTS (SELECT 1 FROM sensors WHERE sensors.id = health_issues.sensor_id AND {cond})"
        );
        q
    }

    /// Sets `service_status` to `unknown` for the cloud-connected sensors that are
    /// `disconnected` at `ctx` and still show what they last reported: DESIGN.md's
    /// "`unknown` when not heard from". The next heartbeat writes the reported value again.
    /// The sensors are found on `sensors_last_contact` (the clock of `disconnected`); `mode`
    /// and `status_base` are written so no index serves them (`mode || ''`, `+status_base`):
    /// SQLite's statistics of `last_contact_at` go stale as the clock moves on, and it would
    /// otherwise walk every cloud-connected sensor each tick.
    pub fn forget_service_status_sql(ctx: &StatusContext) -> SqlQuery {
        let mut q = SqlQuery::default();
        let disconnected = match ctx.disconnect_cutoff() {
            Some(cutoff) => {
                format!("last_contact_at <= {} AND +status_base >= 3", q.bind(SqlParam::Int(cutoff.millis())))
            }
            None => "FALSE".to_string(),
        };
        q.sql = format!(
            "UPDATE sensors SET service_status = 'unknown' WHERE {disconnected} AND service_status <> 'unknown' \
AND mode || '' = 'cloud_connected'"
        );
        q
    }

    /// Closes the open issue of sensor `$1`, kind `$2`, at `$3` as `system`.
    pub const RESOLVE: &str = "UPDATE health_issues SET status = 'closed', closed_at = $3, closed_by = 'system' \
WHERE sensor_id = $1 AND kind = $2 AND status = 'open'";

    /// The open issue of sensor `$1`, kind `$2`: its id.
    pub const OPEN_OF_KIND: &str =
        "SELECT id FROM health_issues WHERE sensor_id = $1 AND kind = $2 AND status = 'open'";

    /// Operator close of `$1` at `$2` by `$3`; `$4` mutes it (kinds raised from facts).
    pub const OPERATOR_CLOSE: &str = "UPDATE health_issues SET status = 'closed', closed_at = $2, closed_by = $3, \
muted = $4 WHERE id = $1 AND status = 'open'";

    /// Operator reopen of `$1` at `$2` (a reopened issue counts as opened again).
    pub const OPERATOR_REOPEN: &str = "UPDATE health_issues SET status = 'open', opened_at = $2, closed_at = NULL, \
closed_by = NULL, muted = FALSE WHERE id = $1 AND status = 'closed'";

    /// Recounts sensor `$1`'s open issues and its worst severity.
    pub const RECOUNT: &str = "UPDATE sensors SET \
open_issues = (SELECT COUNT(*) FROM health_issues h WHERE h.sensor_id = $1 AND h.status = 'open'), \
health_rank = (SELECT COALESCE(MAX(h.severity_rank), 0) FROM health_issues h WHERE h.sensor_id = $1 AND h.status = 'open') \
WHERE id = $1";

    /// Adds a notification to the outbox: `$1` created_at, `$2` event, `$3` payload.
    pub const INSERT_OUTBOX: &str = "INSERT INTO notification_outbox (created_at, event, payload) VALUES ($1, $2, $3)";

    /// One issue by id `$1` with its sensor.
    pub fn select_issue_sql() -> String {
        format!("SELECT {ISSUE_COLUMNS} FROM health_issues h JOIN sensors s ON s.id = h.sensor_id WHERE h.id = $1")
    }

    fn where_clause(scope: &Scope, f: &HealthIssueFilter, q: &mut SqlQuery) -> String {
        let mut parts = vec!["TRUE".to_string()];
        let mut any = |column: &str, values: Vec<String>, q: &mut SqlQuery| {
            if !values.is_empty() {
                let ph: Vec<String> = values.into_iter().map(|v| q.bind(SqlParam::Text(v))).collect();
                parts.push(format!("{column} IN ({})", ph.join(", ")));
            }
        };
        if let Scope::Subscriptions(subs) = scope {
            if subs.is_empty() {
                return "FALSE".to_string();
            }
            any("s.subscription", subs.clone(), q);
        }
        any("h.status", f.status.iter().map(|s| s.as_str().to_string()).collect(), q);
        any("h.severity", f.severity.iter().map(|s| s.as_str().to_string()).collect(), q);
        any("h.kind", f.kind.iter().map(|s| s.as_str().to_string()).collect(), q);
        any("h.sensor_id", f.sensor_id.clone(), q);
        parts.join(" AND ")
    }

    /// A page of issues, newest first.
    pub fn list_sql(query: &HealthIssueQuery) -> SqlQuery {
        let mut q = SqlQuery::default();
        let mut w = where_clause(&query.scope, &query.filter, &mut q);
        if let Some(c) = &query.after {
            let t0 = q.bind(SqlParam::Int(c.opened_at));
            let t1 = q.bind(SqlParam::Int(c.opened_at));
            let t2 = q.bind(SqlParam::Int(c.opened_at));
            let id = q.bind(SqlParam::Text(c.id.clone()));
            w = format!("{w} AND h.opened_at <= {t0} AND (h.opened_at < {t1} OR (h.opened_at = {t2} AND h.id < {id}))");
        }
        let limit = q.bind(SqlParam::Int(i64::from(query.limit)));
        q.sql = format!(
            "SELECT {ISSUE_COLUMNS} FROM health_issues h JOIN sensors s ON s.id = h.sensor_id WHERE {w} \
ORDER BY h.opened_at DESC, h.id DESC LIMIT {limit}"
        );
        q
    }

    /// How many issues match.
    pub fn count_sql(scope: &Scope, f: &HealthIssueFilter) -> SqlQuery {
        let mut q = SqlQuery::default();
        let w = where_clause(scope, f, &mut q);
        q.sql = format!("SELECT COUNT(*) AS n FROM health_issues h JOIN sensors s ON s.id = h.sensor_id WHERE {w}");
        q
    }

    fn parse<T: std::str::FromStr>(column: &str, text: &str) -> StoreResult<T>
    where
        T::Err: std::fmt::Display,
    {
        text.parse().map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
    }

    /// Reads an issue selected with [`ISSUE_COLUMNS`].
    pub fn decode_issue(r: &impl Columns) -> StoreResult<HealthIssue> {
        Ok(HealthIssue {
            id: r.text("id")?,
            sensor_id: r.text("sensor_id")?,
            sensor_name: r.text("sensor_name")?,
            kind: parse("kind", &r.text("kind")?)?,
            severity: parse("severity", &r.text("severity")?)?,
            status: parse("status", &r.text("status")?)?,
            opened_at: Timestamp(r.int("opened_at")?),
            closed_at: r.opt_int("closed_at")?.map(Timestamp),
            closed_by: r.opt_text("closed_by")?,
            title: r.text("title")?,
            detail: r.text("detail")?,
            recommendation: r.text("recommendation")?,
        })
    }

    /// The message of reopening an issue while another of its kind is open.
    pub fn another_open(issue: &HealthIssue, other_id: &str) -> StoreError {
        StoreError::Conflict(format!(
            "sensor {} already has an open {} issue ({other_id}); close that one first or leave this one closed",
            issue.sensor_name, issue.kind
        ))
    }

    /// The message of closing an issue that is not open, or reopening one that is.
    pub fn wrong_status(issue: &HealthIssue, wanted: IssueStatus) -> StoreError {
        StoreError::Conflict(format!("health issue {} is already {}", issue.id, wanted))
    }
}

/// The notification events written to `notification_outbox`.
pub mod events {
    /// An issue was opened (by the control plane or an event).
    pub const OPENED: &str = "health_issue.opened";
    /// An operator reopened an issue.
    pub const REOPENED: &str = "health_issue.reopened";
}

/// RFC 3339 UTC with milliseconds when there are any, as the REST API writes instants
/// (`2026-11-22T10:00:00Z`, `2026-11-22T10:00:00.25Z`).
pub fn rfc3339(t: Timestamp) -> String {
    let base = picket_domain::issues::format_utc(t);
    let ms = t.0.rem_euclid(1000);
    if ms == 0 {
        return base;
    }
    let frac = format!("{ms:03}");
    format!("{}.{}Z", base.trim_end_matches('Z'), frac.trim_end_matches('0'))
}

/// The JSON document of an outbox row (the delivery worker sends it to webhooks as is):
/// `{"event", "issue": {id, sensor_id, kind, severity, status, opened_at, closed_at, title,
/// detail, recommendation}, "sensor": {id, name, type, domain, site, zone, subscription}}`.
pub fn outbox_payload(event: &str, issue: &HealthIssue, sensor: &SensorRow) -> String {
    let doc = serde_json::json!({
        "event": event,
        "issue": {
            "id": issue.id,
            "sensor_id": issue.sensor_id,
            "kind": issue.kind.as_str(),
            "severity": issue.severity.as_str(),
            "status": issue.status.as_str(),
            "opened_at": rfc3339(issue.opened_at),
            "closed_at": issue.closed_at.map(rfc3339),
            "title": issue.title,
            "detail": issue.detail,
            "recommendation": issue.recommendation,
        },
        "sensor": {
            "id": sensor.id,
            "name": sensor.name,
            "type": sensor.sensor_type.as_str(),
            "domain": sensor.domain,
            "site": sensor.site,
            "zone": sensor.zone,
            "subscription": sensor.subscription,
        },
    });
    doc.to_string()
}

#[cfg(test)]
mod tests;
