//! The conformance suite of `HealthIssueStore`: the SQL conditions agree with
//! `picket_domain::issues` on random rows, an issue is never duplicated while open (also under
//! concurrent openings), each opening writes its outbox row and the sensor's counts, operator
//! closes hold while the condition persists, reopen refuses a second open issue, lists filter,
//! scope and page. Backends run it with `picket_store::health_conformance_tests!(...)`.

use std::collections::BTreeSet;
use std::sync::Arc;

use picket_domain::issues::{HealthIssueKind, IssueStatus, condition_ended, condition_holds, describe, should_open};
use picket_domain::{
    HealthStatus, Mode, SensorType, ServiceStatus, Severity, StatusContext, StatusTimings, Timestamp, UpdateState,
    Version,
};

use crate::health::{HealthIssueFilter, HealthIssueQuery, IssueCursor, NewHealthIssue, health_facts};
use crate::{Audit, NewSensor, Scope, SensorRow, Store, StoreError, Subscription};

mod blocked;
pub use blocked::{BLOCKED_KINDS_MISMATCHES, RawCount, blocked_kinds_follow_every_issue_change};

/// Expands into one `#[tokio::test]` per health conformance function (see
/// `conformance_tests!` for `$make`).
#[macro_export]
macro_rules! health_conformance_tests {
    ($make:expr) => {
        $crate::health_conformance_tests!(@each $make;
            health_conditions_agree_with_the_domain,
            health_issue_lifecycle,
            concurrent_openings_have_one_winner,
            health_issue_lists_filter_scope_and_page,
            silent_sensors_show_service_status_unknown,
            silent_stopped_sensor_closes_and_reopens_service_stopped_through_unknown,
            status_job_survives_the_outdated_threshold,
            candidates_beyond_the_limit_come_whole_in_batches,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::health_conformance::$name(store).await;
            }
        )+
    };
}

const MIN: i64 = 60_000;
const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("bad fixture version {s}: {e}"))
}

fn ctx() -> StatusContext {
    StatusContext {
        now: NOW,
        timings: StatusTimings::default(),
        outdated_below: Some(v("1.2.0")),
        watching_since: Timestamp(0),
    }
}

fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn ts(rng: &mut Rng) -> Option<Timestamp> {
    let offsets = [0, MIN, 9 * MIN, 10 * MIN - 1, 10 * MIN, 10 * MIN + 1, 30 * MIN, 30 * MIN + 1, 45 * MIN, 300 * MIN];
    if rng.chance(20) { None } else { Some(Timestamp(NOW.0 - rng.pick(&offsets))) }
}

/// `n` sensors with random facts near every condition's boundary.
fn random_rows(n: usize, seed: u64) -> Vec<SensorRow> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let versions = [v("1.0.0"), v("1.1.5"), v("1.2.0"), v("2.0.0")];
    (0..n)
        .map(|i| {
            let activated = rng.chance(85);
            SensorRow {
                id: format!("{:08x}-{i:04}", rng.next() as u32),
                name: format!("H{i:05}"),
                sensor_type: *rng.pick(SensorType::ALL),
                domain: "corp.example.com".to_string(),
                subscription: rng.pick(&["default", "sub-h"]).to_string(),
                site: String::new(),
                zone: "default".to_string(),
                tags: Vec::new(),
                mode: if rng.chance(10) { Mode::LocallyManaged } else { Mode::CloudConnected },
                auto_ti_updates: false,
                description: String::new(),
                capture_setting: match rng.below(3) {
                    0 => None,
                    1 => Some("  ".to_string()),
                    _ => Some("eth1".to_string()),
                },
                delayed_update: false,
                service_status: *rng.pick(ServiceStatus::ALL),
                version: if rng.chance(15) { None } else { Some(*rng.pick(&versions)) },
                created_at: Timestamp(NOW.0 - 1000 * MIN),
                last_seen_at: ts(&mut rng),
                activated_at: activated.then(|| Timestamp(NOW.0 - rng.pick(&[5 * MIN, 10 * MIN, 400 * MIN]))),
                decommissioned_at: rng.chance(8).then_some(Timestamp(NOW.0 - MIN)),
                service_started_at: ts(&mut rng),
                last_config_pull_at: ts(&mut rng),
                update_state: if rng.chance(70) { UpdateState::Idle } else { *rng.pick(UpdateState::ALL) },
                config_version_applied: rng.below(3) as i64,
                config_version_desired: rng.below(3) as i64,
                ti_version: None,
                open_issues: 0,
                health_status: HealthStatus::Healthy,
                activation_expires_at: None,
                cert_fingerprint: None,
            }
        })
        .collect()
}

async fn create_sub(store: &Arc<dyn Store>) {
    let sub = Subscription { name: "sub-h".into(), description: String::new(), created_at: NOW };
    store.create_subscription(&sub, &audit("subscription.create")).await.expect("create_subscription");
}

