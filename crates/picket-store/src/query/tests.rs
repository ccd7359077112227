//! Unit tests of the query builders (`picket_store::query`).

use super::*;
use picket_domain::{StatusTimings, Timestamp};

fn ctx() -> StatusContext {
    StatusContext {
        now: Timestamp(1_000_000_000),
        timings: StatusTimings::default(),
        outdated_below: None,
        watching_since: Timestamp(0),
    }
}

#[test]
fn sort_round_trips() {
    for k in SortKey::ALL {
        for d in [false, true] {
            let s = Sort { key: *k, descending: d };
            assert_eq!(Sort::parse(&s.as_param()), Some(s));
        }
    }
    assert_eq!(Sort::parse("bogus"), None);
}

#[test]
fn cursors_are_checked() {
    let sort = Sort { key: SortKey::Name, descending: false };
    let pos = CursorPos { sort: sort.as_param(), value: SortValue::Text("dc01".into()), id: "x".into() };
    assert_eq!(CursorPos::decode(&pos.encode(), sort).unwrap(), pos);
    assert!(CursorPos::decode("zz", sort).is_err());
    assert!(CursorPos::decode(&hex::encode("{}"), sort).is_err());
    let other = Sort { key: SortKey::Created, descending: false };
    assert!(CursorPos::decode(&pos.encode(), other).is_err());
}

#[test]
fn walking_a_filter_index_hints_only_the_other_columns() {
    let query = SensorQuery {
        scope: Scope::All,
        filter: SensorFilter {
            sensor_type: vec![SensorType::DomainController],
            zone: vec!["default".into()],
            sensor_status: vec![SensorStatus::Syncing],
            ..Default::default()
        },
        sort: Sort::default(),
        after: None,
        limit: 51,
        status: ctx(),
    };
    // The first listed index that fits wins: type before zone and status.
    assert_eq!(sorted_filter_index(&query), Some("sensor_type"));
    let sql = list_sql_walking_filter_index(&query, "sensor_type").sql;
    assert!(sql.contains(" sensor_type IN ($") && !sql.contains("+sensor_type"), "{sql}");
    assert!(sql.contains("+zone IN ($") && sql.contains("+status_base = 8"), "{sql}");
    let walk = list_sql_walking_sort_index(&query).sql;
    assert!(walk.contains("+sensor_type IN ($"), "{walk}");
    let plain = list_sql(&query).sql;
    assert!(!plain.contains('+'), "{plain}");
    let by_seen = SensorQuery { sort: Sort { key: SortKey::LastSeen, descending: true }, ..query };
    assert_eq!(sorted_filter_index(&by_seen), None, "no (type, last_seen_at) index");
    let health = SensorFilter { health_status: vec![HealthStatus::NotHealthyHigh], ..Default::default() };
    let newest = SensorQuery { filter: health, sort: Sort { key: SortKey::Created, descending: true }, ..by_seen };
    assert_eq!(sorted_filter_index(&newest), Some("health_rank"), "sensors_health_created (0016)");
}

#[test]
fn placeholders_match_params() {
    let f = SensorFilter {
        sensor_status: vec![SensorStatus::Syncing, SensorStatus::Disconnected],
        tag: vec!["a".into(), "b".into()],
        q: Some("50%_off".into()),
        delayed_update: Some(true),
        ..Default::default()
    };
    let query = SensorQuery {
        scope: Scope::Subscriptions(vec!["default".into()]),
        filter: f,
        sort: Sort { key: SortKey::SensorStatus, descending: true },
        after: Some(CursorPos { sort: "-sensor_status".into(), value: SortValue::Int(3), id: "id".into() }),
        limit: 50,
        status: ctx(),
    };
    let q = list_sql(&query);
    let n = q.params.len();
    assert!(q.sql.contains(&format!("${n}")) && !q.sql.contains(&format!("${}", n + 1)));
    assert!(q.params.contains(&SqlParam::Text("%50\\%\\_off%".into())));
}

/// Every context the status clock can be in: within the restart grace or not, with or
/// without enough releases for `outdated`.
fn contexts() -> Vec<StatusContext> {
    let mut all = Vec::new();
    for watching_since in [Timestamp(0), Timestamp(999_999_000)] {
        for outdated_below in [None, Some(picket_domain::Version { major: 3, minor: 0, patch: 0 })] {
            all.push(StatusContext { watching_since, outdated_below, ..ctx() });
        }
    }
    all
}

#[test]
fn unreferenced_params_are_found() {
    let mut q = SqlQuery::default();
    let a = q.bind(SqlParam::Int(1));
    for _ in 0..10 {
        q.bind(SqlParam::Int(2));
    }
    q.sql = format!("SELECT {a} + $11 + $10x, '$' WHERE $3 = $30");
    assert_eq!(q.unreferenced_params(), vec![2, 4, 5, 6, 7, 8, 9]);
}

/// Each status predicate, the status sort and every list, count and summary built on
/// them reference every parameter they bind, in every clock context: otherwise one SQL
/// text carries a varying number of parameters, which PostgreSQL refuses against the
/// statement sqlx cached for the text (the status job failed on every tick once a third
/// release appeared).
#[test]
fn status_sql_binds_only_what_it_references() {
    for status_ctx in contexts() {
        for s in SensorStatus::ALL {
            let mut q = SqlQuery::default();
            q.sql = status_predicate(*s, &status_ctx, &mut q);
            assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "{s}: {}", q.sql);
            let mut q = SqlQuery::default();
            q.sql = derive_status_predicate(*s, &status_ctx, &mut q);
            assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "derived {s}: {}", q.sql);
            let filter = SensorFilter { sensor_status: vec![*s], ..Default::default() };
            let query = SensorQuery {
                scope: Scope::All,
                filter: filter.clone(),
                sort: Sort { key: SortKey::SensorStatus, descending: false },
                after: None,
                limit: 10,
                status: status_ctx,
            };
            for q in [
                list_sql(&query),
                list_sql_sqlite(&query),
                list_sql_walking_sort_index(&query),
                count_sql(&Scope::All, &filter, &status_ctx),
                fast_count_sql(&Scope::All, &filter, &status_ctx, NameSearch::Like),
            ] {
                assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "{s}: {}", q.sql);
            }
        }
        let every =
            SensorFilter { sensor_status: SensorStatus::ALL.to_vec(), zone: vec!["z".into()], ..Default::default() };
        let scoped = Scope::Subscriptions(vec!["a".into(), "b".into()]);
        let q = fast_count_sql(&scoped, &every, &status_ctx, NameSearch::Like);
        assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "{}", q.sql);
        let mut q = SqlQuery::default();
        q.sql = status_rank_expr(&status_ctx, &mut q);
        assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "{}", q.sql);
        let q = summary_sql(&Scope::All, &status_ctx);
        assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "{}", q.sql);
    }
}
