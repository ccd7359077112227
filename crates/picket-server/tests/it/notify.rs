//! Notifications end to end inside one process: the webhooks API, and the delivery worker of
//! a real server sending outbox rows to a real HTTP receiver (signature and headers checked,
//! failures retried with the test's clock, a restart in between) and to real UDP and TCP
//! syslog listeners (RFC 5424 frame and CEF fields parsed). Each test runs on SQLite and on
//! PostgreSQL. Outbox rows are inserted through the store, as the health-issue rules do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use picket_server::Clock;
use picket_server::notify::{cef, webhook};
use picket_store::Store;
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use crate::support::{call, get, post, token};

/// Runs `<name>(Backend)` as `sqlite::<name>` and `postgres::<name>`.
macro_rules! each_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )+
        }
    };
}

each_backend!(
    webhooks_api_shows_the_secret_once,
    webhook_requests_are_signed,
    failed_webhooks_are_retried_until_delivered,
    a_pending_delivery_survives_a_restart,
    udp_syslog_gets_rfc5424_with_cef,
    tcp_syslog_is_octet_counted_and_reconnects,
    two_replicas_send_each_delivery_once,
);

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A store of `backend` and its URL, in `dir` for SQLite.
async fn open_store(backend: Backend, dir: &std::path::Path, url: Option<&str>) -> (Arc<dyn Store>, String) {
    match backend {
        Backend::Sqlite => {
            let path = dir.join("picket.db");
            let store = picket_store_sqlite::SqliteStore::open(&path).await.unwrap();
            (Arc::new(store), format!("sqlite://{}", path.display()))
        }
        Backend::Postgres => {
            let url = match url {
                Some(u) => u.to_string(),
                None => picket_testkit::pg::fresh_database_url().await,
            };
            let store = picket_store_postgres::PgStore::connect(&url).await.unwrap();
            (Arc::new(store), url)
        }
    }
}

async fn start(backend: Backend, syslog: Option<String>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = open_store(backend, dir.path(), None).await;
    TestServer::start_with(dir, store, url, |c| c.syslog = syslog).await
}

/// What a health-issue notification looks like in the outbox.
fn issue_payload(event: &str, severity: &str) -> String {
    json!({
        "event": event,
        "issue": {"id": "7f0c-issue", "sensor_id": "s-1", "kind": "disconnected", "severity": severity,
            "status": "open", "opened_at": "2026-11-22T10:00:00.000Z", "closed_at": null,
            "title": "Sensor disconnected", "detail": "No heartbeat since 10:00 | last=seen\nfrom 10.0.0.7",
            "recommendation": "Check that the host is up and can reach the control plane."},
        "sensor": {"id": "s-1", "name": "DC01", "type": "domain_controller", "domain": "corp.example.com",
            "site": "HQ", "zone": "default", "subscription": "default"}
    })
    .to_string()
}

async fn enqueue(srv: &TestServer, event: &str, payload: &str) -> i64 {
    srv.store.enqueue_notification(srv.clock.now(), event, payload).await.unwrap()
}

/// Polls `check` until it returns `Some`, advancing the server's clock by `step` between
/// polls (so retries come due); panics with `what` after 30 s.
async fn wait_for<T>(srv: &TestServer, step: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        srv.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- a webhook receiver ----

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 503 to this many more requests.
    fail: Arc<AtomicU32>,
}

impl Receiver {
    /// Serves on 127.0.0.1:0; the URL.
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let me = me.clone();
            async move {
                let failing = me.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                let status = if failing { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::NO_CONTENT };
                me.got.lock().await.push(Received { headers, body, answered: status.as_u16() });
                status
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks/picket")
    }

    async fn all(&self) -> Vec<Received> {
        self.got.lock().await.clone()
    }

    async fn delivered(&self) -> Vec<Received> {
        self.all().await.into_iter().filter(|r| r.answered < 300).collect()
    }
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

/// Checks the signature scheme as docs/notifications.md tells receivers to.
fn assert_signed(r: &Received, secret: &str) {
    let ts: i64 = header(r, "x-picket-timestamp").parse().expect("numeric timestamp");
    assert!(webhook::verify(secret, ts, &r.body, header(r, "x-picket-signature")), "valid signature");
    assert!(!webhook::verify("some-other-secret!", ts, &r.body, header(r, "x-picket-signature")));
    // Recompute by hand, independent of our verify(): hex HMAC-SHA256 of "<ts>.<body>".
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(&r.body);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let expected = format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&key, &msg).as_ref()));
    assert_eq!(header(r, "x-picket-signature"), expected);
}

async fn add_webhook(srv: &TestServer, url: &str, secret: &str) -> String {
    let v = post(srv, "/api/v1/webhooks", json!({"url": url, "secret": secret})).await.expect(201);
    v["id"].as_str().unwrap().to_string()
}

