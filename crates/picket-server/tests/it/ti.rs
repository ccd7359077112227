//! Threat-intelligence packages through the REST API and the sensor API: publishing (good,
//! tampered, unknown key, a release package, invalid indicators, not newer, too large, wrong
//! role), the list and the download, sensors fetching a TI package by digest, heartbeat
//! answers offering the current TI package only to cloud-connected sensors with auto TI
//! updates that run an older one, and the `ti_stale` health issue raised and closed.

use std::time::{Duration, Instant};

use picket_domain::{Mode, ServiceStatus, Timestamp};
use picket_package::{SecretKey, TiBuildOptions};
use picket_server::Clock;
use picket_store::Heartbeat;
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::Value;

use crate::support::*;

both_backends!(
    config = configure;
    ti_publishing_verifies_lists_and_downloads,
    bad_ti_packages_are_refused_with_their_code,
    heartbeats_offer_ti_to_auto_update_sensors_only,
    ti_stale_is_raised_and_closed
);

/// The key the test servers trust.
fn trusted() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

/// Trust `trusted()`; accept packages up to 64 KiB; a fast status job; TI stale after 1 h.
fn configure(c: &mut picket_server::ServerConfig) {
    let path = c.data_dir.join("release.pub");
    std::fs::write(&path, format!("{}\n", trusted().public().to_base64())).unwrap();
    c.release_key_pubs = vec![path];
    c.max_release_bytes = 64 << 10;
    c.health_check_every = Duration::from_millis(50);
    c.ti_stale_after = Duration::from_secs(3600);
}

/// An indicators file of `n` indicators.
fn indicators(n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"type": "ip", "value": format!("10.0.{}.{}", i / 250, i % 250 + 1), "severity": "high"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({ "indicators": items })).unwrap()
}

/// A TI package of `version` with `n` indicators, signed by `key`.
fn ti_package(version: i64, n: usize, key: &SecretKey) -> Vec<u8> {
    let opts = TiBuildOptions { version, indicator_count: n as u64, signed_at: Timestamp(1_800_000_000_000) };
    picket_package::build_ti(&indicators(n), &opts, key).unwrap()
}