/// Every sensor whose `kind` condition holds and that has no blocking issue.
async fn all_candidates(store: &Arc<dyn Store>, kind: HealthIssueKind, c: &StatusContext) -> BTreeSet<String> {
    let page = store.health_candidates(c, 100_000).await.expect("health_candidates");
    let ids: BTreeSet<&str> = page.iter().map(|cand| cand.row.id.as_str()).collect();
    assert_eq!(ids.len(), page.len(), "a sensor is listed once");
    for cand in &page {
        assert!(!cand.kinds.is_empty(), "{} listed without a kind", cand.row.id);
    }
    page.into_iter().filter(|cand| cand.kinds.contains(&kind)).map(|cand| cand.row.id).collect()
}

fn issue_for(row: &SensorRow, kind: HealthIssueKind, id: &str, c: &StatusContext) -> NewHealthIssue {
    let t = describe(kind, &health_facts(row), c);
    NewHealthIssue {
        id: id.to_string(),
        sensor_id: row.id.clone(),
        kind,
        opened_at: c.now,
        title: t.title,
        detail: t.detail,
        recommendation: t.recommendation,
    }
}

/// The job's SQL (candidates to open, and open issues whose condition ended) selects exactly
/// the sensors `picket_domain::issues::should_open` and `condition_ended` say, for every
/// kind, in a normal context and in the grace period after a restart (with and without an
/// `outdated` threshold).
pub async fn health_conditions_agree_with_the_domain(store: Arc<dyn Store>) {
    create_sub(&store).await;
    let rows = random_rows(400, 7);
    store.import_sensors(&rows).await.expect("import_sensors");
    let grace = StatusContext { watching_since: Timestamp(NOW.0 - 2 * MIN), outdated_below: None, ..ctx() };
    let grace_outdated = StatusContext { watching_since: Timestamp(NOW.0 - 2 * MIN), ..ctx() };
    for c in [ctx(), grace, grace_outdated] {
        for kind in HealthIssueKind::ALL {
            let expected: BTreeSet<String> =
                rows.iter().filter(|r| should_open(*kind, &health_facts(r), &c)).map(|r| r.id.clone()).collect();
            let got = all_candidates(&store, *kind, &c).await;
            let wrong: Vec<String> = got
                .symmetric_difference(&expected)
                .filter_map(|id| rows.iter().find(|r| &r.id == id))
                .map(|r| format!("{} {:?} {}", r.id, health_facts(r), r.service_status))
                .collect();
            assert!(wrong.is_empty(), "{kind}: SQL and domain disagree on {} sensors: {wrong:#?}", wrong.len());
        }
    }
    // Open every job kind on every sensor (unconditionally), then let the job close the ones
    // whose condition does not hold: what stays open is exactly what holds.
    let c = ctx();
    for (i, r) in rows.iter().enumerate() {
        for (j, kind) in HealthIssueKind::FROM_FACTS.iter().enumerate() {
            let opened = store.open_health_issue(&issue_for(r, *kind, &format!("i{i}-{j}"), &c), None).await;
            assert!(opened.expect("open_health_issue").is_some(), "unconditional open of {kind}");
        }
    }
    // First in the grace period after a restart (no `disconnected` closes for silence alone),
    // then outside it: each pass closes what `condition_ended` says and was still open.
    let ended = |kind: HealthIssueKind, c: &StatusContext| -> BTreeSet<String> {
        rows.iter().filter(|r| condition_ended(kind, &health_facts(r), c)).map(|r| r.id.clone()).collect()
    };
    let in_grace = store.close_ended_health_issues(&grace).await.expect("close_ended_health_issues");
    let all_closed = store.close_ended_health_issues(&c).await.expect("close_ended_health_issues");
    for kind in HealthIssueKind::FROM_FACTS {
        let of_kind = |closed: &[crate::HealthIssue]| -> BTreeSet<String> {
            closed.iter().filter(|i| i.kind == *kind).map(|i| i.sensor_id.clone()).collect()
        };
        assert_eq!(of_kind(&in_grace), ended(*kind, &grace), "{kind}: auto-closed in the grace period");
        let expected: BTreeSet<String> = ended(*kind, &c).difference(&ended(*kind, &grace)).cloned().collect();
        assert_eq!(of_kind(&all_closed), expected, "{kind}: auto-closed after it");
    }
    // Counts and health rank follow the open issues (those neither pass closed).
    for r in rows.iter().take(60) {
        let f = health_facts(r);
        let holds: Vec<Severity> = HealthIssueKind::FROM_FACTS
            .iter()
            .filter(|k| !condition_ended(**k, &f, &grace) && !condition_ended(**k, &f, &c))
            .map(|k| k.severity())
            .collect();
        let got = store.get_sensor(&r.id, &Scope::All).await.expect("get_sensor").expect("sensor");
        assert_eq!(got.open_issues, holds.len() as i64, "{}: open_issues", r.id);
        assert_eq!(got.health_status, picket_domain::health_status(holds), "{}: health_status", r.id);
    }
}

