//! Real `picket serve` instances for tests: a store (SQLite in a temp dir, or a fresh
//! PostgreSQL database), `picket_server::prepare` with a known bootstrap admin token, and
//! `picket_server::serve` on `127.0.0.1:0`. The server's clock is a `ManualClock` the test
//! can advance instead of sleeping. The web portal is mounted as `picket serve` mounts it;
//! `create_user` adds portal users. Dropping the `TestServer` shuts it down.

use std::sync::Arc;

use picket_domain::{Role, Timestamp};
use picket_proto::users::CreateUserRequest;
use picket_server::{Clock, ManualClock, ServerConfig, SystemClock};
use picket_store::Store;
use picket_store_postgres::PgStore;
use picket_store_sqlite::SqliteStore;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin token every test server is bootstrapped with.
pub const ADMIN_TOKEN: &str = "pkt_testkit0000000000000000000000000000000000000000000000000000admin";

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// A bearer token with the admin role and no subscription limit.
    pub admin_token: String,
    /// The server's store, for fixtures (e.g. `import_sensors`) and inspection.
    pub store: Arc<dyn Store>,
    /// The server's clock; advance it to age sensors and tokens.
    pub clock: Arc<ManualClock>,
    /// The settings it was started with.
    pub config: ServerConfig,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The database: `sqlite://<path>` or the PostgreSQL URL, for inspecting what is stored.
    pub database_url: String,
    /// The data dir (removed on drop).
    pub data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server on SQLite in a temp dir.
    pub async fn start_sqlite() -> TestServer {
        TestServer::start_sqlite_with(|_| {}).await
    }

    /// A server on SQLite with settings adjusted by `configure`.
    pub async fn start_sqlite_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("picket.db");
        let store = SqliteStore::open(&path).await.expect("open SQLite store");
        let url = format!("sqlite://{}", path.display());
        TestServer::start_with(dir, Arc::new(store), url, configure).await
    }

    /// A server on a fresh PostgreSQL database of the throw-away cluster.
    pub async fn start_postgres() -> TestServer {
        TestServer::start_postgres_with(|_| {}).await
    }

    /// A server on a fresh PostgreSQL database, with settings adjusted by `configure`.
    pub async fn start_postgres_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = crate::pg::fresh_database_url().await;
        let store = PgStore::connect(&url).await.expect("connect to PostgreSQL");
        TestServer::start_with(dir, Arc::new(store), url, configure).await
    }

    /// A server over `store` (whose database is at `database_url`) with its data dir in `dir`.
    pub async fn start_with(
        dir: TempDir,
        store: Arc<dyn Store>,
        database_url: String,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig::new(dir.path().to_path_buf());
        config.bootstrap_token = Some(ADMIN_TOKEN.to_string());
        configure(&mut config);
        let backend = store.backend();
        let prepared = picket_server::prepare(config.clone(), store.clone()).await.expect("prepare the server");
        let clock = Arc::new(ManualClock::new(Timestamp(SystemClock.now().0)));
        let prepared = prepared
            .with_clock(clock.clone())
            .mount(|app| picket_portal::router(app, picket_portal::PortalOptions::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(picket_server::serve(listener, prepared, async move {
            let _ = rx.await;
        }));
        TestServer {
            base_url: format!("http://{addr}"),
            admin_token: ADMIN_TOKEN.to_string(),
            store,
            clock,
            config,
            backend,
            database_url,
            data_dir: dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Creates a portal user through the REST API (as the admin token) and returns its name.
    pub async fn create_user(&self, username: &str, role: Role, password: &str) -> String {
        let client = picket_client::Client::new(&self.base_url, self.admin_token.clone()).expect("API client");
        let req = CreateUserRequest {
            username: username.to_string(),
            password: password.to_string(),
            role,
            subscriptions: None,
        };
        client.create_user(&req).await.unwrap_or_else(|e| panic!("creating user {username}: {e}"));
        username.to_string()
    }

    /// Shuts the server down and waits until in-flight requests have finished.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
