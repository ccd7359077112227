//! Conformance of the list machinery of migration 0012 after writes: the stored
//! time-independent status (`status_base`, `last_contact_at`, `start_pending_since`), the
//! trigger-kept counts (`sensor_counts`), the name-search index and the export pages must
//! agree with the domain rules (`derive_sensor_status`) and with the rows, whatever wrote
//! them (import, onboarding, edits, heartbeats, config pulls, decommissioning, health
//! issues, deletes), and a status must flip exactly at its rule's boundary.

use std::sync::Arc;

use picket_domain::issues::HealthIssueKind;
use picket_domain::{
    HealthStatus, Mode, SensorStatus, SensorType, ServiceStatus, StatusContext, Timestamp, derive_sensor_status,
};

use super::fixtures::*;
use super::{cmp_values, rust_matches, rust_sort_value};
use crate::health::NewHealthIssue;
use crate::identity::Heartbeat;
use crate::query::{CursorPos, SensorFilter, SensorQuery, Sort, SortKey, SortValue, sorted_filter_index};
use crate::{Scope, SensorPatch, SensorRow, Store};

/// Expands into one `#[tokio::test]` per function of this file (see `conformance_tests!`).
#[macro_export]
macro_rules! list_conformance_tests {
    ($make:expr) => {
        $crate::list_conformance_tests!(@each $make;
            stored_status_and_counts_follow_writes,
            status_flips_at_the_boundaries,
            export_pages_agree_with_rows,
            filter_index_pages_by_cursor,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::lists::$name(store).await;
            }
        )+
    };
}

async fn all_rows(store: &Arc<dyn Store>) -> Vec<SensorRow> {
    let q = all_ctx_query(SensorFilter::default(), Scope::All, ctx());
    store.list_sensors(&q).await.expect("list_sensors").into_iter().map(|l| l.row).collect()
}

/// Every status filter, the filters the counters answer, name searches and one tag, in two
/// scopes: lists and counts equal what Rust computes from the rows as they are now.
async fn check_everything(store: &Arc<dyn Store>, c: StatusContext, when: &str) {
    let rows = all_rows(store).await;
    let d = SensorFilter::default;
    let mut filters: Vec<SensorFilter> =
        SensorStatus::ALL.iter().map(|s| SensorFilter { sensor_status: vec![*s], ..d() }).collect();
    filters.extend([
        d(),
        SensorFilter { zone: vec!["zone-a".into()], ..d() },
        SensorFilter { subscription: vec!["sub-a".into(), "default".into()], zone: vec!["default".into()], ..d() },
        SensorFilter { sensor_type: vec![SensorType::Adfs, SensorType::DomainController], ..d() },
        SensorFilter { mode: vec![Mode::LocallyManaged], ..d() },
        SensorFilter { health_status: vec![HealthStatus::NotHealthyHigh], ..d() },
        SensorFilter { health_status: vec![HealthStatus::Healthy], mode: vec![Mode::CloudConnected], ..d() },
        SensorFilter { tag: vec!["lab".into()], ..d() },
        SensorFilter { q: Some("renamed".into()), ..d() },
        SensorFilter { q: Some("dc0".into()), ..d() },
        SensorFilter { q: Some("or-0".into()), ..d() },
        SensorFilter { sensor_status: vec![SensorStatus::Syncing], q: Some("sensor".into()), ..d() },
        // Status sets beside counted filters: served by the kept counts per status base
        // minus what the clock moved (query::fast_count_sql, migration 0019).
        SensorFilter {
            sensor_status: vec![SensorStatus::Syncing, SensorStatus::NotConfigured, SensorStatus::Unreachable],
            ..d()
        },
        SensorFilter {
            sensor_status: vec![SensorStatus::Syncing, SensorStatus::Disconnected, SensorStatus::UpToDate],
            zone: vec!["zone-a".into()],
            ..d()
        },
        SensorFilter {
            sensor_status: vec![SensorStatus::UpdateFailed, SensorStatus::Updating, SensorStatus::Syncing],
            health_status: vec![HealthStatus::Healthy],
            mode: vec![Mode::CloudConnected],
            ..d()
        },
        SensorFilter {
            sensor_status: vec![SensorStatus::PendingActivation, SensorStatus::NotApplicable],
            subscription: vec!["sub-a".into()],
            ..d()
        },
        SensorFilter {
            sensor_status: vec![SensorStatus::StartFailed, SensorStatus::Syncing, SensorStatus::Outdated],
            sensor_type: vec![SensorType::Adfs, SensorType::DomainController],
            ..d()
        },
        SensorFilter { sensor_status: SensorStatus::ALL.to_vec(), ..d() },
    ]);
    for scope in [Scope::All, Scope::Subscriptions(vec!["sub-a".into()])] {
        for f in &filters {
            let mut expected: Vec<String> = rows
                .iter()
                .filter(|r| scope.allows(&r.subscription) && rust_matches(r, f, &c))
                .map(|r| r.id.clone())
                .collect();
            expected.sort();
            let mut got: Vec<String> = ids(store, f.clone(), scope.clone(), c).await.into_iter().collect();
            got.sort();
            assert_eq!(got, expected, "{when}: list with {f:?} in {scope:?} at {c:?}");
            let n = store.count_sensors(&scope, f, &c).await.expect("count_sensors");
            assert_eq!(n, expected.len() as u64, "{when}: count with {f:?} in {scope:?} at {c:?}");
        }
    }
}

