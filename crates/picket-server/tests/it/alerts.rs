//! Alerts end to end: a sensor uploads over the real mutual-TLS sensor listener
//! (`POST /sensor/v1/alerts`, its own self-signed certificate pinned to it), uploads are
//! idempotent (a retry and concurrent repeats store each alert once), refusals store nothing
//! (too many, bad fields, malformed JSON, a locally managed sensor, an unknown certificate),
//! `GET /api/v1/alerts` lists with filters and scope, and each stored alert reaches a test
//! webhook (HMAC checked) and a UDP syslog receiver (CEF parsed) exactly once. Each test runs
//! on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use picket_domain::{Mode, Timestamp};
use picket_proto::ti::{MAX_ALERTS_PER_UPLOAD, MAX_EXCERPT_BYTES};
use picket_server::Clock;
use picket_server::notify::{cef, webhook};
use picket_store::Store;
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{call, get, post, row, subscription, token};

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
    uploaded_alerts_are_stored_once_listed_and_forwarded,
    uploads_are_refused_whole,
    alert_lists_filter_and_scope
);

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn start(backend: Backend, syslog: Option<String>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let (store, url): (Arc<dyn Store>, String) = match backend {
        Backend::Sqlite => {
            let path = dir.path().join("picket.db");
            let store = picket_store_sqlite::SqliteStore::open(&path).await.unwrap();
            (Arc::new(store), format!("sqlite://{}", path.display()))
        }
        Backend::Postgres => {
            let url = picket_testkit::pg::fresh_database_url().await;
            (Arc::new(picket_store_postgres::PgStore::connect(&url).await.unwrap()), url)
        }
    };
    TestServer::start_with(dir, store, url, |c| c.syslog = syslog).await
}

