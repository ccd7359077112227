//! The conformance suite every `Store` backend passes: each `pub async fn` here takes a fresh,
//! empty store and panics with a message naming what disagreed. A backend runs them all with
//! `picket_store::conformance_tests!(fresh_store().await)`, where the expression evaluates
//! (inside the async test) to `(Arc<dyn Store>, guard)`; the guard (a temp dir, a database
//! name, `()`) lives until the test ends. Expected results are computed in Rust from the domain
//! rules (`derive_sensor_status` is the reference), never from another backend.

use std::collections::BTreeSet;
use std::sync::Arc;

use picket_domain::{
    HealthStatus, Mode, Role, SensorStatus, SensorType, ServiceStatus, StatusContext, Timestamp, Version,
    derive_sensor_status,
};

use crate::query::{CursorPos, SensorFilter, SensorQuery, Sort, SortKey, SortValue};
use crate::{ApiToken, Audit, Scope, SensorPatch, SensorRow, Store, StoreError, Subscription, Zone};

pub mod export;
mod fixtures;
pub mod lists;

use fixtures::*;

/// Expands into one `#[tokio::test]` per conformance function. `$make` is evaluated inside
/// each test's async body and must give `(Arc<dyn Store>, guard)`; the guard is kept alive
/// until the test ends. The calling crate needs `tokio` (macros, rt) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            sensor_crud,
            duplicate_names_conflict,
            unknown_references,
            scope_hides_other_subscriptions,
            import_round_trips,
            every_filter_field,
            every_sort_pages_by_cursor,
            status_agreement,
            summary_counts,
            activation_tokens,
            decommission,
            api_tokens,
            zones_and_subscriptions,
            secrets_keep_their_first_value,
            audit_log,
            import_ten_thousand,
            release_versions_start_empty,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(store).await;
            }
        )+
    };
}

// ---- sensors ----

/// Create, read back, patch, delete.
pub async fn sensor_crud(store: Arc<dyn Store>) {
    let created =
        store.create_sensor(&new_sensor("s1", "DC01"), &audit("sensor.onboard")).await.expect("create_sensor");
    assert_eq!(created.name, "DC01");
    assert_eq!(created.service_status, ServiceStatus::Unknown);
    assert_eq!(created.activated_at, None);
    assert_eq!(created.health_status, HealthStatus::Healthy);
    assert_eq!(created.tags, vec!["prod".to_string(), "dc".to_string()]);
    let got = store.get_sensor("s1", &Scope::All).await.expect("get_sensor");
    assert_eq!(got.as_ref(), Some(&created), "get_sensor must return what create_sensor returned");
    assert_eq!(store.get_sensor("nope", &Scope::All).await.expect("get_sensor"), None);
    assert_eq!(
        derive_sensor_status(&created.facts(), &ctx()),
        SensorStatus::PendingActivation,
        "a new sensor is pending activation"
    );

    let zone = Zone { name: "zone-a".into(), description: "A".into(), created_at: NOW };
    store.create_zone(&zone, &audit("zone.create")).await.expect("create_zone");
    let patch = SensorPatch {
        name: Some("DC01-renamed".into()),
        site: Some("branch".into()),
        zone: Some("zone-a".into()),
        tags: Some(vec!["lab".into()]),
        description: Some("second".into()),
        delayed_update: Some(true),
        auto_ti_updates: Some(false),
        capture_setting: Some(Some("eth0".into())),
    };
    let updated = store.update_sensor("s1", &Scope::All, &patch, &audit("sensor.update")).await.expect("update_sensor");
    let expected = SensorRow {
        name: "DC01-renamed".into(),
        site: "branch".into(),
        zone: "zone-a".into(),
        tags: vec!["lab".into()],
        description: "second".into(),
        delayed_update: true,
        auto_ti_updates: false,
        capture_setting: Some("eth0".into()),
        config_version_desired: created.config_version_desired + 1,
        ..created.clone()
    };
    assert_eq!(updated, expected, "update_sensor applies every patched field (a capture change bumps desired config)");
    assert_eq!(store.get_sensor("s1", &Scope::All).await.expect("get").as_ref(), Some(&expected));
    let by_new_tag =
        ids(&store, SensorFilter { tag: vec!["lab".into()], ..Default::default() }, Scope::All, ctx()).await;
    assert!(by_new_tag.contains("s1"), "tag filter follows updated tags");
    let by_old_tag =
        ids(&store, SensorFilter { tag: vec!["prod".into()], ..Default::default() }, Scope::All, ctx()).await;
    assert!(!by_old_tag.contains("s1"), "old tags are gone from the tag filter after an update");

    let unchanged =
        store.update_sensor("s1", &Scope::All, &SensorPatch::default(), &audit("sensor.update")).await.expect("noop");
    assert_eq!(unchanged, expected, "an empty patch changes nothing");

    store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await.expect("delete_sensor");
    assert_eq!(store.get_sensor("s1", &Scope::All).await.expect("get"), None, "deleted sensor is gone");
    expect_err(store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await, "second delete", |e| {
        matches!(e, StoreError::NotFound)
    });
    expect_err(
        store.update_sensor("s1", &Scope::All, &SensorPatch::default(), &audit("sensor.update")).await,
        "update of a deleted sensor",
        |e| matches!(e, StoreError::NotFound),
    );
    let tagged = ids(&store, SensorFilter { tag: vec!["lab".into()], ..Default::default() }, Scope::All, ctx()).await;
    assert!(tagged.is_empty(), "a deleted sensor leaves no tag rows behind");
    // The name is free again.
    store.create_sensor(&new_sensor("s2", "dc01-renamed"), &audit("sensor.onboard")).await.expect("name reuse");
}

