//! The conformance suite of `AlertStore`: an upload stores each (sensor, id) once however often
//! it is sent (also by concurrent uploads), every newly stored alert writes exactly one
//! `alert.raised` outbox row and repeats write none, lists are newest first with keyset
//! cursors, filters (sensor, severity, since) and subscription scope agree with `total`.
//! Backends run it with `picket_store::alert_conformance_tests!(fresh_store().await)`.

use std::collections::BTreeSet;
use std::sync::Arc;

use picket_domain::{Mode, SensorType, Severity, Timestamp};

use crate::alerts::{ALERT_RAISED, AlertCursor, AlertFilter, AlertQuery, NewAlert, StoredAlert};
use crate::{Audit, NewSensor, Scope, SensorRow, Store, Subscription};

/// Expands into one `#[tokio::test]` per alert conformance function (see
/// `conformance_tests!` for `$make`).
#[macro_export]
macro_rules! alert_conformance_tests {
    ($make:expr) => {
        $crate::alert_conformance_tests!(@each $make;
            alerts_are_stored_once_with_one_notification_each,
            concurrent_duplicate_uploads_store_one,
            alert_lists_page_filter_and_scope,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::alerts_conformance::$name(store).await;
            }
        )+
    };
}

const NOW: Timestamp = Timestamp(1_800_000_000_000);
const SEC: i64 = 1000;

fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

async fn sensor(store: &Arc<dyn Store>, id: &str, subscription: &str) -> SensorRow {
    let s = NewSensor {
        id: id.to_string(),
        name: format!("A-{id}"),
        sensor_type: SensorType::OtNetwork,
        domain: "plant.example.com".to_string(),
        subscription: subscription.to_string(),
        site: "plant-1".to_string(),
        zone: "default".to_string(),
        tags: Vec::new(),
        mode: Mode::CloudConnected,
        auto_ti_updates: true,
        description: String::new(),
        capture_setting: None,
        delayed_update: false,
        created_at: Timestamp(NOW.0 - 86_400 * SEC),
    };
    store.create_sensor(&s, &audit("sensor.onboard")).await.expect("create_sensor")
}

