//! The conformance suite of `RolloutStore`: grants go one at a time (normal ring first, the
//! delayed ring only once due), never two at once even when decided concurrently, reports
//! finish a grant exactly once, a failure pauses the rollout until resumed, and deadlines
//! fail open grants; the counts kept per (subscription, ring, version) by migration 0017's
//! triggers always equal a `GROUP BY` over every sensor. Backends run it with
//! `picket_store::rollout_conformance_tests!(fresh_store().await)`, plus
//! [`rollout_group_counts_follow_raw_changes`] with a raw SQL executor of their own.

use std::sync::Arc;

use picket_domain::rollout::RolloutPolicy;
use picket_domain::{Mode, SensorType, ServiceStatus, Timestamp, UpdateState, Version};

use crate::releases::conformance::release;
use crate::rollouts::RolloutGroup;
use crate::{Audit, Heartbeat, NewSensor, Scope, Store};

/// Expands into one `#[tokio::test]` per rollout conformance function (see
/// `conformance_tests!` for `$make`).
#[macro_export]
macro_rules! rollout_conformance_tests {
    ($make:expr) => {
        $crate::rollout_conformance_tests!(@each $make;
            rollout_grants_one_at_a_time_then_the_delayed_ring,
            concurrent_decisions_never_exceed_the_concurrency,
            failures_pause_and_deadlines_fail,
            rollout_sensors_pause_and_rollbacks,
            rollout_groups_count_and_pages_are_bounded,
            watchdog_restarts_are_recorded_once_and_go_quiet,
            rollout_group_counts_stay_exact,
            rollback_reads_are_bounded,
            bounded_grant_decisions_equal_the_scan,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::rollouts_conformance::$name(store).await;
            }
        )+
    };
}

const MIN: i64 = 60_000;
const NOW: Timestamp = Timestamp(1_800_000_000_000);
const DELAY: i64 = 60 * MIN;

fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

fn policy(concurrency: u32) -> RolloutPolicy {
    RolloutPolicy { concurrency, max_failures: 1, delay_ring_after_ms: DELAY }
}

/// An activated cloud-connected sensor `id` running 1.0.0.
async fn sensor(store: &Arc<dyn Store>, id: &str, delayed: bool) {
    let s = NewSensor {
        id: id.to_string(),
        name: format!("S-{id}"),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".to_string(),
        subscription: "default".to_string(),
        site: String::new(),
        zone: "default".to_string(),
        tags: Vec::new(),
        mode: Mode::CloudConnected,
        auto_ti_updates: false,
        description: String::new(),
        capture_setting: None,
        delayed_update: delayed,
        created_at: Timestamp(NOW.0 - 10 * MIN),
    };
    store.create_sensor(&s, &audit("sensor.onboard")).await.expect("create_sensor");
    let hash = format!("hash-{id}");
    store
        .set_activation_token(id, &Scope::All, &hash, Timestamp(NOW.0 + DELAY), &audit("sensor.token"))
        .await
        .expect("token");
    store.activate_sensor(id, &hash, &format!("fp-{id}"), NOW).await.expect("activate");
    beat(store, id, "1.0.0").await;
}

async fn beat(store: &Arc<dyn Store>, id: &str, version: &str) {
    let hb = Heartbeat {
        sensor_id: id.to_string(),
        at: NOW,
        service_status: ServiceStatus::Running,
        version: Some(version.parse::<Version>().expect("fixture version")),
        config_version_applied: 0,
        ti_version: None,
        service_started_at: None,
        rss_bytes: None,
        cpu_permille: None,
    };
    store.record_heartbeats(&[hb]).await.expect("heartbeat");
}

async fn published(store: &Arc<dyn Store>, version: &str) -> Version {
    let r = release(version, b"package bytes");
    store.publish_release(&r, b"package bytes", &audit("release.publish")).await.expect("publish");
    assert!(store.start_rollout(r.version, NOW).await.expect("start"));
    assert!(!store.start_rollout(r.version, NOW).await.expect("start again"), "a rollout starts once");
    r.version
}

async fn update_state(store: &Arc<dyn Store>, id: &str) -> UpdateState {
    store.get_sensor(id, &Scope::All).await.expect("get").expect("exists").update_state
}