/// Names are unique case-insensitively, on create and on rename.
pub async fn duplicate_names_conflict(store: Arc<dyn Store>) {
    store.create_sensor(&new_sensor("s1", "DC01"), &audit("sensor.onboard")).await.expect("create");
    let e = expect_err(
        store.create_sensor(&new_sensor("s2", "dc01"), &audit("sensor.onboard")).await,
        "duplicate name",
        |e| matches!(e, StoreError::Conflict(_)),
    );
    assert_eq!(e.to_string(), "conflict: a sensor named dc01 already exists");
    assert_eq!(store.get_sensor("s2", &Scope::All).await.expect("get"), None, "a refused create leaves nothing");
    store.create_sensor(&new_sensor("s2", "DC02"), &audit("sensor.onboard")).await.expect("create");
    let rename = SensorPatch { name: Some("Dc01".into()), ..Default::default() };
    let e = expect_err(store.update_sensor("s2", &Scope::All, &rename, &audit("sensor.update")).await, "rename", |e| {
        matches!(e, StoreError::Conflict(_))
    });
    assert!(e.to_string().contains("a sensor named Dc01 already exists"), "{e}");
    // Changing the case of one's own name is fine.
    let recase = SensorPatch { name: Some("dc01".into()), ..Default::default() };
    let s = store.update_sensor("s1", &Scope::All, &recase, &audit("sensor.update")).await.expect("recase own name");
    assert_eq!(s.name, "dc01");
}

/// Unknown zones and subscriptions are refused with a message that says how to fix it.
pub async fn unknown_references(store: Arc<dyn Store>) {
    let mut s = new_sensor("s1", "DC01");
    s.zone = "nowhere".into();
    let e = expect_err(store.create_sensor(&s, &audit("sensor.onboard")).await, "unknown zone", |e| {
        matches!(e, StoreError::InvalidReference(_))
    });
    assert!(
        e.to_string().contains("unknown zone \"nowhere\"") && e.to_string().contains("picket zones create nowhere"),
        "{e}"
    );
    let mut s = new_sensor("s1", "DC01");
    s.subscription = "nobody".into();
    let e = expect_err(store.create_sensor(&s, &audit("sensor.onboard")).await, "unknown subscription", |e| {
        matches!(e, StoreError::InvalidReference(_))
    });
    assert!(e.to_string().contains("unknown subscription \"nobody\""), "{e}");
    store.create_sensor(&new_sensor("s1", "DC01"), &audit("sensor.onboard")).await.expect("create");
    let patch = SensorPatch { zone: Some("nowhere".into()), ..Default::default() };
    expect_err(
        store.update_sensor("s1", &Scope::All, &patch, &audit("sensor.update")).await,
        "update to unknown zone",
        |e| matches!(e, StoreError::InvalidReference(_)),
    );
    let s1 = store.get_sensor("s1", &Scope::All).await.expect("get").expect("still there");
    assert_eq!(s1.zone, "default", "a refused update changes nothing");
}