fn dc(id: &str) -> NewSensor {
    NewSensor {
        id: id.to_string(),
        name: format!("DC-{id}"),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".to_string(),
        subscription: "default".to_string(),
        site: "hq".to_string(),
        zone: "default".to_string(),
        tags: Vec::new(),
        mode: Mode::CloudConnected,
        auto_ti_updates: false,
        description: String::new(),
        capture_setting: None,
        delayed_update: false,
        created_at: Timestamp(NOW.0 - 100 * MIN),
    }
}

/// An activated sensor last seen at `seen`, otherwise healthy.
async fn live_sensor(store: &Arc<dyn Store>, id: &str, seen: Timestamp) -> SensorRow {
    store.create_sensor(&dc(id), &audit("sensor.onboard")).await.expect("create_sensor");
    store
        .set_activation_token(id, &Scope::All, &format!("hash-{id}"), Timestamp(NOW.0 + 60 * MIN), &audit("t"))
        .await
        .expect("token");
    store
        .activate_sensor(id, &format!("hash-{id}"), &format!("fp-{id}"), Timestamp(NOW.0 - 90 * MIN))
        .await
        .expect("activate");
    store.record_config_pull(id, Timestamp(NOW.0 - 90 * MIN)).await.expect("pull");
    heartbeat(store, id, seen).await;
    store.get_sensor(id, &Scope::All).await.expect("get").expect("sensor")
}

async fn heartbeat(store: &Arc<dyn Store>, id: &str, at: Timestamp) {
    let hb = crate::Heartbeat {
        sensor_id: id.to_string(),
        at,
        service_status: ServiceStatus::Running,
        version: Some(v("1.3.0")),
        config_version_applied: 1,
        ti_version: None,
        service_started_at: Some(Timestamp(NOW.0 - 95 * MIN)),
        rss_bytes: None,
        cpu_permille: None,
    };
    store.record_heartbeats(&[hb]).await.expect("record_heartbeats");
}

fn at(minutes_after_now: i64) -> StatusContext {
    StatusContext { now: Timestamp(NOW.0 + minutes_after_now * MIN), ..ctx() }
}

/// Runs one tick of the job the way `picket-server` does.
async fn tick(store: &Arc<dyn Store>, c: &StatusContext, id_prefix: &str) -> (usize, usize) {
    let closed = store.close_ended_health_issues(c).await.expect("close_ended").len();
    let mut opened = 0;
    for (i, cand) in store.health_candidates(c, 100).await.expect("candidates").iter().enumerate() {
        for kind in &cand.kinds {
            let issue = issue_for(&cand.row, *kind, &format!("{id_prefix}-{i}-{kind}"), c);
            if store.open_health_issue(&issue, Some(c)).await.expect("open").is_some() {
                opened += 1;
            }
        }
    }
    (opened, closed)
}

async fn outbox(store: &Arc<dyn Store>) -> Vec<serde_json::Value> {
    store
        .unfanned_notifications(1000)
        .await
        .expect("unfanned_notifications")
        .into_iter()
        .map(|n| {
            let doc: serde_json::Value = serde_json::from_str(&n.payload).expect("payload is JSON");
            assert_eq!(doc["event"].as_str(), Some(n.event.as_str()), "event column matches the payload");
            doc
        })
        .collect()
}

/// A sensor not heard from for `disconnect_after` shows `service_status = unknown` (DESIGN.md),
/// not the last value it reported; one heard from keeps its value; its next heartbeat
/// writes the reported value again.
pub async fn silent_sensors_show_service_status_unknown(store: Arc<dyn Store>) {
    let silent = live_sensor(&store, "svc-silent", Timestamp(NOW.0 - 11 * MIN)).await;
    let live = live_sensor(&store, "svc-live", Timestamp(NOW.0 - MIN)).await;
    assert_eq!((silent.service_status, live.service_status), (ServiceStatus::Running, ServiceStatus::Running));
    let service = |id: &'static str| {
        let store = store.clone();
        async move { store.get_sensor(id, &Scope::All).await.expect("get").expect("sensor").service_status }
    };
    // Within the restart grace (`watching_since` recent), nobody is disconnected yet.
    let grace = StatusContext { watching_since: Timestamp(NOW.0 - 2 * MIN), ..ctx() };
    assert_eq!(store.forget_service_status(&grace).await.expect("forget"), 0);
    assert_eq!(store.forget_service_status(&ctx()).await.expect("forget"), 1, "the silent one only");
    assert_eq!(
        (service("svc-silent").await, service("svc-live").await),
        (ServiceStatus::Unknown, ServiceStatus::Running)
    );
    assert_eq!(store.forget_service_status(&ctx()).await.expect("forget"), 0, "already unknown");
    heartbeat(&store, "svc-silent", NOW).await;
    assert_eq!(service("svc-silent").await, ServiceStatus::Running, "heard from again");
}