fn heartbeat(id: &str, at: Timestamp, started: Option<Timestamp>, applied: i64) -> Heartbeat {
    Heartbeat {
        sensor_id: id.to_string(),
        at,
        service_status: ServiceStatus::Running,
        version: Some(v("1.10.0")),
        config_version_applied: applied,
        ti_version: None,
        service_started_at: started,
        rss_bytes: None,
        cpu_permille: None,
    }
}

/// After each kind of write, lists and counts (status filters, counter-served filters, name
/// search, tags) still agree with the rows, in and out of the grace period.
pub async fn stored_status_and_counts_follow_writes(store: Arc<dyn Store>) {
    let rows = seeded(&store, 150, 77).await;
    check_everything(&store, ctx(), "after import").await;
    check_everything(&store, grace_ctx(), "after import (grace)").await;

    // Onboarding (the trigger path of single inserts) and edits of every list-relevant field.
    let created =
        store.create_sensor(&new_sensor("fresh-1", "Sensor-fresh"), &audit("sensor.onboard")).await.expect("onboard");
    let patch = SensorPatch {
        name: Some("Renamed-01".into()),
        zone: Some("zone-a".into()),
        tags: Some(vec!["lab".into()]),
        capture_setting: Some(Some("eth9".into())),
        ..SensorPatch::default()
    };
    store.update_sensor(&created.id, &Scope::All, &patch, &audit("sensor.update")).await.expect("patch");
    let adfs =
        rows.iter().find(|r| r.sensor_type == SensorType::Adfs && r.capture_setting.is_some()).expect("an adfs row");
    let clear = SensorPatch { capture_setting: Some(None), ..SensorPatch::default() };
    store.update_sensor(&adfs.id, &Scope::All, &clear, &audit("sensor.update")).await.expect("clear capture");
    check_everything(&store, ctx(), "after onboarding and edits").await;

    // Heartbeats and config pulls move the clocks; decommissioning and deletes too.
    let live: Vec<&SensorRow> = rows.iter().filter(|r| r.activated_at.is_some()).take(30).collect();
    let batch: Vec<Heartbeat> = live
        .iter()
        .enumerate()
        .map(|(i, r)| {
            heartbeat(&r.id, Timestamp(NOW.0 - (i as i64 % 3) * 6 * MIN), Some(Timestamp(NOW.0 - 40 * MIN)), 2)
        })
        .collect();
    store.record_heartbeats(&batch).await.expect("heartbeats");
    for r in live.iter().take(10) {
        store.record_config_pull(&r.id, Timestamp(NOW.0 - 35 * MIN)).await.expect("config pull");
    }
    store.decommission_sensor(&live[12].id, &Scope::All, &audit("sensor.decommission")).await.expect("decommission");
    store.delete_sensor(&live[13].id, &Scope::All, &audit("sensor.delete")).await.expect("delete");
    store.delete_sensor(&created.id, &Scope::All, &audit("sensor.delete")).await.expect("delete renamed");
    check_everything(&store, ctx(), "after heartbeats, pulls, decommission, deletes").await;
    check_everything(&store, grace_ctx(), "after heartbeats (grace)").await;

    // Health issues change `health_rank`, one of the counted columns.
    for (i, r) in live.iter().skip(14).take(5).enumerate() {
        let issue = NewHealthIssue {
            id: format!("issue-{i}"),
            sensor_id: r.id.clone(),
            kind: HealthIssueKind::CertExpiring,
            opened_at: NOW,
            title: "t".into(),
            detail: "d".into(),
            recommendation: "r".into(),
        };
        store.open_health_issue(&issue, None).await.expect("open issue");
    }
    check_everything(&store, ctx(), "after opening health issues").await;
}