/// A scoped caller sees nothing of other subscriptions, and cannot tell it exists.
pub async fn scope_hides_other_subscriptions(store: Arc<dyn Store>) {
    create_scopes(&store).await;
    let mut a = new_sensor("a1", "A1");
    a.subscription = "sub-a".into();
    store.create_sensor(&a, &audit("sensor.onboard")).await.expect("create a1");
    let mut b = new_sensor("b1", "B1");
    b.subscription = "sub-b".into();
    store.create_sensor(&b, &audit("sensor.onboard")).await.expect("create b1");
    let only_a = Scope::Subscriptions(vec!["sub-a".into()]);
    assert!(store.get_sensor("a1", &only_a).await.expect("get").is_some());
    assert_eq!(store.get_sensor("b1", &only_a).await.expect("get"), None, "get outside scope");
    let patch = SensorPatch { site: Some("x".into()), ..Default::default() };
    expect_err(
        store.update_sensor("b1", &only_a, &patch, &audit("sensor.update")).await,
        "update outside scope",
        |e| matches!(e, StoreError::NotFound),
    );
    expect_err(store.delete_sensor("b1", &only_a, &audit("sensor.delete")).await, "delete outside scope", |e| {
        matches!(e, StoreError::NotFound)
    });
    expect_err(
        store.decommission_sensor("b1", &only_a, &audit("sensor.decommission")).await,
        "decommission outside",
        |e| matches!(e, StoreError::NotFound),
    );
    expect_err(
        store.set_activation_token("b1", &only_a, "h", NOW, &audit("sensor.token")).await,
        "activation token outside scope",
        |e| matches!(e, StoreError::NotFound),
    );
    assert!(store.get_sensor("b1", &Scope::All).await.expect("get").is_some_and(|s| s.site == "hq"), "b1 untouched");
    let listed = ids(&store, SensorFilter::default(), only_a.clone(), ctx()).await;
    assert_eq!(listed, BTreeSet::from(["a1".to_string()]), "list in scope");
    assert_eq!(store.count_sensors(&only_a, &SensorFilter::default(), &ctx()).await.expect("count"), 1);
    assert_eq!(store.summary(&only_a, &ctx()).await.expect("summary").total, 1);
    let none = Scope::Subscriptions(vec![]);
    assert!(ids(&store, SensorFilter::default(), none.clone(), ctx()).await.is_empty(), "an empty scope sees nothing");
    assert_eq!(store.count_sensors(&none, &SensorFilter::default(), &ctx()).await.expect("count"), 0);
    let subs = store.list_subscriptions(&only_a).await.expect("list_subscriptions");
    assert_eq!(subs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["sub-a"], "subscriptions in scope");
}

/// Imported rows read back field for field.
pub async fn import_round_trips(store: Arc<dyn Store>) {
    let rows = seeded(&store, 120, 7).await;
    for r in &rows {
        let got = store.get_sensor(&r.id, &Scope::All).await.expect("get_sensor");
        assert_eq!(got.as_ref(), Some(r), "imported row {} must read back unchanged", r.id);
    }
    let dup = vec![SensorRow { id: "other".into(), name: rows[0].name.to_uppercase(), ..rows[0].clone() }];
    expect_err(store.import_sensors(&dup).await, "import of a duplicate name", |e| {
        matches!(e, StoreError::Conflict(_))
    });
}

fn rust_matches(r: &SensorRow, f: &SensorFilter, c: &StatusContext) -> bool {
    fn any<T: PartialEq>(list: &[T], v: &T) -> bool {
        list.is_empty() || list.contains(v)
    }
    any(&f.sensor_status, &derive_sensor_status(&r.facts(), c))
        && any(&f.service_status, &r.service_status)
        && any(&f.health_status, &r.health_status)
        && any(&f.sensor_type, &r.sensor_type)
        && (f.domain.is_empty() || f.domain.iter().any(|d| d.eq_ignore_ascii_case(&r.domain)))
        && any(&f.subscription, &r.subscription)
        && any(&f.site, &r.site)
        && any(&f.zone, &r.zone)
        && (f.tag.is_empty() || f.tag.iter().any(|t| r.tags.contains(t)))
        && any(&f.mode, &r.mode)
        && (f.version.is_empty() || r.version.is_some_and(|v| f.version.contains(&v)))
        && f.delayed_update.is_none_or(|d| d == r.delayed_update)
        && f.q.as_deref().is_none_or(|q| r.name.to_lowercase().contains(&q.to_lowercase()))
}

async fn check_filter(store: &Arc<dyn Store>, rows: &[SensorRow], f: SensorFilter, scope: Scope, c: StatusContext) {
    let expected: BTreeSet<String> = rows
        .iter()
        .filter(|r| scope.allows(&r.subscription) && rust_matches(r, &f, &c))
        .map(|r| r.id.clone())
        .collect();
    let got = ids(store, f.clone(), scope.clone(), c).await;
    assert_eq!(got, expected, "list_sensors with {f:?} in {scope:?}");
    let n = store.count_sensors(&scope, &f, &c).await.expect("count_sensors");
    assert_eq!(n, expected.len() as u64, "count_sensors with {f:?} in {scope:?}");
}

