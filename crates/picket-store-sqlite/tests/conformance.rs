//! Runs the store conformance suite against SQLite, one fresh database file per test.

use std::sync::Arc;

use picket_store::Store;
use picket_store_sqlite::SqliteStore;

async fn fresh_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("nested/picket.db")).await.expect("open SQLite store");
    (Arc::new(store), dir)
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
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("picket.db");
    let store = SqliteStore::open(&path).await.expect("open SQLite store");
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(&path).busy_timeout(std::time::Duration::from_secs(30));
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("a second connection");
    let raw = move |q: &'static str| -> futures_util::future::BoxFuture<'static, ()> {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query(q).execute(&pool).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        })
    };
    picket_store::rollouts_conformance::rollout_group_counts_follow_raw_changes(Arc::new(store), &raw).await;
}