// ---- tests ----

async fn webhooks_api_shows_the_secret_once(backend: Backend) {
    let srv = start(backend, None).await;
    let given =
        post(&srv, "/api/v1/webhooks", json!({"url": "https://hooks.example.com/a", "secret": "s3cret-s3cret-s3cret"}))
            .await
            .expect(201);
    assert_eq!(given["secret"], "s3cret-s3cret-s3cret");
    assert_eq!(given["url"], "https://hooks.example.com/a");
    srv.clock.advance(Duration::from_secs(1));
    let generated = post(&srv, "/api/v1/webhooks", json!({"url": "http://127.0.0.1:9/b"})).await.expect(201);
    let secret = generated["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");

    let list = get(&srv, "/api/v1/webhooks").await.expect(200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], given["id"]);
    assert!(list.iter().all(|w| w.get("secret").is_none()), "never listed: {list:?}");

    for (body, field) in [
        (json!({"url": "ftp://x/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "https://u:p@x/"}), "url"),
        (json!({"url": "https://x/", "secret": "short"}), "secret"),
    ] {
        let msg = post(&srv, "/api/v1/webhooks", body.clone()).await.error(422, "validation_failed");
        assert!(msg.contains(field), "{body}: {msg}");
    }
    let operator = token(&srv, "operator", None).await;
    call(&srv, Method::GET, "/api/v1/webhooks", Some(&operator), None).await.error(403, "forbidden");
    let scoped = token(&srv, "admin", Some(&["default"])).await;
    call(&srv, Method::POST, "/api/v1/webhooks", Some(&scoped), Some(json!({"url": "https://x/"})))
        .await
        .error(403, "forbidden");

    let id = given["id"].as_str().unwrap();
    call(&srv, Method::DELETE, &format!("/api/v1/webhooks/{id}"), Some(&srv.admin_token), None).await.expect(204);
    call(&srv, Method::DELETE, &format!("/api/v1/webhooks/{id}"), Some(&srv.admin_token), None)
        .await
        .error(404, "not_found");
    let audit = get(&srv, "/api/v1/audit").await.expect(200).to_string();
    assert!(audit.contains("webhook.create") && audit.contains("webhook.delete"), "{audit}");
    assert!(!audit.contains("s3cret") && !audit.contains(secret), "secrets stay out of the audit log");
}

async fn webhook_requests_are_signed(backend: Backend) {
    let srv = start(backend, None).await;
    let rx = Receiver::default();
    let url = rx.start().await;
    let secret = "a-shared-secret-of-some-length";
    add_webhook(&srv, &url, secret).await;
    let payload = issue_payload("health_issue.opened", "high");
    let n = enqueue(&srv, "health_issue.opened", &payload).await;

    let got = wait_for(&srv, Duration::ZERO, "the webhook request", async || {
        let d = rx.delivered().await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    let r = &got[0];
    assert_eq!(r.body, payload.as_bytes(), "the payload is the body, byte for byte");
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "x-picket-event"), "health_issue.opened");
    let ts: i64 = header(r, "x-picket-timestamp").parse().unwrap();
    assert!((ts - srv.clock.now().0 / 1000).abs() <= 5, "timestamp is the server's clock in seconds: {ts}");
    assert_signed(r, secret);
    let deliveries = srv.store.list_deliveries(Some(n)).await.unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(header(r, "x-picket-delivery"), deliveries[0].id);
    let d = wait_for(&srv, Duration::ZERO, "the delivery recorded", async || {
        let rows = srv.store.list_deliveries(Some(n)).await.unwrap();
        rows.into_iter().find(|d| d.delivered_at.is_some())
    })
    .await;
    assert_eq!((d.attempts, d.last_error), (1, None));
}

async fn failed_webhooks_are_retried_until_delivered(backend: Backend) {
    let srv = start(backend, None).await;
    let rx = Receiver::default();
    rx.fail.store(2, Ordering::SeqCst);
    let url = rx.start().await;
    add_webhook(&srv, &url, "retry-secret-0123456789").await;
    let n = enqueue(&srv, "health_issue.reopened", &issue_payload("health_issue.reopened", "medium")).await;

    // Each poll moves the clock a minute, past any early backoff delay.
    let row = wait_for(&srv, Duration::from_secs(60), "delivery after two failures", async || {
        srv.store.list_deliveries(Some(n)).await.unwrap().into_iter().find(|d| d.delivered_at.is_some())
    })
    .await;
    assert_eq!(row.attempts, 3, "two failures, then success: {row:?}");
    let listed = get(&srv, "/api/v1/webhooks").await.expect(200);
    assert_eq!((listed[0]["pending"].as_u64(), listed[0]["failed"].as_u64()), (Some(0), Some(0)), "{listed}");
    assert!(listed[0]["last_delivered_at"].is_string() && listed[0]["last_error"].is_null(), "{listed}");
    assert_eq!(row.last_error, None, "cleared on success");
    let all = rx.all().await;
    assert_eq!(all.iter().map(|r| r.answered).collect::<Vec<_>>(), [503, 503, 204], "delivered exactly once");
    let ids: Vec<&str> = all.iter().map(|r| header(r, "x-picket-delivery")).collect();
    assert!(ids.iter().all(|id| *id == row.id), "one delivery id across retries: {ids:?}");
    for r in &all {
        assert_signed(r, "retry-secret-0123456789");
    }
    // Nothing more is sent once delivered, however much time passes.
    srv.clock.advance(Duration::from_secs(86_400));
    let counts = srv.store.delivery_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed, counts.unfanned), (0, 0, 0));
}