/// A heartbeat of `id` at `at` reporting `service`, otherwise as [`heartbeat`].
async fn heartbeat_reporting(store: &Arc<dyn Store>, id: &str, at: Timestamp, service: ServiceStatus) {
    let hb = crate::Heartbeat {
        sensor_id: id.to_string(),
        at,
        service_status: service,
        version: Some(v("1.3.0")),
        config_version_applied: 1,
        ti_version: None,
        service_started_at: Some(Timestamp(NOW.0 - 95 * MIN)),
        rss_bytes: None,
        cpu_permille: None,
    };
    store.record_heartbeats(&[hb]).await.expect("record_heartbeats");
}

/// The open issues of `kind` of sensor `id`.
async fn open_of(store: &Arc<dyn Store>, id: &str, kind: HealthIssueKind) -> Vec<crate::HealthIssue> {
    let filter = HealthIssueFilter {
        status: vec![IssueStatus::Open],
        kind: vec![kind],
        sensor_id: vec![id.to_string()],
        ..Default::default()
    };
    let q = HealthIssueQuery { scope: Scope::All, filter, after: None, limit: 100 };
    store.list_health_issues(&q).await.expect("list_health_issues")
}

/// A sensor that reported `stopped` has an open `service_stopped` issue; silent, it shows
/// `unknown` and the issue closes (its condition needs a sensor heard from), no other kind
/// than `disconnected` opens; back with `stopped`, a new `service_stopped` opens; back with
/// `running`, it closes. `unknown` itself never raises `service_stopped`. A locally managed
/// sensor is never touched.
pub async fn silent_stopped_sensor_closes_and_reopens_service_stopped_through_unknown(store: Arc<dyn Store>) {
    let id = "svc-stopped";
    live_sensor(&store, id, Timestamp(NOW.0 - MIN)).await;
    heartbeat_reporting(&store, id, Timestamp(NOW.0 - MIN), ServiceStatus::Stopped).await;
    let mut local = dc("svc-local");
    local.mode = Mode::LocallyManaged;
    store.create_sensor(&local, &audit("sensor.onboard")).await.expect("create_sensor");
    let local_before = store.get_sensor("svc-local", &Scope::All).await.expect("get").expect("sensor").service_status;
    let full_tick = |c: StatusContext, prefix: &'static str| {
        let store = store.clone();
        async move {
            store.forget_service_status(&c).await.expect("forget");
            tick(&store, &c, prefix).await
        }
    };
    assert_eq!(full_tick(ctx(), "a").await, (1, 0), "service_stopped opens");
    assert_eq!(open_of(&store, id, HealthIssueKind::ServiceStopped).await.len(), 1);
    // Eleven minutes later, not heard from: unknown, service_stopped closed, disconnected open.
    let later = at(10);
    assert_eq!(full_tick(later, "b").await, (1, 1), "disconnected opens, service_stopped closes");
    let row = store.get_sensor(id, &Scope::All).await.expect("get").expect("sensor");
    assert_eq!(row.service_status, ServiceStatus::Unknown);
    assert!(open_of(&store, id, HealthIssueKind::ServiceStopped).await.is_empty());
    assert_eq!(open_of(&store, id, HealthIssueKind::Disconnected).await.len(), 1);
    assert_eq!(full_tick(later, "c").await, (0, 0), "stable while silent");
    // Back, still stopped: disconnected closes, a new service_stopped opens.
    heartbeat_reporting(&store, id, later.now, ServiceStatus::Stopped).await;
    assert_eq!(full_tick(later, "d").await, (1, 1));
    let row = store.get_sensor(id, &Scope::All).await.expect("get").expect("sensor");
    assert_eq!(row.service_status, ServiceStatus::Stopped, "the reported value is back");
    assert_eq!(open_of(&store, id, HealthIssueKind::ServiceStopped).await.len(), 1);
    // Running again: it closes; the forget leaves a sensor heard from alone.
    heartbeat_reporting(&store, id, later.now, ServiceStatus::Running).await;
    assert_eq!(full_tick(later, "e").await, (0, 1));
    assert_eq!(
        store.get_sensor(id, &Scope::All).await.expect("get").expect("sensor").service_status,
        ServiceStatus::Running
    );
    let local_after = store.get_sensor("svc-local", &Scope::All).await.expect("get").expect("sensor").service_status;
    assert_eq!(local_after, local_before, "a locally managed sensor is not touched");
}

