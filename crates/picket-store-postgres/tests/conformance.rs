//! Runs the store conformance suite against PostgreSQL, one fresh database per test (needs
//! `PICKET_TEST_DATABASE_URL`; `./scripts/test.sh` starts a throw-away cluster and sets it).

use std::sync::Arc;

use picket_store::Store;
use picket_store_postgres::PgStore;

async fn fresh_store() -> (Arc<dyn Store>, ()) {
    let url = picket_testkit::pg::fresh_database_url().await;
    let store = PgStore::connect(&url).await.expect("connect to the test database");
    (Arc::new(store), ())
}

picket_store::conformance_tests!(fresh_store().await);
picket_store::portal_conformance_tests!(fresh_store().await);
picket_store::release_conformance_tests!(fresh_store().await);
picket_store::identity_conformance_tests!(fresh_store().await);
picket_store::health_conformance_tests!(fresh_store().await);
picket_store::notify_conformance_tests!(fresh_store().await);
picket_store::first_run_conformance_tests!(fresh_store().await);
picket_store::rotation_conformance_tests!(fresh_store().await);
picket_store::rollout_conformance_tests!(fresh_store().await);
picket_store::alert_conformance_tests!(fresh_store().await);
picket_store::ti_package_conformance_tests!(fresh_store().await);
picket_store::list_conformance_tests!(fresh_store().await);
picket_store::export_conformance_tests!(fresh_store().await);

/// Migration 0017's triggers follow changes made outside the store (another connection).
#[tokio::test]
async fn rollout_group_counts_follow_raw_changes() {
    let url = picket_testkit::pg::fresh_database_url().await;
    let store = PgStore::connect(&url).await.expect("connect to the test database");
    let pool = sqlx::PgPool::connect(&url).await.expect("a second connection");
    let raw = move |q: &'static str| -> futures_util::future::BoxFuture<'static, ()> {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query(q).execute(&pool).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        })
    };
    picket_store::rollouts_conformance::rollout_group_counts_follow_raw_changes(Arc::new(store), &raw).await;
}

/// Migration 0023's trigger keeps `sensors.blocked_kinds` equal to the open and muted issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_kinds_follow_every_issue_change() {
    let url = picket_testkit::pg::fresh_database_url().await;
    let store = PgStore::connect(&url).await.expect("connect to the test database");
    let pool = sqlx::PgPool::connect(&url).await.expect("a second connection");
    let raw = move |q: &'static str| -> futures_util::future::BoxFuture<'static, i64> {
        let pool = pool.clone();
        Box::pin(async move { sqlx::query_scalar(q).fetch_one(&pool).await.unwrap_or_else(|e| panic!("{q}: {e}")) })
    };
    picket_store::health_conformance::blocked_kinds_follow_every_issue_change(Arc::new(store), &raw).await;
}

/// Migration 0025: two transactions changing issues of one sensor at once (one closes its
/// `start_failed` issue, the other opens an `outdated` one and waits for the first's lock)
/// leave the sensor's `blocked_kinds` as its issues say (it kept the closed kind's bit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_kinds_survive_concurrent_issue_changes() {
    use picket_domain::{Mode, SensorType, Timestamp};
    let url = picket_testkit::pg::fresh_database_url().await;
    let store = PgStore::connect(&url).await.expect("connect to the test database");
    let sensor = picket_store::NewSensor {
        id: "s1".into(),
        name: "DC-S1".into(),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".into(),
        subscription: "default".into(),
        site: String::new(),
        zone: "default".into(),
        tags: Vec::new(),
        mode: Mode::CloudConnected,
        auto_ti_updates: false,
        description: String::new(),
        capture_setting: None,
        delayed_update: false,
        created_at: Timestamp(1_800_000_000_000),
    };
    let audit = picket_store::Audit { actor: "system".into(), action: "sensor.onboard".into(), at: sensor.created_at };
    store.create_sensor(&sensor, &audit).await.expect("create_sensor");
    let pool = sqlx::PgPool::connect(&url).await.expect("raw connections");
    let insert = |id: &str, kind: &str| {
        format!(
            "INSERT INTO health_issues (id, sensor_id, kind, severity, severity_rank, status, opened_at, muted, title, \
             detail, recommendation) VALUES ('{id}', 's1', '{kind}', 'low', 1, 'open', 1, FALSE, 't', 'd', 'r')"
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert("a", "start_failed"))).execute(&pool).await.expect("issue a");
    let bits = async || -> i64 {
        sqlx::query_scalar("SELECT blocked_kinds::BIGINT FROM sensors WHERE id = 's1'")
            .fetch_one(&pool)
            .await
            .expect("bits")
    };
    assert_eq!(bits().await, 4);

    let mut first = pool.begin().await.expect("begin");
    sqlx::query("UPDATE health_issues SET status = 'closed' WHERE id = 'a'")
        .execute(&mut *first)
        .await
        .expect("close a");
    let second = {
        let pool = pool.clone();
        let sql = insert("b", "outdated");
        tokio::spawn(async move {
            let mut t = pool.begin().await.expect("begin");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *t).await.expect("open b");
            t.commit().await.expect("commit b");
        })
    };
    // Let the second transaction reach the sensor row's lock before the first commits.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "the second transaction waits for the first");
    first.commit().await.expect("commit a");
    second.await.expect("second transaction");
    assert_eq!(bits().await, 32, "only the open outdated issue's bit");
    let wrong: i64 = sqlx::query_scalar(picket_store::health_conformance::BLOCKED_KINDS_MISMATCHES)
        .fetch_one(&pool)
        .await
        .expect("mismatches");
    assert_eq!(wrong, 0);
}
