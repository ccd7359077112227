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