/// The status job's statements and the status filters keep working on the same pooled
/// connections when the number of releases crosses the `outdated` threshold and back
/// (`outdated_below` None, then Some, then None): each SQL text always carries the same
/// parameters. (PostgreSQL refused the Bind of a text sqlx had prepared with another count:
/// the job failed on every tick and no `update_failed` issue opened.)
pub async fn status_job_survives_the_outdated_threshold(store: Arc<dyn Store>) {
    let silent = live_sensor(&store, "thr-silent", Timestamp(NOW.0 - 11 * MIN)).await;
    let live = live_sensor(&store, "thr-failed", Timestamp(NOW.0 - MIN)).await;
    let failed = SensorRow {
        id: "thr-failed-2".into(),
        name: "DC-thr-failed-2".into(),
        cert_fingerprint: Some("fp-thr-failed-2".into()),
        update_state: UpdateState::Failed,
        ..live
    };
    store.import_sensors(std::slice::from_ref(&failed)).await.expect("import_sensors");
    let few = StatusContext { outdated_below: None, ..ctx() };
    let many = ctx();
    let failed_filter =
        crate::SensorFilter { sensor_status: vec![picket_domain::SensorStatus::UpdateFailed], ..Default::default() };
    let disconnected_filter =
        crate::SensorFilter { sensor_status: vec![picket_domain::SensorStatus::Disconnected], ..Default::default() };
    // More rounds than a pool has connections, so every connection prepares each text first
    // with one context and then meets the other.
    for (round, c) in [few, many, few].iter().enumerate() {
        for i in 0..12 {
            let at = format!("round {round}, call {i}");
            store.forget_service_status(c).await.unwrap_or_else(|e| panic!("forget_service_status, {at}: {e}"));
            store.close_ended_health_issues(c).await.unwrap_or_else(|e| panic!("close_ended, {at}: {e}"));
            let cands = store.health_candidates(c, 100).await.unwrap_or_else(|e| panic!("candidates, {at}: {e}"));
            let kinds: Vec<_> =
                cands.iter().find(|x| x.row.id == failed.id).map(|x| x.kinds.clone()).unwrap_or_default();
            assert_eq!(kinds, vec![HealthIssueKind::UpdateFailed], "{at}");
            let n = store
                .count_sensors(&Scope::All, &failed_filter, c)
                .await
                .unwrap_or_else(|e| panic!("count, {at}: {e}"));
            assert_eq!(n, 1, "{at}");
            let n = store
                .count_sensors(&Scope::All, &disconnected_filter, c)
                .await
                .unwrap_or_else(|e| panic!("count, {at}: {e}"));
            assert_eq!(n, 1, "{at}");
        }
    }
    let row = store.get_sensor(&silent.id, &Scope::All).await.expect("get").expect("sensor");
    assert_eq!(row.service_status, ServiceStatus::Unknown);
    assert_eq!(tick(&store, &many, "thr").await, (2, 0), "update_failed and disconnected open");
    assert_eq!(open_of(&store, &failed.id, HealthIssueKind::UpdateFailed).await.len(), 1);
}

/// More sensors of one kind than the job's batch (`limit`): each batch lists at most `limit`
/// sensors, once each, and each with every kind it needs (also those of kinds found through
/// another kind's search); opening a batch's issues moves on to the next, until every
/// condition has its issue and nothing is listed.
pub async fn candidates_beyond_the_limit_come_whole_in_batches(store: Arc<dyn Store>) {
    let live = live_sensor(&store, "lim-0", Timestamp(NOW.0 - MIN)).await;
    let rows: Vec<SensorRow> = (1..=7)
        .map(|i| SensorRow {
            id: format!("lim-{i}"),
            name: format!("DC-lim-{i}"),
            cert_fingerprint: Some(format!("fp-lim-{i}")),
            service_status: ServiceStatus::Stopped,
            update_state: if i % 2 == 0 { UpdateState::Failed } else { UpdateState::Idle },
            ..live.clone()
        })
        .collect();
    store.import_sensors(&rows).await.expect("import_sensors");
    let c = ctx();
    let mut opened: BTreeSet<(String, HealthIssueKind)> = BTreeSet::new();
    for round in 0..20 {
        let batch = store.health_candidates(&c, 2).await.expect("health_candidates");
        assert!(batch.len() <= 2, "round {round}: {} sensors over the limit", batch.len());
        let ids: BTreeSet<&str> = batch.iter().map(|x| x.row.id.as_str()).collect();
        assert_eq!(ids.len(), batch.len(), "round {round}: a sensor is listed once");
        for cand in &batch {
            let row = rows.iter().find(|r| r.id == cand.row.id).expect("a sensor of the test");
            let mut want: Vec<HealthIssueKind> = HealthIssueKind::FROM_FACTS
                .iter()
                .copied()
                .filter(|k| condition_holds(*k, &health_facts(row), &c) && !opened.contains(&(row.id.clone(), *k)))
                .collect();
            let mut got = cand.kinds.clone();
            want.sort_by_key(|k| k.as_str());
            got.sort_by_key(|k| k.as_str());
            assert_eq!(got, want, "round {round}: kinds of {}", row.id);
            for kind in &cand.kinds {
                let issue = issue_for(&cand.row, *kind, &format!("lim-r{round}-{}-{kind}", cand.row.id), &c);
                assert!(store.open_health_issue(&issue, Some(&c)).await.expect("open").is_some(), "opens");
                opened.insert((cand.row.id.clone(), *kind));
            }
        }
        if batch.is_empty() {
            break;
        }
    }
    let expected: BTreeSet<(String, HealthIssueKind)> = rows
        .iter()
        .flat_map(|r| {
            HealthIssueKind::FROM_FACTS
                .iter()
                .filter(|k| condition_holds(**k, &health_facts(r), &c))
                .map(|k| (r.id.clone(), *k))
        })
        .collect();
    assert_eq!(expected.len(), 10, "7 service_stopped and 3 update_failed");
    assert_eq!(opened, expected, "every condition got its issue, in batches of 2");
    assert!(store.health_candidates(&c, 2).await.expect("health_candidates").is_empty(), "none left");

    // Four services run again: their service_stopped issues end. Re-checked 3 open issues at
    // a time, round robin, the passes close exactly those four and nothing else.
    for i in 1..=4 {
        heartbeat(&store, &format!("lim-{i}"), Timestamp(NOW.0 - MIN)).await;
    }
    let mut closed: BTreeSet<(String, HealthIssueKind)> = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut batches = 0;
    loop {
        let batch = store.close_ended_health_issues_after(&c, after.as_deref(), 3).await.expect("close batch");
        batches += 1;
        assert!(batch.closed.len() <= 3, "a batch checks at most its limit");
        closed.extend(batch.closed.into_iter().map(|i| (i.sensor_id, i.kind)));
        match batch.next {
            Some(next) => {
                assert!(after.as_deref().is_none_or(|a| next.as_str() > a), "the cursor moves on");
                after = Some(next);
            }
            None => break,
        }
        assert!(batches < 10, "10 open issues in batches of 3 end within 4 batches");
    }
    assert_eq!(batches, 4, "10 open issues, 3 per batch");
    let want: BTreeSet<(String, HealthIssueKind)> =
        (1..=4).map(|i| (format!("lim-{i}"), HealthIssueKind::ServiceStopped)).collect();
    assert_eq!(closed, want, "only the ended conditions closed");
    assert!(store.close_ended_health_issues(&c).await.expect("full pass").is_empty(), "nothing else ended");
}

