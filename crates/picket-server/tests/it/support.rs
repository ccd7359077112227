//! Helpers: a tiny HTTP caller over reqwest, fixtures written straight into the store, and
//! the macro that runs each test against both SQLite and PostgreSQL.

use picket_domain::{HealthStatus, Mode, SensorType, ServiceStatus, Timestamp, UpdateState};
use picket_store::SensorRow;
use picket_testkit::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Generates `sqlite::<name>` and `postgres::<name>` tests, each running `<name>(server)`;
/// `config = f;` first adjusts the settings with `f(&mut ServerConfig)`.
macro_rules! both_backends {
    (config = $config:path; $($name:ident),+ $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(picket_testkit::server::TestServer::start_sqlite_with($config).await).await
                }
            )+
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(picket_testkit::server::TestServer::start_postgres_with($config).await).await
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {
        both_backends!(config = $crate::support::default_config; $($name),+);
    };
}

/// Leaves the test server's settings as they are.
pub fn default_config(_: &mut picket_server::ServerConfig) {}
pub(crate) use both_backends;

/// An answer: status, headers and body.
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        if self.text.is_empty() { Value::Null } else { self.json() }
    }

    /// Asserts an error answer with this status and code; returns its message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        let v = self.expect(status);
        assert_eq!(v["error"]["code"], code, "body: {}", self.text);
        v["error"]["message"].as_str().unwrap_or_default().to_string()
    }
}

/// Calls the server.
pub async fn call(srv: &TestServer, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    let mut req = reqwest::Client::new().request(method, srv.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    Resp { status, headers, text }
}

/// Sends a raw body with a content type.
pub async fn call_raw(srv: &TestServer, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
    let r = reqwest::Client::new()
        .request(method, srv.url(path))
        .bearer_auth(&srv.admin_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Resp { status, headers, text }
}

/// GET as admin.
pub async fn get(srv: &TestServer, path: &str) -> Resp {
    call(srv, Method::GET, path, Some(&srv.admin_token), None).await
}

/// POST as admin.
pub async fn post(srv: &TestServer, path: &str, body: Value) -> Resp {
    call(srv, Method::POST, path, Some(&srv.admin_token), Some(body)).await
}

/// PATCH as admin.
pub async fn patch(srv: &TestServer, path: &str, body: Value) -> Resp {
    call(srv, Method::PATCH, path, Some(&srv.admin_token), Some(body)).await
}

/// Onboards a sensor as admin and returns it.
pub async fn onboard(srv: &TestServer, body: Value) -> Value {
    post(srv, "/api/v1/sensors", body).await.expect(201)
}

/// Onboards a domain controller named `name`.
pub async fn onboard_named(srv: &TestServer, name: &str) -> Value {
    onboard(srv, json!({"name": name, "type": "domain_controller", "domain": "corp.example.com"})).await
}

/// Creates a token with `role` (and subscriptions) and returns its secret.
pub async fn token(srv: &TestServer, role: &str, subscriptions: Option<&[&str]>) -> String {
    let v = post(srv, "/api/v1/tokens", json!({"role": role, "subscriptions": subscriptions})).await.expect(201);
    v["token"].as_str().unwrap().to_string()
}

/// Creates a subscription as admin.
pub async fn subscription(srv: &TestServer, name: &str) {
    post(srv, "/api/v1/subscriptions", json!({"name": name})).await.expect(201);
}

/// A sensor record for `import_sensors`: an activated, healthy, up-to-date domain controller
/// last seen now (by the server's clock), in `default`.
pub fn row(srv: &TestServer, n: usize, name: &str) -> SensorRow {
    use picket_server::Clock;
    let now = srv.clock.now();
    SensorRow {
        id: format!("00000000-0000-4000-8000-{n:012}"),
        name: name.to_string(),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".to_string(),
        subscription: "default".to_string(),
        site: String::new(),
        zone: "default".to_string(),
        tags: Vec::new(),
        mode: Mode::CloudConnected,
        auto_ti_updates: true,
        description: String::new(),
        capture_setting: None,
        delayed_update: false,
        service_status: ServiceStatus::Running,
        version: Some("1.0.0".parse().unwrap()),
        created_at: Timestamp(now.0 - 3_600_000 + n as i64),
        last_seen_at: Some(now),
        activated_at: Some(Timestamp(now.0 - 3_500_000)),
        decommissioned_at: None,
        service_started_at: Some(Timestamp(now.0 - 3_400_000)),
        last_config_pull_at: Some(Timestamp(now.0 - 3_300_000)),
        update_state: UpdateState::Idle,
        config_version_applied: 1,
        config_version_desired: 1,
        ti_version: None,
        open_issues: 0,
        health_status: HealthStatus::Healthy,
        activation_expires_at: None,
        cert_fingerprint: Some(format!("{n:064}")),
    }
}

/// Imports fixtures.
pub async fn import(srv: &TestServer, rows: Vec<SensorRow>) {
    srv.store.import_sensors(&rows).await.expect("import sensors");
}

/// Names of the sensors of a list answer, in order.
pub fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// The stored activation token hash of a sensor, read straight from the database.
pub async fn stored_activation_hash(srv: &TestServer, id: &str) -> Option<String> {
    use sqlx::Connection;
    if srv.backend == "sqlite" {
        let mut c = sqlx::SqliteConnection::connect(&format!("{}?mode=ro", srv.database_url)).await.unwrap();
        sqlx::query_scalar("SELECT activation_token_hash FROM sensors WHERE id = $1")
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&srv.database_url).await.unwrap();
        sqlx::query_scalar("SELECT activation_token_hash FROM sensors WHERE id = $1")
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

/// Every text value of every stored sensor row, for "this secret is not stored" checks.
pub async fn all_stored_text(srv: &TestServer) -> String {
    use sqlx::Connection;
    if srv.backend == "sqlite" {
        let mut out = String::new();
        for suffix in ["", "-wal"] {
            let path = srv.database_url.trim_start_matches("sqlite://").to_string() + suffix;
            if let Ok(bytes) = std::fs::read(&path) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        out
    } else {
        let mut c = sqlx::PgConnection::connect(&srv.database_url).await.unwrap();
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT row_to_json(s)::text FROM sensors s").fetch_all(&mut c).await.unwrap();
        rows.join("\n")
    }
}
