//! Migration 0023's `sensors.blocked_kinds` (the status job's search skips the sensors whose
//! issue of a kind is open or muted): the triggers keep it equal to what `health_issues` says
//! through every way an issue changes, and a sensor is found again once its bit clears.

use futures_util::future::BoxFuture;

use super::*;

/// Sensors whose `blocked_kinds` differs from their open and muted issues (the same text on
/// both backends; 0 when the triggers are right).
pub const BLOCKED_KINDS_MISMATCHES: &str = "SELECT COUNT(*) FROM sensors WHERE blocked_kinds <> (\
SELECT COALESCE(SUM(DISTINCT CASE h.kind WHEN 'disconnected' THEN 1 WHEN 'service_stopped' THEN 2 \
WHEN 'start_failed' THEN 4 WHEN 'not_configured' THEN 8 WHEN 'update_failed' THEN 16 \
WHEN 'outdated' THEN 32 WHEN 'ti_stale' THEN 64 ELSE 0 END), 0) \
FROM health_issues h WHERE h.sensor_id = sensors.id AND (h.status = 'open' OR h.muted))";

/// Runs a one-number query (such as [`BLOCKED_KINDS_MISMATCHES`]) on the store's database,
/// outside the store.
pub type RawCount = dyn Fn(&'static str) -> BoxFuture<'static, i64> + Send + Sync;

async fn no_mismatch(raw: &RawCount, step: &str) {
    assert_eq!(raw(BLOCKED_KINDS_MISMATCHES).await, 0, "blocked_kinds wrong after {step}");
}

/// Every issue open on the store (paged).
async fn open_issues(store: &Arc<dyn Store>) -> Vec<crate::HealthIssue> {
    let mut all = Vec::new();
    let mut after: Option<IssueCursor> = None;
    loop {
        let page = store
            .list_health_issues(&HealthIssueQuery {
                scope: Scope::All,
                filter: HealthIssueFilter { status: vec![IssueStatus::Open], ..Default::default() },
                after: after.clone(),
                limit: 200,
            })
            .await
            .expect("list_health_issues");
        let Some(last) = page.last() else { return all };
        after = Some(IssueCursor { opened_at: last.opened_at.0, id: last.id.clone() });
        all.extend(page);
    }
}

/// `blocked_kinds` equals the open and muted issues after each kind of change (openings by
/// the job and unconditional ones, auto-closes, operator closes that mute, reopens, the
/// unmuting when a condition ends, a sensor's deletion); and a `service_stopped` sensor gets a
/// new issue after its issue was closed by the job and after an operator's muted close ended.
pub async fn blocked_kinds_follow_every_issue_change(store: Arc<dyn Store>, raw: &RawCount) {
    let c = ctx();
    let op = Audit { actor: "user:alice".into(), action: "health_issue.close".into(), at: at(1).now };
    // One sensor through the whole cycle of a kind with a partial index.
    let id = "svc-cycle";
    live_sensor(&store, id, Timestamp(NOW.0 - MIN)).await;
    let stopped = |status: ServiceStatus| heartbeat_reporting(&store, id, Timestamp(NOW.0 - MIN), status);
    let kind = HealthIssueKind::ServiceStopped;
    stopped(ServiceStatus::Stopped).await;
    assert_eq!(tick(&store, &c, "s1").await, (1, 0), "service_stopped opens");
    stopped(ServiceStatus::Running).await;
    assert_eq!(tick(&store, &c, "s2").await, (0, 1), "and closes");
    stopped(ServiceStatus::Stopped).await;
    assert_eq!(tick(&store, &c, "s3").await, (1, 0), "opens again after the job closed it");
    let issue = open_of(&store, id, kind).await.pop().expect("open service_stopped");
    store.close_health_issue(&issue.id, &Scope::All, &op).await.expect("operator close");
    assert_eq!(tick(&store, &c, "s4").await, (0, 0), "muted while still stopped");
    stopped(ServiceStatus::Running).await;
    assert_eq!(tick(&store, &c, "s5").await, (0, 0), "the condition ended: unmuted");
    no_mismatch(raw, "the unmuting").await;
    stopped(ServiceStatus::Stopped).await;
    assert_eq!(tick(&store, &c, "s6").await, (1, 0), "opens again after the muted close ended");
    no_mismatch(raw, "the service_stopped cycle").await;

    // Many sensors and issues, changed every way the store changes them.
    create_sub(&store).await;
    let rows = random_rows(150, 23);
    store.import_sensors(&rows).await.expect("import_sensors");
    no_mismatch(raw, "import").await;
    let raised = HealthIssueKind::FROM_FACTS.iter().chain([&HealthIssueKind::TiStale]);
    for (i, r) in rows.iter().enumerate().take(80) {
        for (j, kind) in raised.clone().enumerate() {
            let opened = store.open_health_issue(&issue_for(r, *kind, &format!("u{i}-{j}"), &c), None).await;
            assert!(opened.expect("open_health_issue").is_some());
        }
    }
    no_mismatch(raw, "unconditional openings").await;
    store.close_ended_health_issues(&c).await.expect("close_ended");
    no_mismatch(raw, "auto-closes").await;
    assert_eq!(tick(&store, &c, "t1").await.1, 0);
    no_mismatch(raw, "a tick's openings").await;
    let open = open_issues(&store).await;
    assert!(open.len() > 40, "fixture: many open issues ({})", open.len());
    for issue in open.iter().step_by(3) {
        store.close_health_issue(&issue.id, &Scope::All, &op).await.expect("operator close");
    }
    no_mismatch(raw, "operator closes").await;
    assert_eq!(tick(&store, &c, "t2").await, (0, 0), "muted issues are not opened again");
    let ro = Audit { actor: "user:alice".into(), action: "health_issue.reopen".into(), at: at(2).now };
    for issue in open.iter().step_by(6) {
        store.reopen_health_issue(&issue.id, &Scope::All, &ro).await.expect("reopen");
    }
    no_mismatch(raw, "reopens").await;
    // Later: every cloud sensor is silent, so most conditions end (muted issues unmute) and
    // `disconnected` opens.
    let later = at(60);
    tick(&store, &later, "t3").await;
    no_mismatch(raw, "a later tick").await;
    for r in rows.iter().take(10) {
        store.delete_sensor(&r.id, &Scope::All, &audit("sensor.delete")).await.expect("delete");
    }
    no_mismatch(raw, "deletes").await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::sql::blocked_bit;

    /// The bit of each kind is the same in the search (`blocked_bit`), in this suite's check and
    /// in both backends' migration 0023, and each kind raised from facts has its own bit.
    #[test]
    fn blocked_bits_agree_everywhere() {
        // The triggers as migration 0024 left them (0023 wrote them without `ti_stale`).
        let migrations = [
            include_str!("../../../picket-store-sqlite/migrations/0024_blocked_ti_stale.sql"),
            include_str!("../../../picket-store-postgres/migrations/0024_blocked_ti_stale.sql"),
        ];
        let first = [
            include_str!("../../../picket-store-sqlite/migrations/0023_blocked_kinds.sql"),
            include_str!("../../../picket-store-postgres/migrations/0023_blocked_kinds.sql"),
        ];
        let mut seen = 0;
        let kinds = HealthIssueKind::FROM_FACTS.iter().chain([&HealthIssueKind::TiStale]);
        for kind in kinds {
            let bit = blocked_bit(*kind).expect("a kind the job raises from facts has a bit");
            assert_eq!(bit.count_ones(), 1, "{kind}: one bit");
            assert_eq!(seen & bit, 0, "{kind}: a bit of its own");
            seen |= bit;
            let case = format!("WHEN '{}' THEN {bit}", kind.as_str());
            assert!(BLOCKED_KINDS_MISMATCHES.contains(&case), "{kind}: {case} in the check");
            for m in migrations {
                assert!(m.contains(&case), "{kind}: {case} in migration 0024");
            }
            // Each backend has the kind's partial index (`disconnected` keeps its clock range).
            let index = format!("(blocked_kinds & {bit}) = 0");
            let has_index = first.iter().zip(&migrations).all(|(a, b)| a.contains(&index) || b.contains(&index));
            assert!(has_index || *kind == HealthIssueKind::Disconnected, "{kind}: a partial index");
        }
        assert_eq!(blocked_bit(HealthIssueKind::WatchdogRestart), None);
    }
}