/// One sensor at the exact boundaries of DESIGN.md's timings: silent for a millisecond less
/// than `disconnect_after` it is not `disconnected`, for exactly that long it is; started a
/// millisecond more than `start_failed_after` ago without a pull it is `start_failed`, exactly
/// that long ago it is not; a heartbeat brings it back at once. Lists, counts and export agree.
pub async fn status_flips_at_the_boundaries(store: Arc<dyn Store>) {
    let mut row = random_rows(1, 5).remove(0);
    row.id = "edge".into();
    row.name = "edge-01".into();
    row.subscription = "default".into();
    row.zone = "default".into();
    row.mode = Mode::CloudConnected;
    row.sensor_type = SensorType::DomainController;
    row.activated_at = Some(Timestamp(NOW.0 - 400 * MIN));
    row.decommissioned_at = None;
    row.last_seen_at = Some(NOW);
    row.service_started_at = Some(NOW);
    row.last_config_pull_at = None;
    row.update_state = picket_domain::UpdateState::Idle;
    row.config_version_applied = 1;
    row.config_version_desired = 1;
    row.version = Some(v("2.0.0"));
    store.import_sensors(std::slice::from_ref(&row)).await.expect("import");
    let at = |ms: i64| StatusContext { now: Timestamp(NOW.0 + ms), ..ctx() };
    let disconnect = ctx().timings.disconnect_after.as_millis() as i64;
    let start_failed = ctx().timings.start_failed_after.as_millis() as i64;
    let cases = [(disconnect - 1, SensorStatus::UpToDate), (disconnect, SensorStatus::Disconnected)];
    // Keep the service "pulled" for the disconnect cases, then look at start_failed alone.
    store.record_config_pull("edge", NOW).await.expect("pull");
    for (ms, expected) in cases {
        assert_status(&store, at(ms), expected).await;
    }
    store
        .record_heartbeats(&[heartbeat("edge", Timestamp(NOW.0 + disconnect), Some(Timestamp(NOW.0 + disconnect)), 1)])
        .await
        .expect("heartbeat");
    assert_status(&store, at(disconnect), SensorStatus::UpToDate).await;
    let started = NOW.0 + disconnect;
    for (ms, expected) in [(start_failed, SensorStatus::UpToDate), (start_failed + 1, SensorStatus::StartFailed)] {
        // Heard from recently (so not disconnected), never pulled since the start.
        store
            .record_heartbeats(&[heartbeat("edge", Timestamp(started + ms), Some(Timestamp(started)), 1)])
            .await
            .expect("heartbeat");
        assert_status(&store, StatusContext { now: Timestamp(started + ms), ..ctx() }, expected).await;
    }
    store.record_config_pull("edge", Timestamp(started + start_failed + 2)).await.expect("pull");
    assert_status(
        &store,
        StatusContext { now: Timestamp(started + start_failed + 2), ..ctx() },
        SensorStatus::UpToDate,
    )
    .await;
}