/// Three normal sensors get grants in turn, each only after the previous one succeeded;
/// the delayed two wait for the delay; a report is applied once.
pub async fn rollout_grants_one_at_a_time_then_the_delayed_ring(store: Arc<dyn Store>) {
    for (id, delayed) in [("a", false), ("b", false), ("c", false), ("d", true), ("e", true)] {
        sensor(&store, id, delayed).await;
    }
    let target = published(&store, "1.1.0").await;
    let mut t = NOW;
    let mut order = Vec::new();
    for _ in 0..5 {
        let grants = store.decide_grants(policy(1), 30 * MIN, t).await.expect("decide");
        assert_eq!(grants.len(), 1, "one grant at {order:?}");
        let g = &grants[0];
        assert_eq!((g.version.as_str(), g.action.as_str(), g.deadline), ("1.1.0", "update", Timestamp(t.0 + 30 * MIN)));
        assert!(!g.sha256.is_empty());
        assert_eq!(store.open_grant(&g.sensor_id).await.expect("open"), Some(g.clone()));
        assert_eq!(update_state(&store, &g.sensor_id).await, UpdateState::Updating);
        assert!(store.decide_grants(policy(1), 30 * MIN, t).await.expect("decide").is_empty(), "nothing while open");
        assert!(store.finish_grant(&g.sensor_id, &g.update_id, true, None, t).await.expect("finish"));
        assert!(!store.finish_grant(&g.sensor_id, &g.update_id, true, None, t).await.expect("again"), "idempotent");
        assert_eq!(update_state(&store, &g.sensor_id).await, UpdateState::Idle);
        assert_eq!(store.open_grant(&g.sensor_id).await.expect("open"), None);
        beat(&store, &g.sensor_id, "1.1.0").await;
        order.push(g.sensor_id.clone());
        if order.len() == 3 {
            assert!(
                store.decide_grants(policy(1), 30 * MIN, t).await.expect("decide").is_empty(),
                "delayed ring waits"
            );
            t = Timestamp(NOW.0 + DELAY);
        }
    }
    assert_eq!(order, ["a", "b", "c", "d", "e"]);
    assert!(store.decide_grants(policy(1), 30 * MIN, t).await.expect("decide").is_empty());
    let grants = store.rollout_grants(target).await.expect("grants");
    assert_eq!(grants.len(), 5);
    assert!(grants.iter().all(|g| g.state == "succeeded"));
}

/// Many concurrent decisions at concurrency 1 grant exactly one sensor.
pub async fn concurrent_decisions_never_exceed_the_concurrency(store: Arc<dyn Store>) {
    for id in ["a", "b", "c", "d"] {
        sensor(&store, id, false).await;
    }
    published(&store, "1.1.0").await;
    let decisions = (0..8).map(|_| store.decide_grants(policy(1), 30 * MIN, NOW));
    let mut total = 0;
    for r in futures_util::future::join_all(decisions).await {
        total += r.expect("decide").len();
    }
    assert_eq!(total, 1, "concurrency 1 allows one open grant");
    let total2: usize = store.decide_grants(policy(3), 30 * MIN, NOW).await.expect("decide").len();
    assert_eq!(total2, 2, "concurrency 3 tops up to three");
}

/// A failed report marks the sensor failed and pauses the rollout until resumed; a grant
/// past its deadline fails once.
pub async fn failures_pause_and_deadlines_fail(store: Arc<dyn Store>) {
    for id in ["a", "b", "c"] {
        sensor(&store, id, false).await;
    }
    published(&store, "1.1.0").await;
    let g = store.decide_grants(policy(1), 30 * MIN, NOW).await.expect("decide").remove(0);
    assert!(store.finish_grant(&g.sensor_id, &g.update_id, false, Some("bad signature"), NOW).await.expect("fail"));
    assert_eq!(update_state(&store, &g.sensor_id).await, UpdateState::Failed);
    let r = store.current_rollout().await.expect("current").expect("exists");
    assert_eq!(r.failures, 1);
    assert!(store.decide_grants(policy(1), 30 * MIN, NOW).await.expect("decide").is_empty(), "paused by the failure");
    assert!(store.set_rollout_paused(false).await.expect("resume"));
    let g2 = store.decide_grants(policy(1), 30 * MIN, NOW).await.expect("decide").remove(0);
    assert_ne!(g2.sensor_id, g.sensor_id, "a failed sensor is not retried");
    assert!(store.expire_grants(Timestamp(NOW.0 + 30 * MIN)).await.expect("expire").is_empty(), "not yet");
    let expired = store.expire_grants(Timestamp(NOW.0 + 31 * MIN)).await.expect("expire");
    assert_eq!(expired.iter().map(|g| g.update_id.as_str()).collect::<Vec<_>>(), [g2.update_id.as_str()]);
    assert!(store.expire_grants(Timestamp(NOW.0 + 32 * MIN)).await.expect("expire").is_empty(), "once");
    assert_eq!(update_state(&store, &g2.sensor_id).await, UpdateState::Failed);
    assert!(!store.finish_grant(&g2.sensor_id, &g2.update_id, true, None, NOW).await.expect("late"), "too late");
    assert!(store.set_rollout_paused(true).await.expect("pause"));
    assert!(store.current_rollout().await.expect("current").expect("exists").paused);
}

