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