async fn assert_status(store: &Arc<dyn Store>, c: StatusContext, expected: SensorStatus) {
    let row = store.get_sensor("edge", &Scope::All).await.expect("get").expect("edge exists");
    assert_eq!(derive_sensor_status(&row.facts(), &c), expected, "domain rule at {c:?} for {row:?}");
    for status in SensorStatus::ALL {
        let f = SensorFilter { sensor_status: vec![*status], ..SensorFilter::default() };
        let listed = ids(store, f.clone(), Scope::All, c).await.contains("edge");
        assert_eq!(listed, *status == expected, "filter {status} at {c:?} (expected {expected})");
        let n = store.count_sensors(&Scope::All, &f, &c).await.expect("count");
        assert_eq!(n, u64::from(*status == expected), "count of {status} at {c:?}");
    }
    let q = SensorQuery {
        scope: Scope::All,
        filter: SensorFilter::default(),
        sort: Sort::default(),
        after: None,
        limit: 10,
        status: c,
    };
    let page = store.export_page(&q).await.expect("export_page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].sensor_status, expected, "export status at {c:?}");
}

/// Export pages, walked by cursor in several sorts and filters, hold every matching sensor
/// once, in the list's order, with the CSV's fields equal to the row's and the status derived.
pub async fn export_pages_agree_with_rows(store: Arc<dyn Store>) {
    let rows = seeded(&store, 120, 31).await;
    let d = SensorFilter::default;
    let cases = [
        (Sort::default(), d()),
        (
            Sort { key: SortKey::LastSeen, descending: true },
            SensorFilter { sensor_type: vec![SensorType::Adfs], ..d() },
        ),
        (Sort { key: SortKey::SensorStatus, descending: false }, SensorFilter { q: Some("dc0".into()), ..d() }),
        (
            Sort { key: SortKey::Created, descending: true },
            SensorFilter { sensor_status: vec![SensorStatus::Syncing, SensorStatus::UpToDate], ..d() },
        ),
    ];
    for c in [ctx(), grace_ctx()] {
        for (sort, filter) in &cases {
            for scope in [Scope::All, Scope::Subscriptions(vec!["sub-b".into()])] {
                let q = SensorQuery {
                    scope: scope.clone(),
                    filter: filter.clone(),
                    sort: *sort,
                    after: None,
                    limit: 100_000,
                    status: c,
                };
                let listed: Vec<String> =
                    store.list_sensors(&q).await.expect("list").into_iter().map(|l| l.row.id).collect();
                let mut got = Vec::new();
                let mut after: Option<CursorPos> = None;
                loop {
                    let page = store
                        .export_page(&SensorQuery { after: after.clone(), limit: 7, ..q.clone() })
                        .await
                        .expect("export_page");
                    let Some(last) = page.last() else { break };
                    after =
                        Some(CursorPos { sort: sort.as_param(), value: last.sort_value.clone(), id: last.id.clone() });
                    for e in page {
                        let r = rows.iter().find(|r| r.id == e.id).expect("exported row exists");
                        assert_eq!(e.sensor_status, derive_sensor_status(&r.facts(), &c), "status of {}", r.id);
                        assert_eq!(
                            (e.name.as_str(), e.sensor_type.as_str(), e.mode.as_str(), e.service_status.as_str()),
                            (r.name.as_str(), r.sensor_type.as_str(), r.mode.as_str(), r.service_status.as_str())
                        );
                        assert_eq!(
                            (&e.domain, &e.subscription, &e.site, &e.zone),
                            (&r.domain, &r.subscription, &r.site, &r.zone)
                        );
                        assert_eq!(serde_json::from_str::<Vec<String>>(&e.tags_json).expect("tags json"), r.tags);
                        assert_eq!(e.version, r.version.map(|v| v.to_string()));
                        assert_eq!(
                            (e.delayed_update, e.health_status, e.open_issues),
                            (r.delayed_update, r.health_status, r.open_issues)
                        );
                        assert_eq!((e.created_at, e.last_seen_at), (r.created_at.0, r.last_seen_at.map(|t| t.0)));
                        got.push(e.id);
                    }
                }
                assert_eq!(got, listed, "export of {filter:?} by {} in {scope:?}", sort.as_param());
            }
        }
    }
}

/// Pages filtered on one value of a column that leads a `(column, sort, id)` index
/// (`query::SORTED_FILTER_INDEXES`: the plan that walks that index), alone and beside other
/// filters, in both directions, walked four rows at a time through cursors with the plans
/// alternating (few matches / many / the backend's own count), give the order and the rows
/// computed in Rust.
pub async fn filter_index_pages_by_cursor(store: Arc<dyn Store>) {
    let rows = seeded(&store, 120, 37).await;
    let c = ctx();
    let d = SensorFilter::default;
    let one_sub = Scope::Subscriptions(vec!["sub-a".into()]);
    let cases: Vec<(SensorFilter, Scope, SortKey, &str)> = vec![
        (
            SensorFilter { sensor_type: vec![SensorType::DomainController], ..d() },
            Scope::All,
            SortKey::Name,
            "sensor_type",
        ),
        (SensorFilter { mode: vec![Mode::LocallyManaged], ..d() }, Scope::All, SortKey::Name, "mode"),
        (SensorFilter { mode: vec![Mode::CloudConnected], ..d() }, Scope::All, SortKey::LastSeen, "mode"),
        (SensorFilter { mode: vec![Mode::LocallyManaged], ..d() }, Scope::All, SortKey::LastSeen, "mode"),
        (SensorFilter { zone: vec!["zone-a".into()], ..d() }, Scope::All, SortKey::Name, "zone"),
        (
            SensorFilter { health_status: vec![HealthStatus::NotHealthyHigh], ..d() },
            Scope::All,
            SortKey::Name,
            "health_rank",
        ),
        (
            SensorFilter { health_status: vec![HealthStatus::NotHealthyHigh], ..d() },
            Scope::All,
            SortKey::Created,
            "health_rank",
        ),
        (SensorFilter { subscription: vec!["sub-b".into()], ..d() }, Scope::All, SortKey::Name, "subscription"),
        (d(), one_sub.clone(), SortKey::Name, "subscription"),
        (SensorFilter { sensor_status: vec![SensorStatus::Syncing], ..d() }, Scope::All, SortKey::Name, "status_base"),
        (
            SensorFilter { sensor_status: vec![SensorStatus::NotApplicable], ..d() },
            Scope::All,
            SortKey::Name,
            "status_base",
        ),
        // Beside other filters (written `+column` on SQLite), a tag, a search, a scope.
        (
            SensorFilter {
                sensor_type: vec![SensorType::DomainController],
                zone: vec!["default".into(), "zone-b".into()],
                delayed_update: Some(false),
                ..d()
            },
            Scope::All,
            SortKey::Name,
            "sensor_type",
        ),
        (
            SensorFilter { mode: vec![Mode::CloudConnected], tag: vec!["prod".into()], ..d() },
            one_sub,
            SortKey::LastSeen,
            "mode",
        ),
        (
            SensorFilter {
                zone: vec!["zone-b".into()],
                sensor_status: vec![SensorStatus::UpToDate, SensorStatus::Disconnected],
                q: Some("dc".into()),
                ..d()
            },
            Scope::All,
            SortKey::Name,
            "zone",
        ),
    ];
    for (filter, scope, key, column) in cases {
        for descending in [false, true] {
            let sort = Sort { key, descending };
            let what = format!("{filter:?} in {scope:?} by {}", sort.as_param());
            let mut expected: Vec<(SortValue, String)> = rows
                .iter()
                .filter(|r| scope.allows(&r.subscription) && rust_matches(r, &filter, &c))
                .map(|r| (rust_sort_value(r, key, &c), r.id.clone()))
                .collect();
            expected.sort_by(|a, b| cmp_values(&a.0, &b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
            if descending {
                expected.reverse();
            }
            assert!(expected.len() > 4, "fixture: {what} must span several pages");
            let mut got: Vec<(SortValue, String)> = Vec::new();
            let mut after: Option<CursorPos> = None;
            for page in 0.. {
                assert!(page <= rows.len(), "{what} never ends");
                let q = SensorQuery {
                    scope: scope.clone(),
                    filter: filter.clone(),
                    sort,
                    after: after.clone(),
                    limit: 4,
                    status: c,
                };
                assert_eq!(sorted_filter_index(&q), Some(column), "{what}: the index that serves it");
                let items = match page % 3 {
                    0 => store.list_sensors_matching(&q, u64::MAX).await,
                    1 => store.list_sensors_matching(&q, 0).await,
                    _ => store.list_sensors(&q).await,
                }
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(items.len() <= 4, "limit is respected");
                let Some(last) = items.last() else { break };
                let pos = CursorPos { sort: sort.as_param(), value: last.sort_value.clone(), id: last.row.id.clone() };
                after = Some(CursorPos::decode(&pos.encode(), sort).expect("cursor decodes"));
                got.extend(items.into_iter().map(|l| (l.sort_value, l.row.id)));
            }
            assert_eq!(got, expected, "{what}: rows and order walked by cursor");
        }
    }
    // Two values, or a status that depends on the clock, have no such index.
    let two = SensorFilter { sensor_type: vec![SensorType::Adfs, SensorType::Standalone], ..d() };
    let q = SensorQuery { scope: Scope::All, filter: two, sort: Sort::default(), after: None, limit: 4, status: c };
    assert_eq!(sorted_filter_index(&q), None);
    let clock = SensorFilter { sensor_status: vec![SensorStatus::Disconnected], ..d() };
    assert_eq!(sorted_filter_index(&SensorQuery { filter: clock, ..q }), None);
}