async fn a_pending_delivery_survives_a_restart(backend: Backend) {
    let mut first = start(backend, None).await;
    let rx = Receiver::default();
    rx.fail.store(u32::MAX, Ordering::SeqCst);
    let url = rx.start().await;
    add_webhook(&first, &url, "restart-secret-0123456789").await;
    let n = enqueue(&first, "health_issue.opened", &issue_payload("health_issue.opened", "low")).await;
    let failed = wait_for(&first, Duration::ZERO, "a failed attempt", async || {
        let rows = first.store.list_deliveries(Some(n)).await.unwrap();
        rows.into_iter().find(|d| d.last_error.as_deref().is_some_and(|e| e.contains("503")))
    })
    .await;
    assert_eq!(failed.delivered_at, None);
    let listed = get(&first, "/api/v1/webhooks").await.expect(200);
    assert_eq!(listed[0]["pending"], 1, "{listed}");
    assert!(listed[0]["last_error"].as_str().is_some_and(|e| e.contains("503")), "{listed}");
    assert!(listed[0]["last_delivered_at"].is_null(), "{listed}");

    // Stop the server (keeping its database), bring the receiver back, start a new server
    // with a new store connection on the same database.
    let url_db = first.database_url.clone();
    let dir = std::mem::replace(&mut first.data_dir, tempfile::tempdir().unwrap());
    first.stop().await.unwrap();
    rx.fail.store(0, Ordering::SeqCst);
    let before = rx.all().await.len();
    let (store, db) = open_store(backend, dir.path(), Some(&url_db)).await;
    let second = TestServer::start_with(dir, store, db, |_| {}).await;
    let row = wait_for(&second, Duration::from_secs(60), "delivery after the restart", async || {
        second.store.list_deliveries(Some(n)).await.unwrap().into_iter().find(|d| d.delivered_at.is_some())
    })
    .await;
    assert_eq!(row.id, failed.id);
    let after: Vec<Received> = rx.all().await.split_off(before);
    assert_eq!(after.iter().filter(|r| r.answered == 204).count(), 1, "delivered once after the restart");
    assert_eq!(header(&after[after.len() - 1], "x-picket-delivery"), failed.id, "same delivery id");
}

/// An RFC 5424 message split into its parts: PRI, version, timestamp, host, app, procid,
/// msgid, structured data, msg.
fn parse_rfc5424(m: &str) -> (u16, Vec<String>, String, String) {
    let rest = m.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').expect("PRI>");
    let mut parts = rest.splitn(7, ' ');
    let header: Vec<String> = (0..6).map(|_| parts.next().expect("header field").to_string()).collect();
    let rest = parts.next().expect("SD and MSG");
    // Structured data runs to the first ']' that is not escaped and not inside quotes.
    let (mut quoted, mut escaped, mut end) = (false, false, None);
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.expect("end of structured data");
    let sd = rest[..=end].to_string();
    let msg = rest[end + 1..].strip_prefix(' ').expect("SP before MSG").to_string();
    (pri.parse().expect("numeric PRI"), header, sd, msg)
}

/// Checks one syslog message of the issue notification `n`.
async fn check_syslog_message(srv: &TestServer, m: &str, n: i64, severity_pri: u16, cef_severity: &str) {
    let (pri, header, sd, msg) = parse_rfc5424(m);
    assert_eq!(pri, 16 * 8 + severity_pri, "local0 and the severity: {m}");
    assert_eq!(header[0], "1", "RFC 5424 version");
    assert!(picket_proto::time::parse_ts(&header[1]).is_some(), "RFC 3339 timestamp: {}", header[1]);
    assert_eq!((header[3].as_str(), header[5].as_str()), ("picket", "health_issue.opened"));
    let deliveries = srv.store.list_deliveries(Some(n)).await.unwrap();
    let id = &deliveries.iter().find(|d| d.target.as_str() == "syslog").expect("a syslog delivery").id;
    assert_eq!(sd, format!("[picket@32473 delivery=\"{id}\" event=\"health_issue.opened\"]"));
    let (h, ext) = cef::parse(&msg).unwrap_or_else(|| panic!("CEF: {msg}"));
    assert_eq!(&h[..3], ["0", "Picket", "Picket"]);
    assert_eq!(&h[4..], ["health_issue:disconnected", "Sensor disconnected", cef_severity]);
    let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("msg").as_deref(), Some("No heartbeat since 10:00 | last=seen\nfrom 10.0.0.7"));
    assert!(msg.contains(r"last\=seen\nfrom"), "escaped '=' and newline: {msg}");
    assert_eq!(get("dhost").as_deref(), Some("DC01"));
    assert_eq!(get("externalId").as_deref(), Some("7f0c-issue"));
    assert_eq!(get("act").as_deref(), Some("opened"));
    assert_eq!(get("cs6").as_deref(), Some(id.as_str()));
}