/// `rollout_sensors` lists every sensor with its latest grant; `pause_rollout` audits and
/// returns the changed rollout; `grant_rollbacks` stores rollback grants (refusing a sensor
/// with an open grant, storing nothing then) and pauses when asked.
pub async fn rollout_sensors_pause_and_rollbacks(store: Arc<dyn Store>) {
    use crate::rollouts::{Grant, new_update_id};
    assert!(store.pause_rollout(true, &audit("rollout.pause")).await.expect("pause").is_none(), "no rollout yet");
    assert!(matches!(
        store.grant_rollbacks(&[], false, &audit("rollout.rollback")).await,
        Err(crate::StoreError::NotFound)
    ));
    for (id, delayed) in [("a", false), ("b", false), ("d", true)] {
        sensor(&store, id, delayed).await;
    }
    let target = published(&store, "1.1.0").await;
    let g = store.decide_grants(policy(1), 30 * MIN, NOW).await.expect("decide").remove(0);
    assert_eq!(g.sensor_id, "a");
    let rows = store.rollout_sensors(target).await.expect("sensors");
    assert_eq!(rows.iter().map(|r| r.sensor_id.as_str()).collect::<Vec<_>>(), ["a", "b", "d"]);
    assert_eq!(rows[0].name, "S-a");
    assert_eq!(rows[0].subscription, "default");
    assert_eq!(rows[0].version.as_deref(), Some("1.0.0"));
    assert_eq!(rows[0].grant.as_ref().map(|x| x.update_id.as_str()), Some(g.update_id.as_str()));
    assert_eq!(rows[0].finished_at, None);
    assert!(rows[1].grant.is_none());
    assert!(rows[2].delayed && !rows[1].delayed);

    let paused = store.pause_rollout(true, &audit("rollout.pause")).await.expect("pause").expect("exists");
    assert!(paused.paused);
    assert!(store.current_rollout().await.expect("current").expect("exists").paused);
    assert!(store.decide_grants(policy(3), 30 * MIN, NOW).await.expect("decide").is_empty(), "paused");
    let resumed = store.pause_rollout(false, &audit("rollout.resume")).await.expect("resume").expect("exists");
    assert!(!resumed.paused && resumed.failures == 0);
    let actions: Vec<String> =
        store.list_audit(None, 100).await.expect("audit").into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"rollout.pause".to_string()) && actions.contains(&"rollout.resume".to_string()));

    // a succeeds on 1.1.0; rolling back a and b (b has no open grant) works, but a sensor
    // with an open grant refuses the whole batch.
    beat(&store, "a", "1.1.0").await;
    assert!(store.finish_grant("a", &g.update_id, true, None, Timestamp(NOW.0 + 1)).await.expect("finish"));
    let rows = store.rollout_sensors(target).await.expect("sensors");
    assert_eq!(rows[0].finished_at, Some(Timestamp(NOW.0 + 1)));
    assert_eq!(rows[0].grant.as_ref().map(|x| x.state.as_str()), Some("succeeded"));
    let open = store.decide_grants(policy(1), 30 * MIN, Timestamp(NOW.0 + 2)).await.expect("decide").remove(0);
    assert_eq!(open.sensor_id, "b");
    let rollback = |id: &str| Grant {
        update_id: new_update_id().expect("id"),
        rollout_version: target,
        sensor_id: id.to_string(),
        version: "1.0.0".to_string(),
        action: "rollback".to_string(),
        sha256: String::new(),
        size: 0,
        granted_at: Timestamp(NOW.0 + 3),
        deadline: Timestamp(NOW.0 + 30 * MIN),
        state: "granted".to_string(),
        error: None,
    };
    let both = [rollback("a"), rollback("b")];
    assert!(matches!(
        store.grant_rollbacks(&both, true, &audit("rollout.rollback")).await,
        Err(crate::StoreError::Conflict(_))
    ));
    assert_eq!(update_state(&store, "a").await, UpdateState::Idle, "nothing stored on a conflict");
    assert!(!store.current_rollout().await.expect("current").expect("exists").paused);
    let only_a = [rollback("a")];
    store.grant_rollbacks(&only_a, true, &audit("rollout.rollback")).await.expect("rollback a");
    assert_eq!(update_state(&store, "a").await, UpdateState::Updating);
    assert!(store.current_rollout().await.expect("current").expect("exists").paused);
    let g_a = store.open_grant("a").await.expect("open").expect("a holds the rollback");
    assert_eq!((g_a.action.as_str(), g_a.version.as_str()), ("rollback", "1.0.0"));
    let rows = store.rollout_sensors(target).await.expect("sensors");
    assert_eq!(rows[0].grant.as_ref().map(|x| x.action.as_str()), Some("rollback"));
    assert_eq!(rows[0].finished_at, None);
}