/// Every filter field, alone and combined, agrees with the same filter computed in Rust.
pub async fn every_filter_field(store: Arc<dyn Store>) {
    let mut rows = seeded(&store, 200, 11).await;
    let mut special = random_rows(1, 99).remove(0);
    special.id = "special".into();
    special.name = "Odd_50%Name".into();
    store.import_sensors(std::slice::from_ref(&special)).await.expect("import special");
    rows.push(special);
    let d = SensorFilter::default;
    let filters = vec![
        d(),
        SensorFilter { sensor_status: vec![SensorStatus::Syncing, SensorStatus::Disconnected], ..d() },
        SensorFilter { service_status: vec![ServiceStatus::Running], ..d() },
        SensorFilter { service_status: vec![ServiceStatus::Stopped, ServiceStatus::Unknown], ..d() },
        SensorFilter { health_status: vec![HealthStatus::NotHealthyHigh], ..d() },
        SensorFilter { health_status: vec![HealthStatus::Healthy, HealthStatus::NotHealthyLow], ..d() },
        SensorFilter { sensor_type: vec![SensorType::Adfs], ..d() },
        SensorFilter { sensor_type: vec![SensorType::OtNetwork, SensorType::Standalone], ..d() },
        SensorFilter { domain: vec!["corp.EXAMPLE.com".into()], ..d() },
        SensorFilter { domain: vec!["".into()], ..d() },
        SensorFilter { subscription: vec!["sub-a".into()], ..d() },
        SensorFilter { site: vec!["plant-1".into(), "".into()], ..d() },
        SensorFilter { site: vec!["plant-2".into()], ..d() },
        SensorFilter { zone: vec!["zone-b".into()], ..d() },
        SensorFilter { tag: vec!["lab".into()], ..d() },
        SensorFilter { tag: vec!["ot".into(), "edge".into()], ..d() },
        SensorFilter { mode: vec![Mode::LocallyManaged], ..d() },
        SensorFilter { version: vec![v("1.10.0")], ..d() },
        SensorFilter { version: vec![v("1.0.0"), v("2.0.0")], ..d() },
        SensorFilter { delayed_update: Some(true), ..d() },
        SensorFilter { delayed_update: Some(false), ..d() },
        SensorFilter { q: Some("SENSOR-0".into()), ..d() },
        SensorFilter { q: Some("_50%".into()), ..d() },
        SensorFilter { q: Some("%".into()), ..d() },
        SensorFilter { q: Some("c001".into()), ..d() },
        SensorFilter {
            sensor_type: vec![SensorType::DomainController],
            tag: vec!["prod".into()],
            delayed_update: Some(false),
            zone: vec!["default".into(), "zone-a".into()],
            ..d()
        },
    ];
    let scoped = Scope::Subscriptions(vec!["default".into(), "sub-b".into()]);
    for f in filters {
        check_filter(&store, &rows, f.clone(), Scope::All, ctx()).await;
        check_filter(&store, &rows, f, scoped.clone(), ctx()).await;
    }
}

fn rust_sort_value(r: &SensorRow, key: SortKey, c: &StatusContext) -> SortValue {
    use SortKey::*;
    let text = |s: &str| SortValue::Text(s.to_string());
    match key {
        Name => SortValue::Text(r.name.to_lowercase()),
        Type => text(r.sensor_type.as_str()),
        Domain => text(&r.domain),
        Subscription => text(&r.subscription),
        Site => text(&r.site),
        Zone => text(&r.zone),
        Tags => SortValue::Text(serde_json::to_string(&r.tags).unwrap_or_default()),
        Mode => text(r.mode.as_str()),
        ServiceStatus => text(r.service_status.as_str()),
        SensorStatus => SortValue::Int(derive_sensor_status(&r.facts(), c).rank()),
        Version => SortValue::Int(r.version.map_or(-1, |v| v.key())),
        DelayedUpdate => SortValue::Int(i64::from(r.delayed_update)),
        HealthStatus => SortValue::Int(r.health_status.rank()),
        HealthIssues => SortValue::Int(r.open_issues),
        Created => SortValue::Int(r.created_at.0),
        LastSeen => SortValue::Int(r.last_seen_at.map_or(-1, |t| t.0)),
    }
}

