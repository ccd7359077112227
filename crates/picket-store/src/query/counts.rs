//! Counts of sensors (`picket_store::query`): the exact `total` of a list, the cheapest way
//! the stored counters allow, a capped count to choose a page's plan, and the summary. SQL text
//! only; the backends run it.

use super::*;

/// `SELECT COUNT(*) FROM sensors WHERE ...` for the same scope and filter.
pub fn count_sql(scope: &Scope, filter: &SensorFilter, ctx: &StatusContext) -> SqlQuery {
    let mut q = SqlQuery::default();
    let w = where_clause(scope, filter, ctx, &mut q);
    q.sql = format!("SELECT COUNT(*) AS n FROM sensors WHERE {w}");
    q
}

/// The cheapest exact count of the sensors matching (one row, column `n`):
/// - filters on subscription, zone, type, mode and health only (the scope included): a sum
///   over `sensor_counts`, the per-cell counts that triggers keep (migrations 0012, 0019);
/// - the same with `sensor_status`: [`status_count_sql`];
/// - one tag and nothing else, unscoped: `sensor_tag_counts` (kept by triggers too);
/// - anything else: `count_sql` (with `search` for `q`).
pub fn fast_count_sql(scope: &Scope, f: &SensorFilter, ctx: &StatusContext, search: NameSearch) -> SqlQuery {
    let mut q = SqlQuery::default();
    let counted_but_status = f.service_status.is_empty()
        && f.domain.is_empty()
        && f.site.is_empty()
        && f.tag.is_empty()
        && f.version.is_empty()
        && f.delayed_update.is_none()
        && f.q.as_deref().is_none_or(str::is_empty);
    if counted_but_status && !f.sensor_status.is_empty() {
        return status_count_sql(scope, f, ctx);
    }
    if counted_but_status {
        // `where_clause` names only columns `sensor_counts` has for these filters.
        let w = where_clause(scope, f, ctx, &mut q);
        q.sql = format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM sensor_counts WHERE {w}");
        return q;
    }
    let only_one_tag = *f == SensorFilter { tag: f.tag.clone(), ..SensorFilter::default() } && f.tag.len() == 1;
    if only_one_tag && *scope == Scope::All {
        let tag = q.bind(SqlParam::Text(f.tag[0].clone()));
        q.sql = format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM sensor_tag_counts WHERE tag = {tag}");
        return q;
    }
    let w = where_clause_with(scope, f, ctx, &mut q, Hint::NONE, search);
    q.sql = format!("SELECT COUNT(*) AS n FROM sensors WHERE {w}");
    q
}

/// The exact count for a `sensor_status` filter beside at most the filters `sensor_counts`
/// has columns for (migration 0019), without counting every matching row: an index-only
/// count of the matches visits the heap for each entry on a page a heartbeat has written
/// since the last vacuum, which on a live fleet is nearly every page (PostgreSQL). Per status:
/// - not_applicable, pending_activation, unreachable (the clock cannot move them): the sum of
///   the cells of their `status_base`;
/// - update_failed, updating, not_configured, syncing: the sum of their base's cells minus
///   the sensors of that base the clock moved to disconnected (an index range of
///   `sensors_status_clock`) or to start_failed (the partial index `sensors_start_pending`):
///   few on a healthy fleet;
/// - disconnected, start_failed, outdated, up_to_date (decided by the clock or the published
///   releases): counted on the rows, as before.
///
/// All parts are subqueries of one statement, so they read one snapshot.
fn status_count_sql(scope: &Scope, f: &SensorFilter, ctx: &StatusContext) -> SqlQuery {
    use SensorStatus::*;
    let rest = SensorFilter { sensor_status: Vec::new(), ..f.clone() };
    let mut statuses = f.sensor_status.clone();
    statuses.sort_by_key(|s| s.rank());
    statuses.dedup();
    let ranks = |keep: fn(&SensorStatus) -> bool| -> Vec<String> {
        statuses.iter().filter(|s| keep(s)).map(|s| s.rank().to_string()).collect()
    };
    // Ranks are this crate's constants, written into the text (no parameter to keep in step).
    let counted = ranks(|s| {
        matches!(s, NotApplicable | PendingActivation | Unreachable | UpdateFailed | Updating | NotConfigured | Syncing)
    });
    let clocked = ranks(|s| matches!(s, UpdateFailed | Updating | NotConfigured | Syncing));
    let direct: Vec<SensorStatus> =
        statuses.iter().copied().filter(|s| matches!(s, Disconnected | StartFailed | Outdated | UpToDate)).collect();

    let mut q = SqlQuery::default();
    let mut sum = String::from("0");
    if !counted.is_empty() {
        let w = where_clause(scope, &rest, ctx, &mut q);
        sum.push_str(&format!(
            " + (SELECT COALESCE(SUM(n), 0) FROM sensor_counts WHERE {w} AND status_base IN ({}))",
            counted.join(", ")
        ));
    }
    if !clocked.is_empty() {
        let bases = clocked.join(", ");
        let clock = Clock::new(ctx, Hint::NONE);
        if ctx.disconnect_cutoff().is_some() {
            let w = where_clause(scope, &rest, ctx, &mut q);
            let disconnected = clock.disconnected(&mut q);
            sum.push_str(&format!(
                " - (SELECT COUNT(*) FROM sensors WHERE {w} AND status_base IN ({bases}) AND {disconnected})"
            ));
        }
        let w = where_clause(scope, &rest, ctx, &mut q);
        let start_failed = clock.start_failed(&mut q);
        let not_disconnected = clock.not_disconnected(&mut q);
        sum.push_str(&format!(
            " - (SELECT COUNT(*) FROM sensors WHERE {w} AND status_base IN ({bases}) AND {start_failed} AND {not_disconnected})"
        ));
    }
    if !direct.is_empty() {
        let only_direct = SensorFilter { sensor_status: direct, ..rest };
        let w = where_clause(scope, &only_direct, ctx, &mut q);
        sum.push_str(&format!(" + (SELECT COUNT(*) FROM sensors WHERE {w})"));
    }
    q.sql = format!("SELECT CAST({sum} AS BIGINT) AS n");
    q
}

/// How many sensors match, counting no further than `cap` (one row, column `n`): enough to
/// choose a page's plan without counting half a million matches.
pub fn capped_count_sql(
    scope: &Scope,
    f: &SensorFilter,
    ctx: &StatusContext,
    search: NameSearch,
    cap: u64,
) -> SqlQuery {
    let mut q = SqlQuery::default();
    let w = where_clause_with(scope, f, ctx, &mut q, Hint::NONE, search);
    let cap = q.bind(SqlParam::Int(i64::try_from(cap).unwrap_or(i64::MAX)));
    q.sql = format!("SELECT COUNT(*) AS n FROM (SELECT 1 FROM sensors WHERE {w} LIMIT {cap}) AS capped");
    q
}

/// Counts grouped by derived status rank, health rank and mode, for the summary.
pub fn summary_sql(scope: &Scope, ctx: &StatusContext) -> SqlQuery {
    let mut q = SqlQuery::default();
    let w = where_clause(scope, &SensorFilter::default(), ctx, &mut q);
    let rank = status_rank_expr(ctx, &mut q);
    q.sql = format!(
        "SELECT {rank} AS status_rank, health_rank, mode, COUNT(*) AS n FROM sensors WHERE {w} GROUP BY 1, 2, 3"
    );
    q
}