async fn udp_syslog_gets_rfc5424_with_cef(backend: Backend) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let srv = start(backend, Some(format!("udp://{addr}"))).await;
    let n = enqueue(&srv, "health_issue.opened", &issue_payload("health_issue.opened", "high")).await;
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(Duration::from_secs(30), sock.recv_from(&mut buf))
        .await
        .expect("a datagram within 30 s")
        .unwrap();
    let m = String::from_utf8(buf[..len].to_vec()).expect("UTF-8");
    check_syslog_message(&srv, &m, n, 3, "8").await;
    wait_for(&srv, Duration::ZERO, "the UDP delivery recorded", async || {
        let rows = srv.store.list_deliveries(Some(n)).await.unwrap();
        rows.into_iter().find(|d| d.delivered_at.is_some() && d.attempts == 1)
    })
    .await;
}

/// Reads one octet-counted frame.
async fn read_frame(conn: &mut tokio::net::TcpStream) -> String {
    let mut len = Vec::new();
    loop {
        let b = conn.read_u8().await.expect("frame length");
        if b == b' ' {
            break;
        }
        assert!(b.is_ascii_digit(), "octet count digits, got {b}");
        len.push(b);
    }
    let len: usize = String::from_utf8(len).unwrap().parse().unwrap();
    let mut msg = vec![0u8; len];
    conn.read_exact(&mut msg).await.expect("frame body");
    String::from_utf8(msg).expect("UTF-8")
}

async fn tcp_syslog_is_octet_counted_and_reconnects(backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = start(backend, Some(format!("tcp://{addr}"))).await;
    let accept = async || {
        tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.expect("a connection").unwrap().0
    };
    let n1 = enqueue(&srv, "health_issue.opened", &issue_payload("health_issue.opened", "medium")).await;
    let mut conn = accept().await;
    let m = tokio::time::timeout(Duration::from_secs(30), read_frame(&mut conn)).await.expect("a frame");
    check_syslog_message(&srv, &m, n1, 4, "6").await;

    // The collector drops the connection: the next message comes over a new one.
    drop(conn);
    let n2 = enqueue(&srv, "health_issue.opened", &issue_payload("health_issue.opened", "low")).await;
    let mut conn = accept().await;
    let m = tokio::time::timeout(Duration::from_secs(30), read_frame(&mut conn)).await.expect("a frame");
    check_syslog_message(&srv, &m, n2, 5, "3").await;
}

async fn two_replicas_send_each_delivery_once(backend: Backend) {
    // Two servers (each with its own store connections and worker) on one database.
    let a = start(backend, None).await;
    let (store, url) = open_store(backend, a.data_dir.path(), Some(&a.database_url)).await;
    let b = TestServer::start_with(tempfile::tempdir().unwrap(), store, url, |_| {}).await;
    let rx = Receiver::default();
    let hook = rx.start().await;
    add_webhook(&a, &hook, "replica-secret-0123456789").await;
    for i in 0..30 {
        let srv = if i % 2 == 0 { &a } else { &b };
        enqueue(srv, "test.event", &format!("{{\"n\":{i}}}")).await;
    }
    let got = wait_for(&a, Duration::ZERO, "30 deliveries", async || {
        let d = rx.delivered().await;
        (d.len() >= 30).then_some(d)
    })
    .await;
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| header(r, "x-picket-delivery")).collect();
    assert_eq!(ids.len(), 30, "30 distinct deliveries");
    wait_for(&a, Duration::ZERO, "all recorded delivered", async || {
        let c = a.store.delivery_counts().await.unwrap();
        (c.pending == 0 && c.unfanned == 0).then_some(())
    })
    .await;
    assert_eq!(rx.all().await.len(), 30, "no delivery was sent twice");
    let metrics = get(&a, "/metrics").await.text;
    assert!(
        metrics.contains("picket_notification_deliveries_total{target=\"webhook\",outcome=\"delivered\"}"),
        "delivery counter in /metrics"
    );
}