/// Open on condition, never twice, outbox and counts in step; auto-close; operator close holds
/// while the condition persists and a new issue opens after it ended and started again;
/// reopen notifies and refuses a second open issue; deleting the sensor removes its issues.
pub async fn health_issue_lifecycle(store: Arc<dyn Store>) {
    let s = live_sensor(&store, "s1", Timestamp(NOW.0 - 11 * MIN)).await;
    // Grace period after a restart: nothing yet.
    let grace = StatusContext { watching_since: Timestamp(NOW.0 - 5 * MIN), ..ctx() };
    assert_eq!(tick(&store, &grace, "g").await, (0, 0), "no disconnected issue during the grace period");
    assert_eq!(tick(&store, &ctx(), "a").await, (1, 0), "disconnected after 11 minutes of silence");
    assert_eq!(tick(&store, &ctx(), "b").await, (0, 0), "never a second open issue");
    // The server restarts: its grace period neither closes the open issue nor opens another.
    let restarted = StatusContext { watching_since: Timestamp(NOW.0 - MIN), ..ctx() };
    assert_eq!(tick(&store, &restarted, "r").await, (0, 0), "a restart keeps the open disconnected issue");
    let batch = store.close_ended_health_issues_after(&restarted, None, 100).await.expect("ended after");
    assert!(batch.closed.is_empty(), "{:?}", batch.closed);
    let row = store.get_sensor("s1", &Scope::All).await.expect("get").expect("sensor");
    assert_eq!((row.open_issues, row.health_status), (1, HealthStatus::NotHealthyHigh));
    let open = store
        .list_health_issues(&HealthIssueQuery {
            scope: Scope::All,
            filter: HealthIssueFilter { sensor_id: vec!["s1".into()], ..Default::default() },
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(open.len(), 1);
    let first = open[0].clone();
    assert_eq!(
        (first.kind, first.status, first.severity),
        (HealthIssueKind::Disconnected, IssueStatus::Open, Severity::High)
    );
    assert!(first.detail.contains("No heartbeat since"), "{}", first.detail);
    assert_eq!(first.sensor_name, s.name);

    let docs = outbox(&store).await;
    assert_eq!(docs.len(), 1, "one outbox row per opening: {docs:?}");
    let d = &docs[0];
    assert_eq!(d["event"], "health_issue.opened");
    assert_eq!(d["issue"]["id"], first.id.as_str());
    assert_eq!(d["issue"]["sensor_id"], "s1");
    assert_eq!(d["issue"]["kind"], "disconnected");
    assert_eq!(d["issue"]["severity"], "high");
    assert_eq!(d["issue"]["status"], "open");
    assert_eq!(d["issue"]["closed_at"], serde_json::Value::Null);
    assert_eq!(d["issue"]["opened_at"], crate::health::rfc3339(NOW).as_str());
    for k in ["title", "detail", "recommendation"] {
        assert!(d["issue"][k].as_str().is_some_and(|t| !t.is_empty()), "payload issue.{k}");
    }
    assert_eq!(d["sensor"]["id"], "s1");
    assert_eq!(d["sensor"]["name"], s.name.as_str());
    assert_eq!(d["sensor"]["type"], "domain_controller");
    for k in ["domain", "site", "zone", "subscription"] {
        assert!(d["sensor"][k].is_string(), "payload sensor.{k}");
    }

    // It heartbeats again: auto-closed by `system`, counts back to healthy.
    heartbeat(&store, "s1", Timestamp(NOW.0 + MIN)).await;
    assert_eq!(tick(&store, &at(2), "c").await, (0, 1));
    let closed = store.get_health_issue(&first.id, &Scope::All).await.expect("get").expect("issue");
    assert_eq!((closed.status, closed.closed_by.as_deref()), (IssueStatus::Closed, Some("system")));
    assert_eq!(closed.closed_at, Some(at(2).now));
    let row = store.get_sensor("s1", &Scope::All).await.expect("get").expect("sensor");
    assert_eq!((row.open_issues, row.health_status), (0, HealthStatus::Healthy));

    // Silent again: a new issue; an operator closes it while the sensor stays silent.
    assert_eq!(tick(&store, &at(20), "d").await, (1, 0));
    let second = store
        .list_health_issues(&HealthIssueQuery {
            scope: Scope::All,
            filter: HealthIssueFilter { status: vec![IssueStatus::Open], ..Default::default() },
            after: None,
            limit: 10,
        })
        .await
        .expect("list")
        .pop()
        .expect("second issue");
    assert_ne!(second.id, first.id);
    let op = Audit { actor: "user:alice".into(), action: "health_issue.close".into(), at: at(21).now };
    let c = store.close_health_issue(&second.id, &Scope::All, &op).await.expect("operator close");
    assert_eq!((c.status, c.closed_by.as_deref()), (IssueStatus::Closed, Some("user:alice")));
    let e = store.close_health_issue(&second.id, &Scope::All, &op).await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "closing a closed issue: {e:?}");
    assert_eq!(tick(&store, &at(22), "e").await, (0, 0), "an operator close holds while the condition persists");
    let row = store.get_sensor("s1", &Scope::All).await.expect("get").expect("sensor");
    assert_eq!((row.open_issues, row.health_status), (0, HealthStatus::Healthy));

    // Reopen: open again, notified; reopening the older one then conflicts.
    let ro = Audit { actor: "user:alice".into(), action: "health_issue.reopen".into(), at: at(23).now };
    let r = store.reopen_health_issue(&second.id, &Scope::All, &ro).await.expect("reopen");
    assert_eq!((r.status, r.closed_at), (IssueStatus::Open, None));
    let docs = outbox(&store).await;
    assert_eq!(docs.last().map(|d| d["event"].clone()), Some("health_issue.reopened".into()));
    assert_eq!(docs.last().map(|d| d["issue"]["status"].clone()), Some("open".into()));
    match store.reopen_health_issue(&first.id, &Scope::All, &ro).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains(&second.id) && m.contains("disconnected"), "{m}"),
        other => panic!("reopening beside an open issue of the kind: {other:?}"),
    }
    assert!(matches!(store.reopen_health_issue(&second.id, &Scope::All, &ro).await, Err(StoreError::Conflict(_))));
    let row = store.get_sensor("s1", &Scope::All).await.expect("get").expect("sensor");
    assert_eq!((row.open_issues, row.health_status), (1, HealthStatus::NotHealthyHigh));

    // Close it again; the condition ends (a heartbeat) and starts again: a new issue opens.
    store.close_health_issue(&second.id, &Scope::All, &op).await.expect("close again");
    assert_eq!(tick(&store, &at(24), "f").await, (0, 0));
    heartbeat(&store, "s1", at(25).now).await;
    assert_eq!(tick(&store, &at(26), "g2").await, (0, 0), "condition ended: nothing to open or close");
    assert_eq!(tick(&store, &at(40), "h").await, (1, 0), "the condition started again: a new issue");

    // Out of scope looks missing; delete removes the issues with the sensor.
    let other = Scope::Subscriptions(vec!["nope".into()]);
    assert_eq!(store.get_health_issue(&first.id, &other).await.expect("get"), None);
    assert!(matches!(store.close_health_issue(&first.id, &other, &op).await, Err(StoreError::NotFound)));
    store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await.expect("delete");
    assert_eq!(store.get_health_issue(&first.id, &Scope::All).await.expect("get"), None);
    assert_eq!(store.count_health_issues(&Scope::All, &HealthIssueFilter::default()).await.expect("count"), 0);

    // Event kinds: raised without a condition, resolved by the code that raised them.
    let s2 = live_sensor(&store, "s2", NOW).await;
    let w = issue_for(&s2, HealthIssueKind::WatchdogRestart, "w1", &ctx());
    assert!(store.open_health_issue(&w, None).await.expect("raise").is_some());
    let w2 = NewHealthIssue { id: "w2".into(), ..w };
    assert!(store.open_health_issue(&w2, None).await.expect("raise").is_none(), "never twice while open");
    let r = store.resolve_health_issue("s2", HealthIssueKind::WatchdogRestart, at(1).now).await.expect("resolve");
    assert_eq!(r.map(|i| (i.id, i.status)), Some(("w1".to_string(), IssueStatus::Closed)));
    assert!(store.resolve_health_issue("s2", HealthIssueKind::WatchdogRestart, at(1).now).await.expect("r").is_none());
}