/// `rollout_groups` counts every sensor once (those holding a grant in their own group);
/// `rollout_sensor_page` lists those holding an open grant plus the first by id, within the
/// limit and the scope.
pub async fn rollout_groups_count_and_pages_are_bounded(store: Arc<dyn Store>) {
    for (id, delayed) in [("a", false), ("b", false), ("c", false), ("d", true)] {
        sensor(&store, id, delayed).await;
    }
    let target = published(&store, "1.1.0").await;
    let g = store.decide_grants(policy(1), 30 * MIN, NOW).await.expect("decide").remove(0);
    assert!(store.finish_grant("a", &g.update_id, true, None, Timestamp(NOW.0 + 1)).await.expect("finish"));
    let open = store.decide_grants(policy(1), 30 * MIN, Timestamp(NOW.0 + 2)).await.expect("decide").remove(0);
    assert_eq!(open.sensor_id, "b");
    let mut groups: Vec<(bool, Option<String>, Option<String>, u64)> = store
        .rollout_groups(target)
        .await
        .expect("groups")
        .into_iter()
        .inspect(|g| assert_eq!((g.subscription.as_str(), g.version.as_deref()), ("default", Some("1.0.0"))))
        .map(|g| (g.delayed, g.grant_state, g.grant_action, g.n))
        .collect();
    groups.sort();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        groups,
        [
            (false, None, None, 1),
            (false, s("granted"), s("update"), 1),
            (false, s("succeeded"), s("update"), 1),
            (true, None, None, 1),
        ]
    );
    let ids = |rows: Vec<crate::rollouts::RolloutSensor>| rows.into_iter().map(|r| r.sensor_id).collect::<Vec<_>>();
    let page = store.rollout_sensor_page(target, &Scope::All, 1).await.expect("page");
    assert_eq!(
        page.iter().find(|r| r.sensor_id == "b").and_then(|r| r.grant.as_ref()).map(|g| g.state.as_str()),
        Some("granted")
    );
    assert_eq!(ids(page), ["a", "b"], "the open grant, then the first by id");
    assert_eq!(ids(store.rollout_sensor_page(target, &Scope::All, 2).await.expect("page")), ["a", "b"]);
    assert_eq!(ids(store.rollout_sensor_page(target, &Scope::All, 10).await.expect("page")), ["a", "b", "c", "d"]);
    let mine = Scope::Subscriptions(vec!["default".to_string()]);
    assert_eq!(ids(store.rollout_sensor_page(target, &mine, 10).await.expect("page")).len(), 4);
    let other = Scope::Subscriptions(vec!["other".to_string()]);
    assert!(store.rollout_sensor_page(target, &other, 10).await.expect("page").is_empty());
    let none = Scope::Subscriptions(Vec::new());
    assert!(store.rollout_sensor_page(target, &none, 10).await.expect("page").is_empty());
}

/// A watchdog restart is recorded once (a repeat or an older time changes nothing); a sensor
/// with an open `watchdog_restart` issue is quiet once no restart was recorded since.
pub async fn watchdog_restarts_are_recorded_once_and_go_quiet(store: Arc<dyn Store>) {
    use picket_domain::HealthIssueKind;
    sensor(&store, "a", false).await;
    sensor(&store, "b", false).await;
    let t1 = Timestamp(NOW.0 - 5 * MIN);
    assert!(store.record_watchdog_restart("a", t1).await.expect("record"));
    assert!(!store.record_watchdog_restart("a", t1).await.expect("again"), "the same restart once");
    assert!(!store.record_watchdog_restart("a", Timestamp(t1.0 - 1)).await.expect("older"));
    assert!(!store.record_watchdog_restart("missing", t1).await.expect("unknown sensor"));
    assert!(store.quiet_watchdog_sensors(NOW).await.expect("quiet").is_empty(), "no issue open");
    for id in ["a", "b"] {
        let kind = HealthIssueKind::WatchdogRestart;
        let issue = crate::NewHealthIssue {
            id: format!("issue-{id}"),
            sensor_id: id.to_string(),
            kind,
            opened_at: NOW,
            title: kind.title().to_string(),
            detail: "restarted".to_string(),
            recommendation: kind.recommendation().to_string(),
        };
        assert!(store.open_health_issue(&issue, None).await.expect("open").is_some());
    }
    // Quiet once the last recorded restart is before the cut; with none recorded (b: an issue
    // opened another way), once the issue's opening is.
    assert!(store.quiet_watchdog_sensors(t1).await.expect("quiet").is_empty(), "restart at the cut");
    assert_eq!(store.quiet_watchdog_sensors(Timestamp(t1.0 + 1)).await.expect("quiet"), ["a"]);
    assert_eq!(store.quiet_watchdog_sensors(NOW).await.expect("quiet"), ["a"]);
    assert_eq!(store.quiet_watchdog_sensors(Timestamp(NOW.0 + 1)).await.expect("quiet"), ["a", "b"]);
    let t2 = Timestamp(NOW.0 + 10);
    assert!(store.record_watchdog_restart("a", t2).await.expect("a later restart"));
    assert_eq!(store.quiet_watchdog_sensors(Timestamp(NOW.0 + 1)).await.expect("quiet"), ["b"]);
    assert_eq!(store.quiet_watchdog_sensors(Timestamp(t2.0 + 1)).await.expect("quiet"), ["a", "b"]);
}

/// The kept counts (`rollout_groups`) against the scan of every sensor
/// (`rollout_groups_by_scan`), both sorted; the kept groups.
async fn same_groups(store: &Arc<dyn Store>, version: Version, what: &str) -> Vec<RolloutGroup> {
    let key = |g: &RolloutGroup| {
        (g.subscription.clone(), g.delayed, g.version.clone(), g.grant_state.clone(), g.grant_action.clone())
    };
    let mut kept = store.rollout_groups(version).await.expect("rollout_groups");
    let mut scan = store.rollout_groups_by_scan(version).await.expect("rollout_groups_by_scan");
    kept.sort_by_key(key);
    scan.sort_by_key(key);
    assert_eq!(kept, scan, "kept counts differ from the scan after {what}");
    assert!(kept.iter().all(|g| g.n > 0), "a group of 0 listed after {what}: {kept:?}");
    kept
}