/// The real sensor listener beside `srv` (same store and CA): its port and a stopper.
struct SensorListener {
    port: u16,
    ca: reqwest::Certificate,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SensorListener {
    async fn start(srv: &TestServer) -> SensorListener {
        let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
        let ca = reqwest::Certificate::from_pem(prepared.tls.ca_cert_pem.as_bytes()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(picket_server::serve_sensors(
            listener,
            prepared.app().clone(),
            prepared.tls.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        SensorListener { port, ca, stop: Some(stop) }
    }

    /// A client with a new self-signed certificate, and that certificate's fingerprint.
    fn client(&self) -> (reqwest::Client, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["sensor".to_string()]).unwrap();
        let t = time::OffsetDateTime::now_utc();
        params.not_before = t - time::Duration::hours(1);
        params.not_after = t + time::Duration::days(730);
        let cert = params.self_signed(&key).unwrap();
        let identity =
            reqwest::Identity::from_pem(format!("{}\n{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_only([self.ca.clone()]).identity(identity).build().unwrap();
        (http, picket_package::sha256_hex(cert.der()))
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/sensor/v1/alerts", self.port)
    }
}

impl Drop for SensorListener {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A sensor `n` named `name` (mode and subscription given) whose certificate is `fp`.
async fn pinned_sensor(srv: &TestServer, n: usize, name: &str, fp: &str, mode: Mode, sub: &str) -> String {
    let mut s = row(srv, n, name);
    s.cert_fingerprint = Some(fp.to_string());
    s.mode = mode;
    s.subscription = sub.to_string();
    let id = s.id.clone();
    srv.store.import_sensors(&[s]).await.unwrap();
    id
}

fn alert(id: &str, secs_ago: i64, severity: &str, value: &str) -> Value {
    let t = Timestamp(SystemNow::ms() - secs_ago * 1000);
    json!({
        "id": id,
        "time": picket_proto::time::format_ts(t),
        "indicator": {"type": "domain", "value": value},
        "severity": severity,
        "excerpt": format!(r#"{{"query":"a.{value}","note":"x=y|z\nnext"}}"#),
        "description": "Known C2 domain",
        "ti_version": 3,
        "sensor_id": "ignored-the-certificate-says-who"
    })
}

struct SystemNow;
impl SystemNow {
    fn ms() -> i64 {
        picket_server::SystemClock.now().0
    }
}

async fn upload(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls `check` until it returns `Some`; panics with `what` after 30 s.
async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook receiver on 127.0.0.1:0 keeping every request.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let me = me.clone();
            async move {
                me.got.lock().await.push((headers, body));
                StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks/alerts")
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

async fn uploaded_alerts_are_stored_once_listed_and_forwarded(backend: Backend) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let syslog_addr = sock.local_addr().unwrap();
    let srv = start(backend, Some(format!("udp://{syslog_addr}"))).await;
    let rx = Receiver::default();
    let hook = rx.start().await;
    let secret = "alert-hook-secret-0123456789";
    post(&srv, "/api/v1/webhooks", json!({"url": hook, "secret": secret})).await.expect(201);
    let sensors = SensorListener::start(&srv).await;
    let (http, fp) = sensors.client();
    let id = pinned_sensor(&srv, 1, "OT01", &fp, Mode::CloudConnected, "default").await;

    let long = format!("{}€", "e".repeat(MAX_EXCERPT_BYTES - 1));
    let mut first = alert("0123456789abcdef0123456789abcdef", 20, "high", "evil.example");
    let second = alert("fedcba9876543210fedcba9876543210", 10, "low", "c2.example");
    first["excerpt"] = json!(long);
    let batch = json!({"alerts": [first, second]});
    let (status, answer) = upload(&http, &sensors.url(), &batch).await;
    assert_eq!((status, answer.clone()), (200, json!({"accepted": 2, "duplicates": 0})), "{answer}");

    // The sensor retries (it never saw the answer), and three copies race: nothing new.
    let (status, answer) = upload(&http, &sensors.url(), &batch).await;
    assert_eq!((status, answer), (200, json!({"accepted": 0, "duplicates": 2})));
    let url = sensors.url();
    let racing = futures_util::future::join_all((0..3).map(|_| upload(&http, &url, &batch))).await;
    for (status, answer) in racing {
        assert_eq!((status, answer), (200, json!({"accepted": 0, "duplicates": 2})));
    }

    let page = get(&srv, "/api/v1/alerts").await.expect(200);
    assert_eq!(page["total"], 2, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items[0]["id"], "fedcba9876543210fedcba9876543210", "newest first");
    let stored = &items[1];
    assert_eq!(stored["sensor_id"], id.as_str(), "the id comes from the certificate");
    assert_eq!(stored["sensor_name"], "OT01");
    assert_eq!(stored["indicator"], json!({"type": "domain", "value": "evil.example"}));
    assert_eq!(stored["severity"], "high");
    assert_eq!(stored["ti_version"], 3);
    assert_eq!(stored["description"], "Known C2 domain");
    let excerpt = stored["excerpt"].as_str().unwrap();
    assert_eq!(excerpt, "e".repeat(MAX_EXCERPT_BYTES - 1), "cut before the € that would cross the limit");
    assert!(picket_proto::time::parse_ts(stored["received_at"].as_str().unwrap()).is_some());

    // Forwarded: one signed webhook request per alert.
    let got = wait_for("two webhook requests", async || {
        let got: Vec<_> = rx
            .got
            .lock()
            .await
            .iter()
            .filter(|(h, _)| header(h, "x-picket-event") == "alert.raised")
            .cloned()
            .collect();
        (got.len() >= 2).then_some(got)
    })
    .await;
    let mut seen = Vec::new();
    for (h, body) in &got {
        assert_eq!(header(h, "x-picket-event"), "alert.raised");
        let ts: i64 = header(h, "x-picket-timestamp").parse().unwrap();
        assert!(webhook::verify(secret, ts, body, header(h, "x-picket-signature")), "HMAC signature");
        let mut msg = format!("{ts}.").into_bytes();
        msg.extend_from_slice(body);
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        assert_eq!(
            header(h, "x-picket-signature"),
            format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&key, &msg).as_ref()))
        );
        let doc: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(doc["event"], "alert.raised");
        assert_eq!(doc["alert"]["sensor_id"], id.as_str());
        assert_eq!(doc["sensor"]["name"], "OT01");
        for field in ["id", "sensor_id", "time", "indicator", "severity", "excerpt"] {
            assert!(!doc["alert"][field].is_null(), "DESIGN.md's alert field {field}: {doc}");
        }
        seen.push(doc["alert"]["id"].as_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]);

    // And one syslog message per alert, CEF inside RFC 5424.
    let mut buf = vec![0u8; 65_536];
    let mut cefs = Vec::new();
    while cefs.len() < 2 {
        let (len, _) = tokio::time::timeout(Duration::from_secs(30), sock.recv_from(&mut buf))
            .await
            .expect("a syslog datagram within 30 s")
            .unwrap();
        let m = String::from_utf8(buf[..len].to_vec()).unwrap();
        assert!(m.contains(" alert.raised [picket@32473 "), "{m}");
        let msg = &m[m.find("CEF:0|").expect("CEF")..];
        cefs.push((m[1..4].to_string(), cef::parse(msg).expect("parses")));
    }
    cefs.sort_by(|a, b| a.1.0[6].cmp(&b.1.0[6]));
    let (low_pri, (h, _)) = &cefs[0];
    assert_eq!((low_pri.as_str(), h[4].as_str(), h[6].as_str()), ("133", "alert:domain", "3"), "low: notice");
    let (high_pri, (h, ext)) = &cefs[1];
    assert_eq!(&h[4..], ["alert:domain", "Threat indicator matched: domain evil.example", "8"]);
    assert!(high_pri.starts_with("131"), "high: local0.err, {high_pri}");
    let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("cs1").as_deref(), Some(id.as_str()));
    assert_eq!(get("cs3").as_deref(), Some("evil.example"));
    assert_eq!(get("dhost").as_deref(), Some("OT01"));
    assert_eq!(get("externalId").as_deref(), Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(get("msg").as_deref(), Some(excerpt));

    // Nothing is forwarded twice: wait until all four deliveries are recorded, then count.
    wait_for("the deliveries recorded", async || {
        let rows = srv.store.list_deliveries(None).await.unwrap();
        (rows.len() >= 4 && rows.iter().all(|d| d.delivered_at.is_some())).then_some(())
    })
    .await;
    let alert_requests =
        rx.got.lock().await.iter().filter(|(h, _)| header(h, "x-picket-event") == "alert.raised").count();
    assert_eq!(alert_requests, 2, "one webhook request per alert, however often it was uploaded");
}

async fn uploads_are_refused_whole(backend: Backend) {
    let srv = start(backend, None).await;
    let sensors = SensorListener::start(&srv).await;
    let (http, fp) = sensors.client();
    pinned_sensor(&srv, 1, "OT01", &fp, Mode::CloudConnected, "default").await;
    let url = sensors.url();

    let too_many: Vec<Value> =
        (0..=MAX_ALERTS_PER_UPLOAD).map(|i| alert(&format!("id{i:04}"), 1, "low", "x.example")).collect();
    let (status, e) = upload(&http, &url, &json!({"alerts": too_many})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (413, Some("payload_too_large")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("at most 500"), "{e}");

    let mut bad = alert("b2", 1, "critical", "x.example");
    let (status, e) = upload(&http, &url, &json!({"alerts": [alert("b1", 1, "low", "x.example"), bad.clone()]})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("validation_failed")), "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("alerts[1]") && m.contains("severity") && m.contains("low, medium, high"), "{m}");
    bad["severity"] = json!("low");
    bad["indicator"]["type"] = json!("url");
    let (status, e) = upload(&http, &url, &json!({"alerts": [bad]})).await;
    assert_eq!(status, 422);
    assert!(e["error"]["message"].as_str().unwrap().contains("indicator.type"), "{e}");
    let (status, e) = upload(&http, &url, &json!({"alerts": [{"id": "x"}]})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("validation_failed")), "{e}");
    let r = http.post(&url).header("content-type", "application/json").body("{nope").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let total = get(&srv, "/api/v1/alerts").await.expect(200)["total"].clone();
    assert_eq!(total, 0, "a refused upload stores nothing, not even its good alerts");

    // A locally managed sensor never uploads; if one does, it is told why.
    let (local, local_fp) = sensors.client();
    pinned_sensor(&srv, 2, "LOCAL01", &local_fp, Mode::LocallyManaged, "default").await;
    let (status, e) = upload(&local, &url, &json!({"alerts": [alert("l1", 1, "low", "x.example")]})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (403, Some("locally_managed")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("picket-sensor alerts list"), "{e}");

    // A certificate pinned to nobody gets 401.
    let (stranger, _) = sensors.client();
    let (status, _) = upload(&stranger, &url, &json!({"alerts": []})).await;
    assert_eq!(status, 401);
    assert_eq!(get(&srv, "/api/v1/alerts").await.expect(200)["total"], 0);
    assert_eq!(srv.store.delivery_counts().await.unwrap().unfanned, 0, "no notification either");
}

async fn alert_lists_filter_and_scope(backend: Backend) {
    let srv = start(backend, None).await;
    subscription(&srv, "plant").await;
    let sensors = SensorListener::start(&srv).await;
    let (a, fa) = sensors.client();
    let (b, fb) = sensors.client();
    let ida = pinned_sensor(&srv, 1, "DC01", &fa, Mode::CloudConnected, "default").await;
    let idb = pinned_sensor(&srv, 2, "OT02", &fb, Mode::CloudConnected, "plant").await;
    let batch_a = json!({"alerts": [alert("a1", 300, "high", "a.example"), alert("a2", 200, "low", "a.example")]});
    let batch_b = json!({"alerts": [alert("b1", 100, "medium", "b.example"), alert("b2", 50, "high", "b.example")]});
    assert_eq!(upload(&a, &sensors.url(), &batch_a).await.0, 200);
    assert_eq!(upload(&b, &sensors.url(), &batch_b).await.0, 200);

    let ids = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
    };
    let all = get(&srv, "/api/v1/alerts").await.expect(200);
    assert_eq!(ids(&all), ["b2", "b1", "a2", "a1"]);
    let high = get(&srv, "/api/v1/alerts?severity=high").await.expect(200);
    assert_eq!((ids(&high), high["total"].as_u64()), (vec!["b2".to_string(), "a1".to_string()], Some(2)));
    let mine = get(&srv, &format!("/api/v1/alerts?sensor_id={ida}&severity=low,high")).await.expect(200);
    assert_eq!(ids(&mine), ["a2", "a1"]);
    let since = picket_proto::time::format_ts(Timestamp(SystemNow::ms() - 150_000));
    let recent = get(&srv, &format!("/api/v1/alerts?since={}", since.replace('+', "%2B"))).await.expect(200);
    assert_eq!(ids(&recent), ["b2", "b1"]);

    // Pages of one walk all four with next_cursor.
    let mut walked = Vec::new();
    let mut path = "/api/v1/alerts?limit=1".to_string();
    loop {
        let p = get(&srv, &path).await.expect(200);
        assert_eq!(p["total"], 4);
        walked.extend(ids(&p));
        match p["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/alerts?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(walked, ["b2", "b1", "a2", "a1"]);

    // A token limited to `plant` sees only plant's alerts, and another sensor's are invisible.
    let plant = token(&srv, "viewer", Some(&["plant"])).await;
    let scoped = call(&srv, Method::GET, "/api/v1/alerts", Some(&plant), None).await.expect(200);
    assert_eq!((ids(&scoped), scoped["total"].as_u64()), (vec!["b2".to_string(), "b1".to_string()], Some(2)));
    let other =
        call(&srv, Method::GET, &format!("/api/v1/alerts?sensor_id={ida}"), Some(&plant), None).await.expect(200);
    assert_eq!(other["total"], 0);
    assert!(ids(&other).is_empty());
    assert!(scoped["items"].as_array().unwrap().iter().all(|i| i["sensor_id"] == idb.as_str()));

    for (q, needle) in [
        ("severity=critical", "low, medium, high"),
        ("since=yesterday", "RFC 3339"),
        ("kind=x", "accepted"),
        ("cursor=zz", "cursor"),
    ] {
        let m = get(&srv, &format!("/api/v1/alerts?{q}")).await.error(400, "bad_request");
        assert!(m.contains(needle), "{q}: {m}");
    }
    call(&srv, Method::GET, "/api/v1/alerts", None, None).await.error(401, "unauthorized");
}