fn alert(id: &str, at_sec: i64, severity: Severity) -> NewAlert {
    NewAlert {
        id: id.to_string(),
        time: Timestamp(NOW.0 + at_sec * SEC),
        indicator_type: "domain".to_string(),
        indicator_value: "evil.example".to_string(),
        severity,
        excerpt: format!(r#"{{"host":"a.evil.example","n":"{id}"}}"#),
        description: Some("known C2".to_string()),
        ti_version: Some(7),
    }
}

async fn alert_notifications(store: &Arc<dyn Store>) -> Vec<serde_json::Value> {
    store
        .unfanned_notifications(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|n| n.event == ALERT_RAISED)
        .map(|n| serde_json::from_str(&n.payload).expect("JSON payload"))
        .collect()
}

fn page(scope: Scope, filter: AlertFilter, after: Option<AlertCursor>, limit: u32) -> AlertQuery {
    AlertQuery { scope, filter, after, limit }
}

/// An upload stores its alerts (fields round-trip, the sensor's name and subscription
/// copied); sending it again, or a batch repeating an id, stores nothing new; each stored
/// alert has exactly one outbox row whose payload carries DESIGN.md's alert fields.
pub async fn alerts_are_stored_once_with_one_notification_each(store: Arc<dyn Store>) {
    let s = sensor(&store, "s1", "default").await;
    let batch = vec![alert("a1", 1, Severity::High), alert("a2", 2, Severity::Low)];
    let r = store.insert_alerts(&s, &batch, NOW).await.expect("insert");
    assert_eq!((r.accepted, r.duplicates), (2, 0));
    let again = store.insert_alerts(&s, &batch, Timestamp(NOW.0 + SEC)).await.expect("insert again");
    assert_eq!((again.accepted, again.duplicates), (0, 2), "a retried upload stores nothing");
    let mixed =
        vec![alert("a3", 3, Severity::Medium), alert("a1", 1, Severity::High), alert("a3", 3, Severity::Medium)];
    let m = store.insert_alerts(&s, &mixed, Timestamp(NOW.0 + 2 * SEC)).await.expect("insert mixed");
    assert_eq!((m.accepted, m.duplicates), (1, 2), "one new, one stored before, one repeated in the batch");
    let empty = store.insert_alerts(&s, &[], NOW).await.expect("empty batch");
    assert_eq!((empty.accepted, empty.duplicates), (0, 0));

    // Another sensor may use the same alert id: the key is (sensor, id).
    let other = sensor(&store, "s2", "default").await;
    let o = store.insert_alerts(&other, &[alert("a1", 4, Severity::Low)], NOW).await.expect("other sensor");
    assert_eq!(o.accepted, 1);

    let all = store.list_alerts(&page(Scope::All, AlertFilter::default(), None, 100)).await.expect("list");
    let keys: Vec<(&str, &str)> = all.iter().map(|a| (a.sensor_id.as_str(), a.id.as_str())).collect();
    assert_eq!(keys, [("s2", "a1"), ("s1", "a3"), ("s1", "a2"), ("s1", "a1")], "newest first");
    let a1 = all.iter().find(|a| a.sensor_id == "s1" && a.id == "a1").expect("a1");
    let want = StoredAlert {
        id: "a1".into(),
        sensor_id: "s1".into(),
        sensor_name: "A-s1".into(),
        subscription: "default".into(),
        time: Timestamp(NOW.0 + SEC),
        indicator_type: "domain".into(),
        indicator_value: "evil.example".into(),
        severity: Severity::High,
        excerpt: r#"{"host":"a.evil.example","n":"a1"}"#.into(),
        description: Some("known C2".into()),
        ti_version: Some(7),
        received_at: NOW,
    };
    assert_eq!(a1, &want, "round trip; received_at is the first upload's");
    let no_extras = NewAlert { description: None, ti_version: None, ..alert("a4", 5, Severity::Low) };
    store.insert_alerts(&s, &[no_extras], NOW).await.expect("without optional fields");
    let got = store
        .list_alerts(&page(Scope::All, AlertFilter { sensor_id: vec!["s1".into()], ..Default::default() }, None, 1))
        .await
        .expect("list");
    assert_eq!((got[0].id.as_str(), got[0].description.as_deref(), got[0].ti_version), ("a4", None, None));

    let notes = alert_notifications(&store).await;
    assert_eq!(notes.len(), 5, "one notification per stored alert: {notes:?}");
    let n = notes.iter().find(|n| n["alert"]["sensor_id"] == "s1" && n["alert"]["id"] == "a1").expect("a1's");
    assert_eq!(n["event"], ALERT_RAISED);
    assert_eq!(n["alert"]["severity"], "high");
    assert_eq!(n["alert"]["indicator"], serde_json::json!({"type": "domain", "value": "evil.example"}));
    assert_eq!(n["alert"]["excerpt"], want.excerpt);
    assert_eq!(n["alert"]["time"], crate::health::rfc3339(want.time));
    assert_eq!(n["alert"]["ti_version"], 7);
    assert_eq!(n["sensor"]["name"], "A-s1");
    assert_eq!(n["sensor"]["type"], "ot_network");
    assert_eq!(n["sensor"]["subscription"], "default");
}

/// Eight uploads of the same batch at once store each alert once, with one outbox row each.
pub async fn concurrent_duplicate_uploads_store_one(store: Arc<dyn Store>) {
    let s = sensor(&store, "s1", "default").await;
    let batch: Vec<NewAlert> = (0..40).map(|i| alert(&format!("c{i:02}"), i, Severity::Medium)).collect();
    let uploads = (0..8).map(|k| {
        let (store, s) = (store.clone(), s.clone());
        // Each upload sends the batch in its own order.
        let mut mine = batch.clone();
        mine.rotate_left(k * 5);
        async move { store.insert_alerts(&s, &mine, NOW).await }
    });
    let (mut accepted, mut duplicates) = (0, 0);
    for r in futures_util::future::join_all(uploads).await {
        let r = r.expect("a concurrent upload succeeds");
        accepted += r.accepted;
        duplicates += r.duplicates;
    }
    assert_eq!((accepted, duplicates), (40, 7 * 40), "each alert accepted by exactly one upload");
    let total = store.count_alerts(&Scope::All, &AlertFilter::default()).await.expect("count");
    assert_eq!(total, 40);
    assert_eq!(alert_notifications(&store).await.len(), 40, "one notification per alert");
}

/// Pages walk every match once, newest first (ties on `time` broken by sensor and id); the
/// filters and scope narrow both the page and the count alike.
pub async fn alert_lists_page_filter_and_scope(store: Arc<dyn Store>) {
    let sub = Subscription { name: "plant".into(), description: String::new(), created_at: NOW };
    store.create_subscription(&sub, &audit("subscription.create")).await.expect("subscription");
    let a = sensor(&store, "sa", "default").await;
    let b = sensor(&store, "sb", "plant").await;
    let sev = [Severity::Low, Severity::Medium, Severity::High];
    let mut expected: Vec<(i64, String, String, Severity)> = Vec::new();
    for (s, n) in [(&a, 30), (&b, 20)] {
        // Several alerts share a time, so the tie-break is exercised.
        let batch: Vec<NewAlert> = (0..n).map(|i| alert(&format!("x{i:02}"), i / 3, sev[(i % 3) as usize])).collect();
        for x in &batch {
            expected.push((x.time.0, s.id.clone(), x.id.clone(), x.severity));
        }
        store.insert_alerts(s, &batch, NOW).await.expect("insert");
    }
    expected.sort_by(|x, y| (y.0, &y.1, &y.2).cmp(&(x.0, &x.1, &x.2)));

    let walk = async |scope: Scope, filter: AlertFilter, limit: u32| {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let rows = store.list_alerts(&page(scope.clone(), filter.clone(), after, limit)).await.expect("page");
            assert!(rows.len() <= limit as usize);
            seen.extend(rows.iter().map(|r| (r.time.0, r.sensor_id.clone(), r.id.clone(), r.severity)));
            match rows.last() {
                Some(last) if rows.len() == limit as usize => {
                    after =
                        Some(AlertCursor { time: last.time.0, sensor_id: last.sensor_id.clone(), id: last.id.clone() })
                }
                _ => break,
            }
        }
        let total = store.count_alerts(&scope, &filter).await.expect("count");
        assert_eq!(total, seen.len() as u64, "total agrees with the pages for {filter:?}");
        seen
    };

    assert_eq!(walk(Scope::All, AlertFilter::default(), 7).await, expected, "all, pages of 7");
    let high = AlertFilter { severity: vec![Severity::High], ..Default::default() };
    let want: Vec<_> = expected.iter().filter(|e| e.3 == Severity::High).cloned().collect();
    assert_eq!(walk(Scope::All, high, 4).await, want);
    let two = AlertFilter {
        severity: vec![Severity::Low, Severity::High],
        sensor_id: vec!["sb".into()],
        ..Default::default()
    };
    let want: Vec<_> = expected.iter().filter(|e| e.1 == "sb" && e.3 != Severity::Medium).cloned().collect();
    assert_eq!(walk(Scope::All, two, 3).await, want);
    let since = AlertFilter { since: Some(Timestamp(NOW.0 + 5 * SEC)), ..Default::default() };
    let want: Vec<_> = expected.iter().filter(|e| e.0 >= NOW.0 + 5 * SEC).cloned().collect();
    assert!(!want.is_empty() && want.len() < expected.len());
    assert_eq!(walk(Scope::All, since, 5).await, want, "since is inclusive");
    let plant = Scope::Subscriptions(vec!["plant".into()]);
    let want: Vec<_> = expected.iter().filter(|e| e.1 == "sb").cloned().collect();
    assert_eq!(walk(plant.clone(), AlertFilter::default(), 50).await, want, "scope by subscription");
    let other = AlertFilter { sensor_id: vec!["sa".into()], ..Default::default() };
    assert!(walk(plant, other, 10).await.is_empty(), "an out-of-scope sensor's alerts are invisible");
    assert!(walk(Scope::Subscriptions(Vec::new()), AlertFilter::default(), 10).await.is_empty());
    let seen: BTreeSet<(String, String)> = expected.iter().map(|e| (e.1.clone(), e.2.clone())).collect();
    assert_eq!(seen.len(), 50);
}