/// The groups without grants as `(subscription, delayed, version, n)`, sorted.
fn plain(groups: &[RolloutGroup]) -> Vec<(String, bool, Option<String>, u64)> {
    let mut out: Vec<_> = groups
        .iter()
        .filter(|g| g.grant_state.is_none())
        .map(|g| (g.subscription.clone(), g.delayed, g.version.clone(), g.n))
        .collect();
    out.sort();
    out
}

fn group(sub: &str, delayed: bool, version: Option<&str>, n: u64) -> (String, bool, Option<String>, u64) {
    (sub.to_string(), delayed, version.map(str::to_string), n)
}

async fn onboard(store: &Arc<dyn Store>, id: &str, subscription: &str, mode: Mode, delayed: bool) {
    let s = NewSensor {
        id: id.to_string(),
        name: format!("S-{id}"),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".to_string(),
        subscription: subscription.to_string(),
        site: String::new(),
        zone: "default".to_string(),
        tags: Vec::new(),
        mode,
        auto_ti_updates: false,
        description: String::new(),
        capture_setting: None,
        delayed_update: delayed,
        created_at: Timestamp(NOW.0 - 10 * MIN),
    };
    store.create_sensor(&s, &audit("sensor.onboard")).await.expect("create_sensor");
}

async fn activate(store: &Arc<dyn Store>, id: &str) {
    let hash = format!("hash-{id}");
    store
        .set_activation_token(id, &Scope::All, &hash, Timestamp(NOW.0 + DELAY), &audit("sensor.token"))
        .await
        .expect("token");
    store.activate_sensor(id, &hash, &format!("fp-{id}"), NOW).await.expect("activate");
}

fn heartbeat(id: &str, version: Option<&str>) -> Heartbeat {
    Heartbeat {
        sensor_id: id.to_string(),
        at: NOW,
        service_status: ServiceStatus::Running,
        version: version.map(|v| v.parse::<Version>().expect("fixture version")),
        config_version_applied: 0,
        ti_version: None,
        service_started_at: None,
        rss_bytes: None,
        cpu_permille: None,
    }
}

async fn set_delayed(store: &Arc<dyn Store>, id: &str, delayed: bool) {
    let patch = crate::SensorPatch { delayed_update: Some(delayed), ..Default::default() };
    store.update_sensor(id, &Scope::All, &patch, &audit("sensor.update")).await.expect("update_sensor");
}

async fn emea(store: &Arc<dyn Store>) {
    let s = crate::Subscription { name: "emea".to_string(), description: String::new(), created_at: NOW };
    store.create_subscription(&s, &audit("subscription.create")).await.expect("create_subscription");
}