async fn upload(srv: &TestServer, token: &str, bytes: Vec<u8>) -> Resp {
    let r = reqwest::Client::new()
        .post(srv.url("/api/v1/ti-packages"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    Resp { status, headers, text: r.text().await.unwrap_or_default() }
}

async fn download(srv: &TestServer, token: &str, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new().get(srv.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

async fn ti_publishing_verifies_lists_and_downloads(srv: TestServer) {
    let list = get(&srv, "/api/v1/ti-packages").await.expect(200);
    assert_eq!(list, serde_json::json!({"items": [], "current": null}));
    let p1 = ti_package(1, 3, &trusted());
    let v = upload(&srv, &srv.admin_token, p1.clone()).await.expect(201);
    assert_eq!((v["version"].as_i64(), v["current"].as_bool()), (Some(1), Some(true)));
    assert_eq!(v["sha256"].as_str(), Some(picket_package::sha256_hex(&p1).as_str()));
    assert_eq!((v["size"].as_u64(), v["indicator_count"].as_u64()), (Some(p1.len() as u64), Some(3)));
    assert_eq!(v["signing_key_id"].as_str(), Some(trusted().public().key_id().as_str()));
    assert!(v["signed_at"].as_str().unwrap().starts_with("2027-01-15T08:00:00"), "{v}");
    // An operator may publish too; versions are integers (10 after 9).
    let operator = token(&srv, "operator", None).await;
    for version in [9, 10] {
        upload(&srv, &operator, ti_package(version, 2, &trusted())).await.expect(201);
    }
    let list = get(&srv, "/api/v1/ti-packages").await.expect(200);
    let rows: Vec<(i64, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_i64().unwrap(), r["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(rows, [(1, false), (9, false), (10, true)]);
    assert_eq!(list["current"], 10);
    assert!(list["items"][2]["published_by"].as_str().unwrap().starts_with("token:"));
    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    let published = audit["items"].as_array().unwrap().iter().filter(|a| a["action"] == "ti_package.publish").count();
    assert_eq!(published, 3, "{audit}");
    // Any role downloads; the bytes are the package.
    let viewer = token(&srv, "viewer", None).await;
    let (status, body) = download(&srv, &viewer, "/api/v1/ti-packages/1/download").await;
    assert_eq!((status, body == p1), (200, true));
    // Saved as `.tipkg`: browsers hold a `.pkg` (a macOS installer to them) for confirmation.
    let r = reqwest::Client::new()
        .get(srv.url("/api/v1/ti-packages/10/download"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=\"picket-ti-10.tipkg\"");
    let (status, _) = download(&srv, &viewer, "/api/v1/ti-packages/2/download").await;
    assert_eq!(status, 404);
    let (status, _) = download(&srv, &viewer, "/api/v1/ti-packages/x/download").await;
    assert_eq!(status, 400);
    call(&srv, Method::GET, "/api/v1/ti-packages", Some(&viewer), None).await.expect(200);
    // A viewer cannot publish.
    upload(&srv, &viewer, ti_package(11, 1, &trusted())).await.error(403, "forbidden");
}

async fn bad_ti_packages_are_refused_with_their_code(srv: TestServer) {
    let good = ti_package(5, 2, &trusted());
    // A tampered manifest: same length, another version.
    let mut forged = good.clone();
    let at = forged.windows(12).position(|w| w == b"\"version\": 5").unwrap();
    forged[at + 11] = b'7';
    let m = upload(&srv, &srv.admin_token, forged).await.error(422, "bad_signature");
    assert!(m.contains("tampered"), "{m}");
    // Tampered indicators.
    let mut tampered = good.clone();
    let at = tampered.windows(8).position(|w| w == b"10.0.0.1").unwrap();
    tampered[at + 7] = b'9';
    upload(&srv, &srv.admin_token, tampered).await.error(422, "digest_mismatch");
    // Signed by a key the server does not trust.
    let m = upload(&srv, &srv.admin_token, ti_package(5, 2, &SecretKey::from_seed([7; 32])))
        .await
        .error(422, "unknown_key");
    assert!(m.contains("not one of the trusted release keys"), "{m}");
    // Not a TI package; an indicators file that the signer did not check.
    upload(&srv, &srv.admin_token, b"not a package".to_vec()).await.error(422, "invalid_package");
    let bad = br#"{"indicators": [{"type": "ip", "value": "not an address", "severity": "high"}]}"#;
    let opts = TiBuildOptions { version: 5, indicator_count: 1, signed_at: Timestamp(1_800_000_000_000) };
    let pkg = picket_package::build_ti(bad, &opts, &trusted()).unwrap();
    upload(&srv, &srv.admin_token, pkg).await.error(422, "invalid_indicators");
    upload(&srv, &srv.admin_token, Vec::new()).await.error(400, "bad_request");
    // Too large (64 KiB here).
    upload(&srv, &srv.admin_token, ti_package(5, 3000, &trusted())).await.error(413, "payload_too_large");
    // The good one, then the same version and a lower one.
    upload(&srv, &srv.admin_token, good.clone()).await.expect(201);
    let m = upload(&srv, &srv.admin_token, good).await.error(409, "version_not_newer");
    assert!(m.contains("not above the current TI version 5"), "{m}");
    upload(&srv, &srv.admin_token, ti_package(4, 1, &trusted())).await.error(409, "version_not_newer");
    let list = get(&srv, "/api/v1/ti-packages").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "refusals store nothing: {list}");
}

/// Serves the sensor API's router on plain TCP, every request carrying `fingerprint` as the
/// mutual-TLS acceptor would put it there. Its app is a second replica over the same store.
async fn sensor_router(srv: &TestServer, fingerprint: String) -> (String, std::sync::Arc<picket_server::App>) {
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let app = prepared.app().clone();
    let state = picket_server::sensor_api::SensorState {
        app: app.clone(),
        batcher: picket_server::app::HeartbeatBatcher::default(),
    };
    let router = picket_server::sensor_api::router(state).layer(axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| {
            req.extensions_mut().insert(picket_server::sensor_api::tls::PeerFingerprint(fingerprint.clone()));
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), app)
}

async fn beat(base: &str, ti_version: Option<i64>) -> Value {
    let body = serde_json::json!({"service_status": "running", "version": "1.0.0", "ti_version": ti_version});
    let r = reqwest::Client::new().post(format!("{base}/sensor/v1/heartbeat")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn heartbeats_offer_ti_to_auto_update_sensors_only(srv: TestServer) {
    let mut manual = row(&srv, 2, "DC02");
    manual.auto_ti_updates = false;
    let mut local = row(&srv, 3, "DC03");
    local.mode = Mode::LocallyManaged;
    let auto = row(&srv, 1, "DC01");
    let fps: Vec<String> = [&auto, &manual, &local].iter().map(|r| r.cert_fingerprint.clone().unwrap()).collect();
    import(&srv, vec![auto, manual, local]).await;
    let (a, replica) = sensor_router(&srv, fps[0].clone()).await;
    let (m, _) = sensor_router(&srv, fps[1].clone()).await;
    let (l, _) = sensor_router(&srv, fps[2].clone()).await;
    assert!(beat(&a, None).await.get("ti").is_none(), "nothing published yet");
    // Published through the REST API's server: the sensor routers are another replica, which
    // learns of it on its next refresh (the status job's tick; called here directly).
    let p = ti_package(3, 2, &trusted());
    let view = upload(&srv, &srv.admin_token, p.clone()).await.expect(201);
    replica.refresh_ti().await.unwrap();
    let sha = view["sha256"].as_str().unwrap().to_string();
    let answer = beat(&a, None).await;
    assert_eq!(answer["ti"], serde_json::json!({"version": 3, "sha256": sha, "size": p.len()}), "{answer}");
    assert_eq!(beat(&a, Some(2)).await["ti"]["version"], 3);
    assert!(beat(&a, Some(3)).await.get("ti").is_none(), "it runs the current one");
    assert!(beat(&m, Some(1)).await.get("ti").is_none(), "auto TI updates off");
    assert!(beat(&l, Some(1)).await.get("ti").is_none(), "locally managed");
    // The offered package downloads by its digest from the sensor API, whole and by range.
    let http = reqwest::Client::new();
    let r = http.get(format!("{a}/sensor/v1/packages/{sha}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), p);
    let r = http.get(format!("{a}/sensor/v1/packages/{sha}")).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), p[10..20]);
    let keys = [trusted().public()];
    let v = picket_package::verify_ti(&p, &keys, &picket_package::TiLimits::default()).unwrap();
    assert_eq!(v.package_sha256, sha);
}

/// Polls `path` until `f` accepts its JSON, panicking after 30 s.
async fn poll(srv: &TestServer, path: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get(srv, path).await.expect(200);
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A heartbeat now reporting `ti_version`.
async fn heartbeat(srv: &TestServer, id: &str, ti_version: Option<i64>) {
    let hb = Heartbeat {
        sensor_id: id.to_string(),
        at: srv.clock.now(),
        service_status: ServiceStatus::Running,
        version: Some("1.0.0".parse().unwrap()),
        config_version_applied: 1,
        ti_version,
        service_started_at: None,
        rss_bytes: None,
        cpu_permille: None,
    };
    srv.store.record_heartbeats(&[hb]).await.unwrap();
}

fn ti_issues(v: &Value, status: &str) -> Vec<Value> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "ti_stale" && i["status"] == status)
        .cloned()
        .collect()
}

async fn ti_stale_is_raised_and_closed(srv: TestServer) {
    const S1: &str = "00000000-0000-4000-8000-000000000001";
    const S2: &str = "00000000-0000-4000-8000-000000000002";
    let mut behind = row(&srv, 1, "DC01");
    behind.ti_version = Some(1);
    let mut local = row(&srv, 2, "DC02");
    local.mode = Mode::LocallyManaged;
    import(&srv, vec![behind, local]).await;
    upload(&srv, &srv.admin_token, ti_package(2, 1, &trusted())).await.expect(201);
    // Published just now: nobody is stale yet, whatever they run.
    srv.clock.advance(Duration::from_secs(30 * 60));
    heartbeat(&srv, S1, Some(1)).await;
    // One tick of the status job, run here on a replica with the same clock.
    let clock: std::sync::Arc<dyn Clock> = srv.clock.clone();
    let replica = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap().with_clock(clock);
    replica.app().check_health().await.unwrap();
    let all = get(&srv, "/api/v1/health-issues").await.expect(200);
    assert!(ti_issues(&all, "open").is_empty(), "not stale within --ti-stale-after: {all}");
    // Past --ti-stale-after (1 h): DC01 (runs 1 < 2) gets a low ti_stale issue; the locally
    // managed DC02 raises nothing.
    srv.clock.advance(Duration::from_secs(45 * 60));
    heartbeat(&srv, S1, Some(1)).await;
    let page = poll(&srv, "/api/v1/health-issues", "a ti_stale issue", |v| !ti_issues(v, "open").is_empty()).await;
    let open = ti_issues(&page, "open");
    assert_eq!(open.len(), 1, "{page}");
    assert_eq!((open[0]["sensor_id"].as_str(), open[0]["severity"].as_str()), (Some(S1), Some("low")));
    assert!(open[0]["detail"].as_str().unwrap().contains("runs TI version 1"), "{}", open[0]);
    let sensor = get(&srv, &format!("/api/v1/sensors/{S1}")).await.expect(200);
    assert_eq!(sensor["health_status"], "not_healthy_low", "{sensor}");
    let s2 = get(&srv, &format!("/api/v1/sensors/{S2}/health-issues")).await.expect(200);
    assert!(ti_issues(&s2, "open").is_empty());
    // DC01 imports version 2: the issue auto-closes.
    heartbeat(&srv, S1, Some(2)).await;
    let page = poll(&srv, &format!("/api/v1/sensors/{S1}/health-issues"), "the ti_stale issue closed", |v| {
        ti_issues(v, "open").is_empty() && !ti_issues(v, "closed").is_empty()
    })
    .await;
    assert_eq!(ti_issues(&page, "closed")[0]["closed_by"], "system", "{page}");
}