/// Many openings of one issue at once (as from several replicas): exactly one wins.
pub async fn concurrent_openings_have_one_winner(store: Arc<dyn Store>) {
    let s = live_sensor(&store, "c1", Timestamp(NOW.0 - 30 * MIN)).await;
    let c = ctx();
    let issues: Vec<NewHealthIssue> =
        (0..8).map(|i| issue_for(&s, HealthIssueKind::Disconnected, &format!("race-{i}"), &c)).collect();
    let results = futures_util::future::join_all(issues.iter().map(|i| store.open_health_issue(i, Some(&c)))).await;
    let mut winners = 0;
    for r in results {
        if r.expect("open_health_issue").is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent opening wins");
    let f = HealthIssueFilter { status: vec![IssueStatus::Open], ..Default::default() };
    assert_eq!(store.count_health_issues(&Scope::All, &f).await.expect("count"), 1);
    assert_eq!(outbox(&store).await.len(), 1, "one notification");
    let row = store.get_sensor("c1", &Scope::All).await.expect("get").expect("sensor");
    assert_eq!(row.open_issues, 1);
}

/// Filters by status, severity, kind and sensor; scope by subscription; pages by cursor.
pub async fn health_issue_lists_filter_scope_and_page(store: Arc<dyn Store>) {
    create_sub(&store).await;
    let mut sensors = Vec::new();
    for i in 0..5 {
        let mut n = dc(&format!("l{i}"));
        if i % 2 == 1 {
            n.subscription = "sub-h".into();
        }
        store.create_sensor(&n, &audit("sensor.onboard")).await.expect("create");
        sensors.push(store.get_sensor(&n.id, &Scope::All).await.expect("get").expect("sensor"));
    }
    let mut n = 0;
    for (i, s) in sensors.iter().enumerate() {
        for (j, kind) in [HealthIssueKind::Disconnected, HealthIssueKind::Outdated, HealthIssueKind::NotConfigured]
            .iter()
            .enumerate()
        {
            let c = StatusContext { now: Timestamp(NOW.0 + ((i * 3 + j) % 4) as i64 * MIN), ..ctx() };
            store.open_health_issue(&issue_for(s, *kind, &format!("x{n:02}"), &c), None).await.expect("open");
            n += 1;
        }
    }
    let all = HealthIssueFilter::default();
    assert_eq!(store.count_health_issues(&Scope::All, &all).await.expect("count"), 15);
    let sub = Scope::Subscriptions(vec!["sub-h".into()]);
    assert_eq!(store.count_health_issues(&sub, &all).await.expect("count"), 6);
    assert_eq!(store.count_health_issues(&Scope::Subscriptions(vec![]), &all).await.expect("count"), 0);
    let f = HealthIssueFilter {
        severity: vec![Severity::High, Severity::Low],
        sensor_id: vec!["l0".into(), "l1".into()],
        ..Default::default()
    };
    assert_eq!(store.count_health_issues(&Scope::All, &f).await.expect("count"), 4);
    let f = HealthIssueFilter {
        kind: vec![HealthIssueKind::Outdated],
        status: vec![IssueStatus::Open],
        ..Default::default()
    };
    assert_eq!(store.count_health_issues(&Scope::All, &f).await.expect("count"), 5);
    let f = HealthIssueFilter { status: vec![IssueStatus::Closed], ..Default::default() };
    assert_eq!(store.count_health_issues(&Scope::All, &f).await.expect("count"), 0);

    // Pages of 4, newest first, cover everything once.
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = None;
    loop {
        let q = HealthIssueQuery { scope: Scope::All, filter: all.clone(), after: after.clone(), limit: 4 };
        let page = store.list_health_issues(&q).await.expect("list");
        seen.extend(page.iter().map(|i| (i.opened_at.0, i.id.clone())));
        match page.last() {
            Some(last) if page.len() == 4 => {
                let c = IssueCursor { opened_at: last.opened_at.0, id: last.id.clone() };
                assert_eq!(IssueCursor::decode(&c.encode()), Some(c.clone()));
                after = Some(c);
            }
            _ => break,
        }
    }
    assert_eq!(seen.len(), 15);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, ties by id descending");
}