/// Migration 0017's counts stay exact (equal to the scan, and to the expected groups)
/// through every write the API makes: onboarding (not counted until activated), activation,
/// heartbeats reporting a first, the same, a new or no version (alone and in batches), the
/// delayed ring toggled, decommission, delete, imports of every mode/activation/decommission
/// mix, and grants (counted in their own groups).
pub async fn rollout_group_counts_stay_exact(store: Arc<dyn Store>) {
    let target = published(&store, "1.1.0").await;
    assert!(same_groups(&store, target, "nothing").await.is_empty());
    emea(&store).await;
    onboard(&store, "a", "default", Mode::CloudConnected, false).await;
    onboard(&store, "b", "default", Mode::CloudConnected, true).await;
    onboard(&store, "c", "emea", Mode::CloudConnected, false).await;
    onboard(&store, "l", "default", Mode::LocallyManaged, false).await;
    onboard(&store, "p", "default", Mode::CloudConnected, false).await;
    assert!(same_groups(&store, target, "onboarding").await.is_empty(), "pending sensors are not counted");

    activate(&store, "a").await;
    let g = same_groups(&store, target, "an activation").await;
    assert_eq!(plain(&g), [group("default", false, None, 1)], "no version reported yet");
    for id in ["b", "c", "l"] {
        activate(&store, id).await;
    }
    store.record_heartbeats(&[heartbeat("a", Some("1.0.0"))]).await.expect("heartbeat");
    store
        .record_heartbeats(&[
            heartbeat("b", Some("1.0.0")),
            heartbeat("c", Some("1.0.0")),
            heartbeat("l", Some("1.0.0")),
        ])
        .await
        .expect("heartbeats");
    let g = same_groups(&store, target, "first versions").await;
    assert_eq!(
        plain(&g),
        [
            group("default", false, Some("1.0.0"), 1),
            group("default", true, Some("1.0.0"), 1),
            group("emea", false, Some("1.0.0"), 1)
        ],
        "the locally managed sensor is not counted"
    );
    store.record_heartbeats(&[heartbeat("a", Some("1.0.0")), heartbeat("b", Some("1.0.0"))]).await.expect("same");
    assert_eq!(plain(&same_groups(&store, target, "the same versions again").await), plain(&g));

    store.record_heartbeats(&[heartbeat("a", Some("1.1.0")), heartbeat("c", Some("1.1.0"))]).await.expect("new");
    let g = same_groups(&store, target, "new versions in a batch").await;
    assert_eq!(
        plain(&g),
        [
            group("default", false, Some("1.1.0"), 1),
            group("default", true, Some("1.0.0"), 1),
            group("emea", false, Some("1.1.0"), 1)
        ]
    );
    store.record_heartbeats(&[heartbeat("c", None)]).await.expect("no version");
    same_groups(&store, target, "a heartbeat without a version").await;
    store.record_heartbeats(&[heartbeat("c", Some("1.0.0"))]).await.expect("version again");

    set_delayed(&store, "a", true).await;
    let g = same_groups(&store, target, "joining the delayed ring").await;
    assert_eq!(
        plain(&g),
        [
            group("default", true, Some("1.0.0"), 1),
            group("default", true, Some("1.1.0"), 1),
            group("emea", false, Some("1.0.0"), 1)
        ]
    );
    set_delayed(&store, "a", true).await;
    same_groups(&store, target, "the same ring again").await;
    set_delayed(&store, "a", false).await;
    set_delayed(&store, "b", false).await;
    let g = same_groups(&store, target, "leaving the delayed ring").await;
    assert_eq!(
        plain(&g),
        [
            group("default", false, Some("1.0.0"), 1),
            group("default", false, Some("1.1.0"), 1),
            group("emea", false, Some("1.0.0"), 1)
        ]
    );

    store.decommission_sensor("c", &Scope::All, &audit("sensor.decommission")).await.expect("decommission");
    let g = same_groups(&store, target, "a decommission").await;
    assert_eq!(plain(&g), [group("default", false, Some("1.0.0"), 1), group("default", false, Some("1.1.0"), 1)]);
    store.record_heartbeats(&[heartbeat("c", Some("1.1.0"))]).await.expect("decommissioned heartbeat");
    same_groups(&store, target, "a decommissioned sensor's new version").await;

    for id in ["c", "p", "l", "a"] {
        store.delete_sensor(id, &Scope::All, &audit("sensor.delete")).await.expect("delete");
        same_groups(&store, target, &format!("deleting {id}")).await;
    }
    assert_eq!(plain(&same_groups(&store, target, "deletes").await), [group("default", false, Some("1.0.0"), 1)]);

    // Imports: every mix of mode, activation, decommission, ring, version and subscription.
    let mut rows = Vec::new();
    for i in 0..48u32 {
        let mut r = crate::sql::new_sensor_row(&NewSensor {
            id: format!("i{i:02}"),
            name: format!("I-{i:02}"),
            sensor_type: SensorType::DomainController,
            domain: String::new(),
            subscription: if i % 5 == 0 { "emea" } else { "default" }.to_string(),
            site: String::new(),
            zone: "default".to_string(),
            tags: Vec::new(),
            mode: if i % 7 == 3 { Mode::LocallyManaged } else { Mode::CloudConnected },
            auto_ti_updates: false,
            description: String::new(),
            capture_setting: None,
            delayed_update: i % 3 == 1,
            created_at: Timestamp(NOW.0 - 10 * MIN),
        });
        r.activated_at = (i % 4 != 2).then_some(Timestamp(NOW.0 - 5 * MIN));
        r.decommissioned_at = (i % 6 == 5).then_some(Timestamp(NOW.0 - MIN));
        r.version = ["1.0.0", "1.1.0", "0.9.0"].get((i % 4) as usize).map(|v| v.parse().expect("fixture version"));
        r.cert_fingerprint = r.activated_at.map(|_| format!("fp-i{i:02}"));
        rows.push(r);
    }
    store.import_sensors(&rows).await.expect("import");
    let g = same_groups(&store, target, "an import").await;
    let counted = rows
        .iter()
        .filter(|r| r.mode == Mode::CloudConnected && r.activated_at.is_some() && r.decommissioned_at.is_none())
        .count() as u64;
    assert_eq!(g.iter().map(|g| g.n).sum::<u64>(), counted + 1, "every counted sensor once");

    // Grants move sensors into their own groups; a finished update and its new version too.
    let grants = store.decide_grants(policy(3), 30 * MIN, NOW).await.expect("decide");
    assert_eq!(grants.len(), 3);
    let g = same_groups(&store, target, "grants").await;
    assert_eq!(g.iter().filter(|g| g.grant_state.as_deref() == Some("granted")).map(|g| g.n).sum::<u64>(), 3);
    assert_eq!(g.iter().map(|g| g.n).sum::<u64>(), counted + 1, "a sensor holding a grant is counted once");
    let first = &grants[0];
    store.record_heartbeats(&[heartbeat(&first.sensor_id, Some("1.1.0"))]).await.expect("updated");
    assert!(store.finish_grant(&first.sensor_id, &first.update_id, true, None, NOW).await.expect("finish"));
    same_groups(&store, target, "a finished update").await;
    let batch: Vec<Heartbeat> = rows.iter().map(|r| heartbeat(&r.id, Some("1.2.0"))).collect();
    store.record_heartbeats(&batch).await.expect("a batch of new versions");
    let g = same_groups(&store, target, "a batch of new versions").await;
    assert_eq!(g.iter().map(|g| g.n).sum::<u64>(), counted + 1);
}