fn cmp_values(a: &SortValue, b: &SortValue) -> std::cmp::Ordering {
    match (a, b) {
        (SortValue::Text(x), SortValue::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (SortValue::Int(x), SortValue::Int(y)) => x.cmp(y),
        _ => panic!("mixed sort values {a:?} and {b:?}"),
    }
}

/// Every sort key, both directions, walked three rows at a time through cursors, gives the
/// order computed in Rust (sort value, then id; byte order for text).
pub async fn every_sort_pages_by_cursor(store: Arc<dyn Store>) {
    let rows = seeded(&store, 40, 23).await;
    let c = ctx();
    let filter = SensorFilter { mode: vec![Mode::CloudConnected, Mode::LocallyManaged], ..Default::default() };
    for key in SortKey::ALL {
        for descending in [false, true] {
            let sort = Sort { key: *key, descending };
            let mut expected: Vec<(SortValue, String)> =
                rows.iter().map(|r| (rust_sort_value(r, *key, &c), r.id.clone())).collect();
            expected.sort_by(|a, b| cmp_values(&a.0, &b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
            if descending {
                expected.reverse();
            }
            let mut got: Vec<(SortValue, String)> = Vec::new();
            let mut after: Option<CursorPos> = None;
            for page in 0.. {
                assert!(page <= rows.len(), "sort {} never ends", sort.as_param());
                let q = SensorQuery {
                    scope: Scope::All,
                    filter: filter.clone(),
                    sort,
                    after: after.clone(),
                    limit: 3,
                    status: c,
                };
                // Alternate the plans a backend may pick by match count: pages must still join up.
                let matches = if page % 2 == 0 { 0 } else { u64::MAX };
                let items = store
                    .list_sensors_matching(&q, matches)
                    .await
                    .unwrap_or_else(|e| panic!("list {}: {e}", sort.as_param()));
                assert!(items.len() <= 3, "limit is respected");
                let Some(last) = items.last() else { break };
                let pos = CursorPos { sort: sort.as_param(), value: last.sort_value.clone(), id: last.row.id.clone() };
                // Cursors travel through clients as text: round-trip them as the API does.
                after = Some(CursorPos::decode(&pos.encode(), sort).expect("cursor decodes"));
                got.extend(items.into_iter().map(|l| (l.sort_value, l.row.id)));
            }
            assert_eq!(got, expected, "order of sort {} walked by cursor", sort.as_param());
        }
    }
}

/// For every status, filtering by it returns exactly the rows whose derived status it is, in
/// a context with `outdated_below` and in the grace period after a restart.
pub async fn status_agreement(store: Arc<dyn Store>) {
    let rows = seeded(&store, 300, 42).await;
    for c in [ctx(), grace_ctx()] {
        let mut seen = BTreeSet::new();
        for status in SensorStatus::ALL {
            let expected: BTreeSet<String> =
                rows.iter().filter(|r| derive_sensor_status(&r.facts(), &c) == *status).map(|r| r.id.clone()).collect();
            if !expected.is_empty() {
                seen.insert(*status);
            }
            let f = SensorFilter { sensor_status: vec![*status], ..Default::default() };
            let got = ids(&store, f.clone(), Scope::All, c).await;
            let wrong: Vec<String> = got
                .symmetric_difference(&expected)
                .filter_map(|id| rows.iter().find(|r| &r.id == id))
                .map(|r| format!("{} ({:?}: derived {})", r.id, r.facts(), derive_sensor_status(&r.facts(), &c)))
                .collect();
            assert!(
                wrong.is_empty(),
                "status {status} disagrees with derive_sensor_status (ctx {c:?}) for: {wrong:#?}"
            );
            assert_eq!(store.count_sensors(&Scope::All, &f, &c).await.expect("count"), expected.len() as u64);
        }
        let floor = if c.disconnect_cutoff().is_some() { 10 } else { 8 };
        assert!(seen.len() >= floor, "fixture should cover most statuses, covered only {seen:?}");
    }
}

/// Summary counts equal counts computed in Rust, with every status present.
pub async fn summary_counts(store: Arc<dyn Store>) {
    let empty = store.summary(&Scope::All, &ctx()).await.expect("summary");
    assert_eq!(empty.total, 0);
    assert_eq!(empty.by_sensor_status.len(), SensorStatus::ALL.len(), "every status listed, zeros included");
    assert_eq!(empty.by_health_status.len(), HealthStatus::ALL.len(), "every health status listed, zeros included");
    let rows = seeded(&store, 250, 5).await;
    for (scope, c) in [(Scope::All, ctx()), (Scope::Subscriptions(vec!["sub-a".into()]), grace_ctx())] {
        let mine: Vec<&SensorRow> = rows.iter().filter(|r| scope.allows(&r.subscription)).collect();
        let s = store.summary(&scope, &c).await.expect("summary");
        assert_eq!(s.total, mine.len() as u64, "total in {scope:?}");
        let cloud = mine.iter().filter(|r| r.mode == Mode::CloudConnected).count() as u64;
        assert_eq!(s.cloud_connected, cloud, "cloud_connected");
        assert_eq!(s.locally_managed, mine.len() as u64 - cloud, "locally_managed");
        for status in SensorStatus::ALL {
            let n = mine.iter().filter(|r| derive_sensor_status(&r.facts(), &c) == *status).count() as u64;
            let got = s.by_sensor_status.iter().find(|(x, _)| x == status).map(|(_, n)| *n);
            assert_eq!(got, Some(n), "summary count of {status} in {scope:?}");
        }
        for h in HealthStatus::ALL {
            let n = mine.iter().filter(|r| r.health_status == *h).count() as u64;
            let got = s.by_health_status.iter().find(|(x, _)| x == h).map(|(_, n)| *n);
            assert_eq!(got, Some(n), "summary count of {h}");
        }
    }
}

/// A new activation token may be minted until the sensor activates, never after.
pub async fn activation_tokens(store: Arc<dyn Store>) {
    store.create_sensor(&new_sensor("s1", "DC01"), &audit("sensor.onboard")).await.expect("create");
    let exp = Timestamp(NOW.0 + 60 * MIN);
    let s = store.set_activation_token("s1", &Scope::All, "hash-1", exp, &audit("sensor.token")).await.expect("token");
    assert_eq!(s.activation_expires_at, Some(exp));
    assert_eq!(
        store.get_sensor("s1", &Scope::All).await.expect("get").and_then(|s| s.activation_expires_at),
        Some(exp)
    );
    let mut active = random_rows(1, 3).remove(0);
    active.id = "active".into();
    active.subscription = "default".into();
    active.zone = "default".into();
    active.activated_at = Some(NOW);
    store.import_sensors(&[active]).await.expect("import");
    expect_err(
        store.set_activation_token("active", &Scope::All, "hash-2", exp, &audit("sensor.token")).await,
        "token for an activated sensor",
        |e| matches!(e, StoreError::Conflict(_)),
    );
    expect_err(
        store.set_activation_token("none", &Scope::All, "h", exp, &audit("sensor.token")).await,
        "unknown",
        |e| matches!(e, StoreError::NotFound),
    );
}

/// Decommissioning makes a sensor `unreachable` and keeps the first time it was marked.
pub async fn decommission(store: Arc<dyn Store>) {
    let mut row = random_rows(1, 8).remove(0);
    row.id = "s1".into();
    row.subscription = "default".into();
    row.zone = "default".into();
    row.mode = Mode::CloudConnected;
    row.activated_at = Some(Timestamp(NOW.0 - MIN));
    row.decommissioned_at = None;
    store.import_sensors(&[row]).await.expect("import");
    let s = store.decommission_sensor("s1", &Scope::All, &audit("sensor.decommission")).await.expect("decommission");
    assert_eq!(s.decommissioned_at, Some(NOW));
    assert_eq!(derive_sensor_status(&s.facts(), &ctx()), SensorStatus::Unreachable);
    let got = ids(
        &store,
        SensorFilter { sensor_status: vec![SensorStatus::Unreachable], ..Default::default() },
        Scope::All,
        ctx(),
    )
    .await;
    assert!(got.contains("s1"), "decommissioned sensor lists as unreachable");
    let later = Audit { at: Timestamp(NOW.0 + MIN), ..audit("sensor.decommission") };
    let again = store.decommission_sensor("s1", &Scope::All, &later).await.expect("again");
    assert_eq!(again.decommissioned_at, Some(NOW), "the first decommission time is kept");
}

fn token(id: &str, hash: &str, at: i64) -> ApiToken {
    ApiToken {
        id: id.to_string(),
        role: Role::Operator,
        subscriptions: if id == "t2" { Some(vec!["sub-a".into()]) } else { None },
        description: format!("token {id}"),
        secret_hash: hash.to_string(),
        created_at: Timestamp(at),
        revoked_at: None,
    }
}

/// Tokens: create, find by hash, list oldest first, revoke (then not found).
pub async fn api_tokens(store: Arc<dyn Store>) {
    let t1 = token("t1", "hash-1", NOW.0);
    let t2 = token("t2", "hash-2", NOW.0 + 1);
    store.create_api_token(&t2, &audit("token.create")).await.expect("create t2");
    store.create_api_token(&t1, &audit("token.create")).await.expect("create t1");
    assert_eq!(store.find_api_token("hash-1").await.expect("find"), Some(t1.clone()));
    assert_eq!(store.find_api_token("hash-2").await.expect("find"), Some(t2.clone()), "subscriptions round-trip");
    assert_eq!(store.find_api_token("nope").await.expect("find"), None);
    assert_eq!(store.list_api_tokens().await.expect("list"), vec![t1.clone(), t2.clone()], "oldest first");
    let at = Timestamp(NOW.0 + 5);
    store.revoke_api_token("t1", &Audit { at, ..audit("token.revoke") }).await.expect("revoke");
    assert_eq!(store.find_api_token("hash-1").await.expect("find"), None, "a revoked token authenticates nothing");
    let listed = store.list_api_tokens().await.expect("list");
    assert_eq!(listed[0], ApiToken { revoked_at: Some(at), ..t1 }, "revoked tokens stay listed");
    expect_err(store.revoke_api_token("t1", &audit("token.revoke")).await, "second revoke", |e| {
        matches!(e, StoreError::NotFound)
    });
    expect_err(store.revoke_api_token("zz", &audit("token.revoke")).await, "unknown token", |e| {
        matches!(e, StoreError::NotFound)
    });
    let dup = token("t3", "hash-2", NOW.0);
    assert!(store.create_api_token(&dup, &audit("token.create")).await.is_err(), "secret hashes are unique");
}

/// Zones and subscriptions: `default` exists, creates list by name, duplicates conflict.
pub async fn zones_and_subscriptions(store: Arc<dyn Store>) {
    let zones = store.list_zones().await.expect("list_zones");
    assert_eq!(
        zones,
        vec![Zone { name: "default".into(), description: zones[0].description.clone(), created_at: Timestamp(0) }]
    );
    let subs = store.list_subscriptions(&Scope::All).await.expect("list_subscriptions");
    assert_eq!(subs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["default"]);
    for name in ["b-zone", "Z-zone", "a-zone"] {
        let z = Zone { name: name.into(), description: format!("{name}!"), created_at: NOW };
        store.create_zone(&z, &audit("zone.create")).await.expect("create_zone");
    }
    let names: Vec<String> = store.list_zones().await.expect("list").into_iter().map(|z| z.name).collect();
    assert_eq!(names, vec!["Z-zone", "a-zone", "b-zone", "default"], "zones by name in byte order");
    let dup = Zone { name: "a-zone".into(), description: String::new(), created_at: NOW };
    let e = expect_err(store.create_zone(&dup, &audit("zone.create")).await, "duplicate zone", |e| {
        matches!(e, StoreError::Conflict(_))
    });
    assert!(e.to_string().contains("a-zone"), "{e}");
    let s = Subscription { name: "acme".into(), description: "Acme".into(), created_at: NOW };
    store.create_subscription(&s, &audit("subscription.create")).await.expect("create_subscription");
    let subs = store.list_subscriptions(&Scope::All).await.expect("list");
    assert_eq!(subs.iter().find(|x| x.name == "acme"), Some(&s));
    expect_err(store.create_subscription(&s, &audit("subscription.create")).await, "duplicate subscription", |e| {
        matches!(e, StoreError::Conflict(_))
    });
    let mut sensor = new_sensor("s1", "DC01");
    sensor.subscription = "acme".into();
    sensor.zone = "a-zone".into();
    store.create_sensor(&sensor, &audit("sensor.onboard")).await.expect("sensor in new zone and subscription");
}

/// `get_or_init_secret` returns the first stored value forever.
pub async fn secrets_keep_their_first_value(store: Arc<dyn Store>) {
    assert_eq!(store.get_or_init_secret("ca", "first").await.expect("secret"), "first");
    assert_eq!(store.get_or_init_secret("ca", "second").await.expect("secret"), "first");
    assert_eq!(store.get_or_init_secret("other", "x").await.expect("secret"), "x");
    assert_eq!(store.get_or_init_secret("ca", "third").await.expect("secret"), "first");
    store.ping().await.expect("ping");
    assert!(["sqlite", "postgres"].contains(&store.backend()), "backend name {}", store.backend());
}

/// Every mutation writes an audit row with before/after; the list is newest first and pages
/// by `before_id`; token entries never carry the secret hash.
pub async fn audit_log(store: Arc<dyn Store>) {
    assert!(store.list_audit(None, 10).await.expect("list_audit").is_empty());
    let z = Zone { name: "zone-a".into(), description: String::new(), created_at: NOW };
    store.create_zone(&z, &audit("zone.create")).await.expect("zone");
    let s = Subscription { name: "sub-a".into(), description: String::new(), created_at: NOW };
    store.create_subscription(&s, &audit("subscription.create")).await.expect("subscription");
    store.create_sensor(&new_sensor("s1", "DC01"), &audit("sensor.onboard")).await.expect("create");
    let patch = SensorPatch { site: Some("branch".into()), ..Default::default() };
    store.update_sensor("s1", &Scope::All, &patch, &audit("sensor.update")).await.expect("update");
    store
        .set_activation_token("s1", &Scope::All, "secret-activation-hash", NOW, &audit("sensor.token"))
        .await
        .expect("tok");
    store.decommission_sensor("s1", &Scope::All, &audit("sensor.decommission")).await.expect("decommission");
    store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await.expect("delete");
    store.create_api_token(&token("t1", "secret-token-hash", NOW.0), &audit("token.create")).await.expect("token");
    store.revoke_api_token("t1", &audit("token.revoke")).await.expect("revoke");
    // Refused mutations write nothing.
    let _ = store.create_zone(&z, &audit("zone.create")).await;
    let _ = store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await;

    let all = store.list_audit(None, 100).await.expect("list_audit");
    let got: Vec<(&str, &str, &str, bool, bool)> = all
        .iter()
        .map(|e| {
            (e.action.as_str(), e.target_kind.as_str(), e.target_id.as_str(), e.before.is_some(), e.after.is_some())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("token.revoke", "token", "t1", true, true),
            ("token.create", "token", "t1", false, true),
            ("sensor.delete", "sensor", "s1", true, false),
            ("sensor.decommission", "sensor", "s1", true, true),
            ("sensor.token", "sensor", "s1", true, true),
            ("sensor.update", "sensor", "s1", true, true),
            ("sensor.onboard", "sensor", "s1", false, true),
            ("subscription.create", "subscription", "sub-a", false, true),
            ("zone.create", "zone", "zone-a", false, true),
        ],
        "audit entries, newest first"
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "ids decrease");
    assert!(all.iter().all(|e| e.actor == "token:test" && e.at == NOW));
    let update = &all[5];
    assert_eq!(update.before.as_ref().and_then(|b| b.get("site")), Some(&serde_json::json!("hq")));
    assert_eq!(update.after.as_ref().and_then(|b| b.get("site")), Some(&serde_json::json!("branch")));
    assert_eq!(
        all[2].before.as_ref().and_then(|b| b.get("name")),
        Some(&serde_json::json!("DC01")),
        "delete keeps before"
    );
    let text = serde_json::to_string(&all).unwrap_or_default();
    assert!(
        !text.contains("secret-token-hash") && !text.contains("secret-activation-hash"),
        "no hash in the audit log"
    );
    // Page two at a time.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(before, 2).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all, "before_id paging walks the same entries");
}

/// 10,000 rows import in batches and are all there.
pub async fn import_ten_thousand(store: Arc<dyn Store>) {
    let rows = seeded(&store, 10_000, 77).await;
    let n = store.count_sensors(&Scope::All, &SensorFilter::default(), &ctx()).await.expect("count");
    assert_eq!(n, 10_000);
    let lab = rows.iter().filter(|r| r.tags.iter().any(|t| t == "lab")).count() as u64;
    let f = SensorFilter { tag: vec!["lab".into()], ..Default::default() };
    assert_eq!(store.count_sensors(&Scope::All, &f, &ctx()).await.expect("count"), lab, "tags of every batch");
    let q = SensorQuery { limit: 50, ..all_ctx_query(SensorFilter::default(), Scope::All, ctx()) };
    let page = store.list_sensors(&q).await.expect("list");
    let mut names: Vec<String> = rows.iter().map(|r| r.name.to_lowercase()).collect();
    names.sort();
    let got: Vec<String> = page.iter().map(|l| l.row.name.to_lowercase()).collect();
    assert_eq!(got, names[..50].to_vec(), "first page by name");
    let last = rows.last().map(|r| r.id.clone()).unwrap_or_default();
    assert!(store.get_sensor(&last, &Scope::All).await.expect("get").is_some());
}

/// No release is published in a fresh store.
pub async fn release_versions_start_empty(store: Arc<dyn Store>) {
    assert_eq!(store.release_versions().await.expect("release_versions"), Vec::<Version>::new());
}
