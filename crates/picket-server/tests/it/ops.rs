//! `/healthz`, `/metrics`, `/api/openapi.json`, first-start token generation, and graceful
//! shutdown.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use picket_server::ServerConfig;
use picket_testkit::server::TestServer;
use reqwest::Method;

use crate::support::*;

both_backends!(healthz_metrics_and_openapi);

async fn healthz_metrics_and_openapi(srv: TestServer) {
    let h = call(&srv, Method::GET, "/healthz", None, None).await.expect(200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["backend"], srv.backend);

    get(&srv, "/api/v1/sensors").await.expect(200);
    get(&srv, "/api/v1/sensors/abc").await.error(404, "not_found");
    let m = call(&srv, Method::GET, "/metrics", None, None).await;
    assert_eq!(m.status.as_u16(), 200);
    assert!(m.text.contains("picket_http_requests_total"), "{}", m.text);
    assert!(m.text.contains("route=\"/api/v1/sensors/{id}\""), "{}", m.text);
    assert!(m.text.contains("picket_http_request_duration_seconds_bucket"), "{}", m.text);

    let spec = call(&srv, Method::GET, "/api/openapi.json", None, None).await.expect(200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["paths"]["/api/v1/sensors/{id}/activation-file"]["get"].is_object());

    // Key files are private.
    for (file, mode) in
        [("tls/ca.key", 0o600), ("tls/server.key", 0o600), ("tls/ca.pem", 0o644), ("tls/server.pem", 0o644)]
    {
        let meta = std::fs::metadata(srv.data_dir.path().join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
}

#[tokio::test]
async fn first_start_generates_a_bootstrap_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn picket_store::Store> =
        Arc::new(picket_store_sqlite::SqliteStore::open(&dir.path().join("picket.db")).await.unwrap());
    let config = ServerConfig::new(dir.path().to_path_buf());
    let first = picket_server::prepare(config.clone(), store.clone()).await.unwrap();
    let token = first.generated_bootstrap_token.clone().expect("a generated token");
    assert!(token.starts_with("pkt_") && token.len() == 68);
    let file = dir.path().join("bootstrap-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let second = picket_server::prepare(config, store.clone()).await.unwrap();
    assert!(second.generated_bootstrap_token.is_none());
    assert_eq!(store.list_api_tokens().await.unwrap().len(), 1);
    assert!(format!("{first:?}").contains("redacted") && !format!("{first:?}").contains(&token));

    // The generated token works against a served instance.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(picket_server::serve(listener, second, async move {
        let _ = rx.await;
    }));
    let r =
        reqwest::Client::new().get(format!("http://{addr}/api/v1/tokens")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let srv = TestServer::start_sqlite().await;
    let rows: Vec<_> = (0..3000).map(|i| row(&srv, i, &format!("S{i:05}"))).collect();
    import(&srv, rows).await;
    let url = srv.url("/api/v1/sensors/export.csv");
    let token = srv.admin_token.clone();
    let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Headers are in; stop the server while the body is still streaming.
    let stopping = tokio::spawn(srv.stop());
    let body = resp.text().await.unwrap();
    assert_eq!(body.lines().count(), 3001);
    stopping.await.unwrap().unwrap();
}
