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

/// The export conformance again with batches of 3 sensors (2,048 in production), so every
/// case crosses batch boundaries: cursors between batches, the last batch full or short.
mod export_in_small_batches {
    use super::*;

    async fn small_batch_store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("picket.db")).await.expect("open SQLite store");
        (Arc::new(store.with_export_batch_rows(3)), dir)
    }

    picket_store::export_conformance_tests!(small_batch_store().await);
}

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

/// Migration 0023's triggers keep `sensors.blocked_kinds` equal to the open and muted issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_kinds_follow_every_issue_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("picket.db");
    let store = SqliteStore::open(&path).await.expect("open SQLite store");
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(&path).busy_timeout(std::time::Duration::from_secs(30));
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("a second connection");
    let raw = move |q: &'static str| -> futures_util::future::BoxFuture<'static, i64> {
        let pool = pool.clone();
        Box::pin(async move { sqlx::query_scalar(q).fetch_one(&pool).await.unwrap_or_else(|e| panic!("{q}: {e}")) })
    };
    picket_store::health_conformance::blocked_kinds_follow_every_issue_change(Arc::new(store), &raw).await;
}

/// The workspace's `.cargo/config.toml` reaches the bundled SQLite: built without memory
/// statistics (each SQLite allocation took a process-wide lock; BENCHMARKS.md, export).
#[tokio::test]
async fn sqlite_is_built_without_memory_statistics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("picket.db")).await.expect("open SQLite store");
    assert!(store.built_without_memstatus().await.expect("compile options"), "SQLITE_DEFAULT_MEMSTATUS=0");
}