/// Runs one SQL statement (the same text on both backends) on the store's database, outside
/// the store, as an operator's or a later migration's hand would.
pub type RawSql = dyn Fn(&'static str) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync;

/// Migration 0017's counts follow changes no API makes today (a sensor's subscription or
/// mode, an activation or decommission undone, many rows in one statement): the triggers
/// watch the columns, not the code paths.
pub async fn rollout_group_counts_follow_raw_changes(store: Arc<dyn Store>, raw: &RawSql) {
    let target = published(&store, "1.1.0").await;
    emea(&store).await;
    for (id, delayed) in [("a", false), ("b", true), ("c", false), ("d", false)] {
        sensor(&store, id, delayed).await;
    }
    let steps: [&'static str; 9] = [
        "UPDATE sensors SET subscription = 'emea' WHERE id = 'a'",
        "UPDATE sensors SET mode = 'locally_managed' WHERE id = 'b'",
        "UPDATE sensors SET mode = 'cloud_connected' WHERE id = 'b'",
        "UPDATE sensors SET activated_at = NULL WHERE id = 'c'",
        "UPDATE sensors SET activated_at = 1 WHERE id = 'c'",
        "UPDATE sensors SET decommissioned_at = 5 WHERE id IN ('a', 'd')",
        "UPDATE sensors SET decommissioned_at = NULL WHERE id = 'd'",
        "UPDATE sensors SET version = NULL, subscription = 'emea', delayed_update = delayed_update WHERE id <> 'a'",
        "UPDATE sensors SET version = '2.0.0', subscription = 'default', decommissioned_at = NULL, \
         mode = 'cloud_connected'",
    ];
    for step in steps {
        raw(step).await;
        same_groups(&store, target, step).await;
    }
    let g = same_groups(&store, target, "all").await;
    assert_eq!(plain(&g), [group("default", false, Some("2.0.0"), 3), group("default", true, Some("2.0.0"), 1)]);
}

/// The reads behind a rollback: one sensor by id (none when the rollout does not concern
/// it) and the sensors running a version, each with its latest grant.
pub async fn rollback_reads_are_bounded(store: Arc<dyn Store>) {
    for (id, delayed) in [("a", false), ("b", false), ("c", true)] {
        sensor(&store, id, delayed).await;
    }
    onboard(&store, "p", "default", Mode::CloudConnected, false).await;
    let target = published(&store, "1.1.0").await;
    let g = store.decide_grants(policy(1), 30 * MIN, NOW).await.expect("decide").remove(0);
    assert_eq!(g.sensor_id, "a");
    let all = store.rollout_sensors(target).await.expect("all");
    let a = store.rollout_sensor(target, "a").await.expect("a").expect("a is in the rollout");
    assert_eq!(Some(&a), all.iter().find(|s| s.sensor_id == "a"));
    assert_eq!(a.grant.as_ref().map(|x| x.update_id.as_str()), Some(g.update_id.as_str()));
    assert!(store.rollout_sensor(target, "p").await.expect("p").is_none(), "pending: not in the rollout");
    assert!(store.rollout_sensor(target, "missing").await.expect("missing").is_none());
    let v = |s: &str| s.parse::<Version>().expect("fixture version");
    let on_old = store.rollout_sensors_running(target, v("1.0.0")).await.expect("on 1.0.0");
    assert_eq!(on_old, all, "everyone still runs 1.0.0");
    assert!(store.rollout_sensors_running(target, v("1.1.0")).await.expect("on 1.1.0").is_empty());
    beat(&store, "a", "1.1.0").await;
    assert!(store.finish_grant("a", &g.update_id, true, None, NOW).await.expect("finish"));
    beat(&store, "c", "1.1.0").await;
    let ids = |rows: Vec<crate::rollouts::RolloutSensor>| rows.into_iter().map(|r| r.sensor_id).collect::<Vec<_>>();
    assert_eq!(ids(store.rollout_sensors_running(target, v("1.1.0")).await.expect("on 1.1.0")), ["a", "c"]);
    assert_eq!(ids(store.rollout_sensors_running(target, v("1.0.0")).await.expect("on 1.0.0")), ["b"]);
    let a = store.rollout_sensors_running(target, v("1.1.0")).await.expect("on 1.1.0").remove(0);
    assert_eq!(a.grant.as_ref().map(|x| x.state.as_str()), Some("succeeded"));
    store.decommission_sensor("c", &Scope::All, &audit("sensor.decommission")).await.expect("decommission");
    assert_eq!(ids(store.rollout_sensors_running(target, v("1.1.0")).await.expect("on 1.1.0")), ["a"]);
}

/// A sensor of the mixed fleet: onboarded in `subscription` as `mode`, activated when
/// `activated`, reporting `version` when given.
async fn fleet_sensor(
    store: &Arc<dyn Store>,
    id: &str,
    subscription: &str,
    mode: Mode,
    delayed: bool,
    activated: bool,
    version: Option<&str>,
) {
    onboard(store, id, subscription, mode, delayed).await;
    if activated {
        activate(store, id).await;
    }
    if let Some(v) = version {
        store.record_heartbeats(&[heartbeat(id, Some(v))]).await.expect("heartbeat");
    }
}

/// The sensors `decide_grants` grants through its indexes (open grants counted, then per ring
/// and version the first free sensors by id) are exactly those a decision over every sensor
/// grants, on a mixed fleet: both rings before and after the delay, versions below, at and
/// above the target, no version, another subscription, a locally managed, a not activated and
/// a decommissioned sensor, a grant still open and a failure from an earlier rollout, a ring
/// changed mid-rollout, failures pausing until resumed, concurrency 1 to 7.
pub async fn bounded_grant_decisions_equal_the_scan(store: Arc<dyn Store>) {
    use crate::rollouts::Grant;
    let ids = |gs: &[Grant]| gs.iter().map(|g| g.sensor_id.clone()).collect::<Vec<_>>();
    // The earlier rollout 1.1.0 leaves m holding an open grant and n failed.
    for id in ["m", "n"] {
        sensor(&store, id, false).await;
    }
    published(&store, "1.1.0").await;
    let first = store.decide_grants(policy(2), 30 * MIN, NOW).await.expect("decide 1.1.0");
    assert_eq!(ids(&first), ["m", "n"]);
    assert!(store.finish_grant("n", &first[1].update_id, false, Some("crashed"), NOW).await.expect("fail n"));
    emea(&store).await;
    let cloud = Mode::CloudConnected;
    for (id, sub, mode, delayed, activated, version) in [
        ("a0", "default", cloud, false, true, Some("1.0.0")),
        ("a1", "default", cloud, false, true, Some("1.1.0")),
        ("a2", "default", cloud, false, true, Some("1.0.0")),
        ("a3", "default", cloud, false, true, Some("1.2.0")),
        ("a4", "default", cloud, false, true, Some("1.3.0")),
        ("a5", "default", cloud, false, true, None),
        ("a6", "default", cloud, false, true, Some("1.1.0")),
        ("a7", "emea", cloud, false, true, Some("1.0.0")),
        ("a8", "default", cloud, false, true, Some("1.0.0")),
        ("a9", "default", Mode::LocallyManaged, false, false, None),
        ("aa", "default", cloud, false, false, None),
        ("d0", "default", cloud, true, true, Some("1.1.0")),
        ("d1", "default", cloud, true, true, Some("1.0.0")),
        ("d2", "emea", cloud, true, true, Some("1.0.0")),
        ("d3", "default", cloud, true, true, Some("1.2.0")),
    ] {
        fleet_sensor(&store, id, sub, mode, delayed, activated, version).await;
    }
    store.decommission_sensor("a8", &Scope::All, &audit("sensor.decommission")).await.expect("decommission");
    let target = published(&store, "1.2.0").await;
    let mut open = vec![first[0].clone()];
    let mut granted = Vec::new();
    for step in 0..60 {
        let t = if step < 6 { NOW } else { Timestamp(NOW.0 + DELAY) };
        if step == 3 {
            set_delayed(&store, "a6", true).await;
        }
        for conc in [1, 2, 3, 4, 7] {
            let scan = store.planned_grants_by_scan(policy(conc), t).await.expect("scan");
            let bounded = store.planned_grants(policy(conc), t).await.expect("bounded");
            assert_eq!(bounded, scan, "step {step}, concurrency {conc}");
        }
        let conc = 1 + step % 3;
        let expected = store.planned_grants_by_scan(policy(conc), t).await.expect("scan");
        let grants = store.decide_grants(policy(conc), 30 * MIN, t).await.expect("decide");
        assert_eq!(ids(&grants), expected, "step {step}: decide_grants grants what the scan plans");
        assert!(grants.iter().all(|g| g.rollout_version == target));
        granted.extend(ids(&grants));
        open.extend(grants);
        if open.is_empty() {
            if step >= 6 {
                break;
            }
            continue;
        }
        // The oldest open grant finishes: every third fails (pausing the rollout until
        // resumed), the others succeed on their version.
        let g = open.remove(0);
        if step % 3 == 2 && g.rollout_version == target {
            assert!(
                store.finish_grant(&g.sensor_id, &g.update_id, false, Some("no clearance"), t).await.expect("fail")
            );
            for conc in [1, 3, 7] {
                assert!(store.planned_grants(policy(conc), t).await.expect("bounded").is_empty(), "paused");
                assert!(store.planned_grants_by_scan(policy(conc), t).await.expect("scan").is_empty(), "paused");
            }
            assert!(store.decide_grants(policy(3), 30 * MIN, t).await.expect("decide").is_empty(), "paused");
            assert!(store.set_rollout_paused(false).await.expect("resume"));
        } else {
            beat(&store, &g.sensor_id, &g.version).await;
            assert!(store.finish_grant(&g.sensor_id, &g.update_id, true, None, t).await.expect("succeed"));
        }
    }
    assert!(open.is_empty(), "the rollout ran to its end: {open:?}");
    granted.sort();
    assert_eq!(granted, ["a0", "a1", "a2", "a6", "a7", "d0", "d1", "d2", "m", "n"], "each pending sensor once");
}
