//! Rollouts through the REST API: `GET /api/v1/rollouts/current` (404 `no_rollout` before a
//! release, then progress per sensor as the rollout job grants), pause, resume and rollback
//! (one sensor, a version, or the current release) with their roles and audit records, and
//! `--rollout-concurrency` / `--rollout-max-failures` taking effect. Grants come from the
//! server's real rollout job; clearance is written through the store as a sensor's heartbeat
//! and report would. A watchdog restart relayed in a heartbeat (sensor API router, the
//! certificate fingerprint injected as the mutual-TLS listener does) raises `watchdog_restart`.

use std::path::Path;
use std::time::Duration;

use picket_domain::{ServiceStatus, Timestamp, Version};
use picket_package::{BuildOptions, SecretKey};
use picket_server::Clock;
use picket_store::Heartbeat;
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_backends!(
    config = configure;
    rollout_progress_pause_resume_and_rollback
);

mod watchdog {
    use super::*;
    both_backends!(watchdog_restart_in_a_heartbeat_raises_an_issue_that_closes_when_quiet);
}

mod flags {
    use super::*;
    both_backends!(
        config = configure_two;
        concurrency_two_grants_two_at_once_and_max_failures_two_pauses_at_the_second
    );
}

fn key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// Trust `key()`; the delayed ring after 1 h; deadlines far away (the test moves the clock).
fn configure(c: &mut picket_server::ServerConfig) {
    let path = c.data_dir.join("release.pub");
    std::fs::write(&path, format!("{}\n", key().public().to_base64())).unwrap();
    c.release_key_pubs = vec![path];
    c.delay_ring_after = Duration::from_secs(3600);
    c.update_deadline = Duration::from_secs(1000 * 3600);
}

fn configure_two(c: &mut picket_server::ServerConfig) {
    configure(c);
    c.rollout_concurrency = 2;
    c.rollout_max_failures = 2;
}

/// Publishes a small signed package of `version`.
async fn publish(srv: &TestServer, dir: &Path, version: &str) {
    let input = dir.join(format!("in-{version}"));
    std::fs::create_dir_all(input.join("bin")).unwrap();
    std::fs::write(input.join("bin/picket-sensor"), b"#!/bin/sh\nexit 0\n").unwrap();
    let now = srv.clock.now();
    let opts = BuildOptions {
        version: version.parse().unwrap(),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now,
        expires_at: Timestamp(now.0 + 86_400_000),
        min_updater_version: "0.1.0".parse().unwrap(),
        compression_level: 3,
    };
    let out = dir.join(format!("picket-{version}.pkg"));
    picket_package::build(&input, &opts, &key(), &out).unwrap();
    call_raw(srv, Method::POST, "/api/v1/releases", "application/octet-stream", std::fs::read(&out).unwrap())
        .await
        .expect(201);
}

/// A heartbeat of `id` reporting `version`, running.
async fn beat(srv: &TestServer, id: &str, version: &str) {
    let hb = Heartbeat {
        sensor_id: id.to_string(),
        at: srv.clock.now(),
        service_status: ServiceStatus::Running,
        version: Some(version.parse::<Version>().unwrap()),
        config_version_applied: 1,
        ti_version: None,
        service_started_at: None,
        rss_bytes: None,
        cpu_permille: None,
    };
    srv.store.record_heartbeats(&[hb]).await.unwrap();
}

/// The sensor reports `version` healthy and the outcome of its open grant.
async fn finish(srv: &TestServer, id: &str, version: &str, succeeded: bool) {
    beat(srv, id, version).await;
    let g = srv.store.open_grant(id).await.unwrap().expect("an open grant");
    let error = (!succeeded).then_some("bad signature");
    assert!(srv.store.finish_grant(id, &g.update_id, succeeded, error, srv.clock.now()).await.unwrap());
}

/// Polls `GET /api/v1/rollouts/current` until `ok` holds (the rollout job ticks every second).
async fn until(srv: &TestServer, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(srv, "/api/v1/rollouts/current").await;
        if r.status == 200 && ok(&r.json()) {
            return r.json();
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last answer: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sensor<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["sensors"].as_array().unwrap().iter().find(|s| s["sensor_id"] == id).unwrap_or_else(|| panic!("{id}: {view}"))
}

fn state(view: &Value, id: &str) -> String {
    sensor(view, id)["state"].as_str().unwrap().to_string()
}

/// Three immediate sensors and one delayed one, on 1.0.0.
async fn fleet(srv: &TestServer) -> Vec<String> {
    let mut rows = Vec::new();
    for (n, name) in ["A", "B", "C", "D"].iter().enumerate() {
        let mut r = row(srv, n + 1, name);
        r.delayed_update = *name == "D";
        rows.push(r);
    }
    let ids = rows.iter().map(|r| r.id.clone()).collect();
    import(srv, rows).await;
    ids
}

async fn audit_actions(srv: &TestServer) -> Vec<String> {
    let v = get(srv, "/api/v1/audit?limit=200").await.expect(200);
    let items = v["items"].as_array().cloned().unwrap_or_else(|| v.as_array().cloned().unwrap_or_default());
    items.iter().map(|e| e["action"].as_str().unwrap_or_default().to_string()).collect()
}

async fn rollout_progress_pause_resume_and_rollback(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let viewer = token(&srv, "viewer", None).await;
    let operator = token(&srv, "operator", None).await;
    let rollout = "/api/v1/rollouts/current";
    let msg = call(&srv, Method::GET, rollout, Some(&viewer), None).await.error(404, "no_rollout");
    assert!(msg.contains("picket release publish"), "{msg}");
    for action in ["pause", "resume", "rollback"] {
        call(&srv, Method::POST, &format!("{rollout}/{action}"), Some(&operator), None).await.error(404, "no_rollout");
    }
    let ids = fleet(&srv).await;
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    publish(&srv, dir.path(), "1.0.0").await;
    until(&srv, "the rollout of 1.0.0", |v| v["version"] == "1.0.0" && v["state"] == "finished").await;
    publish(&srv, dir.path(), "1.1.0").await;

    // One at a time, the immediate ring first by id; the delayed sensor waits.
    let v = until(&srv, "A updating", |v| v["version"] == "1.1.0" && v["counts"]["updating"] == 1).await;
    assert_eq!(v["previous_version"], "1.0.0");
    assert_eq!(v["state"], "active");
    assert_eq!((v["concurrency"].as_u64(), v["max_failures"].as_u64()), (Some(1), Some(1)));
    assert_eq!(v["delay_ring_after_secs"], 3600);
    assert_eq!(v["delayed_ring_due"], false);
    assert_eq!(state(&v, a), "updating");
    assert!(sensor(&v, a)["update_id"].as_str().unwrap().starts_with("upd_"));
    assert_eq!(sensor(&v, a)["ring"], "immediate");
    assert_eq!(sensor(&v, a)["sensor_name"], "A");
    assert_eq!(sensor(&v, a)["version"], "1.0.0");
    assert_eq!(
        (state(&v, b), state(&v, c), state(&v, d)),
        ("pending".into(), "pending".into(), "waiting_delay".into())
    );
    assert_eq!(sensor(&v, d)["ring"], "delayed");
    assert_eq!(v["sensors"].as_array().unwrap().last().unwrap()["sensor_id"], d.as_str(), "delayed ring listed last");
    assert_eq!(v["counts"]["total"], 4);
    assert_eq!(v["counts"]["pending"], 2);
    assert_eq!(v["counts"]["waiting_delay"], 1);

    // Roles: a viewer reads but changes nothing; a scoped operator cannot pause the fleet.
    call(&srv, Method::GET, rollout, Some(&viewer), None).await.expect(200);
    for action in ["pause", "resume", "rollback"] {
        call(&srv, Method::POST, &format!("{rollout}/{action}"), Some(&viewer), None).await.error(403, "forbidden");
    }
    call(&srv, Method::POST, &format!("{rollout}/pause"), None, None).await.error(401, "unauthorized");
    subscription(&srv, "emea").await;
    let scoped = token(&srv, "operator", Some(&["emea"])).await;
    call(&srv, Method::POST, &format!("{rollout}/pause"), Some(&scoped), None).await.error(403, "forbidden");
    let v = call(&srv, Method::GET, rollout, Some(&scoped), None).await.expect(200);
    assert_eq!(v["sensors"].as_array().unwrap().len(), 0, "sensors outside the scope are not listed");
    assert_eq!(v["state"], "active", "the rollout's state is the fleet's");

    // Pause: A carries on, nothing new is granted; resume grants again.
    let v = call(&srv, Method::POST, &format!("{rollout}/pause"), Some(&operator), None).await.expect(200);
    assert_eq!((v["state"].as_str(), v["paused_by"].as_str()), (Some("paused"), Some("operator")));
    assert!(v["paused_reason"].as_str().unwrap().contains("resume"));
    finish(&srv, a, "1.1.0", true).await;
    let v = get(&srv, rollout).await.expect(200);
    assert_eq!(state(&v, a), "updated");
    assert!(sensor(&v, a)["finished_at"].is_string());
    assert_eq!(state(&v, b), "pending", "paused: no new grant");
    let v = call(&srv, Method::POST, &format!("{rollout}/resume"), Some(&operator), None).await.expect(200);
    assert_eq!(v["state"], "active");
    assert!(v["paused_by"].is_null());
    until(&srv, "B updating", |v| state(v, b) == "updating").await;
    let actions = audit_actions(&srv).await;
    assert!(actions.contains(&"rollout.pause".into()) && actions.contains(&"rollout.resume".into()), "{actions:?}");

    // Rollback refusals.
    let rb = format!("{rollout}/rollback");
    call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"sensor_id": b}))).await.error(409, "conflict");
    call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"version": "9.9.9"}))).await.error(409, "conflict");
    call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"version": "nine"})))
        .await
        .error(422, "validation_failed");
    call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"sensor_id": a, "version": "1.1.0"})))
        .await
        .error(422, "validation_failed");
    call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"sensor_id": "no-such-sensor"})))
        .await
        .error(404, "not_found");
    call(&srv, Method::POST, &rb, Some(&scoped), Some(json!({"sensor_id": a}))).await.error(404, "not_found");
    call_raw(&srv, Method::POST, &rb, "application/json", b"{not json".to_vec()).await.error(400, "bad_request");

    // One sensor back to the previous release, as a rollback grant; the rollout goes on.
    let r = call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"sensor_id": a}))).await.expect(200);
    assert_eq!(r["rollout_paused"], false);
    let g = &r["grants"][0];
    assert_eq!(
        (g["sensor_id"].as_str(), g["from_version"].as_str(), g["to_version"].as_str()),
        (Some(a.as_str()), Some("1.1.0"), Some("1.0.0"))
    );
    let open = srv.store.open_grant(a).await.unwrap().expect("rollback grant");
    assert_eq!(
        (open.action.as_str(), open.version.as_str(), open.update_id.as_str()),
        ("rollback", "1.0.0", g["update_id"].as_str().unwrap())
    );
    let v = get(&srv, rollout).await.expect(200);
    assert_eq!(state(&v, a), "rolling_back");
    assert_eq!(sensor(&v, a)["action"], "rollback");
    assert_eq!(v["state"], "active");
    finish(&srv, a, "1.0.0", true).await;
    finish(&srv, b, "1.1.0", true).await;
    let v = until(&srv, "C updating", |v| state(v, c) == "updating").await;
    assert_eq!(state(&v, a), "rolled_back", "not updated again in this rollout");
    assert_eq!(state(&v, b), "updated");

    // The delayed ring once due.
    srv.clock.advance(Duration::from_secs(2 * 3600));
    finish(&srv, c, "1.1.0", true).await;
    let v = until(&srv, "D updating", |v| state(v, d) == "updating").await;
    assert_eq!(v["delayed_ring_due"], true);
    finish(&srv, d, "1.1.0", true).await;
    let v = until(&srv, "finished", |v| v["state"] == "finished").await;
    assert_eq!(v["counts"]["updated"], 3);
    assert_eq!(v["counts"]["rolled_back"], 1);

    // Default: every sensor on the current release goes back, and the rollout pauses.
    let r = call_raw(&srv, Method::POST, &rb, "application/json", Vec::new()).await.expect(200);
    assert_eq!(r["rollout_paused"], true);
    let mut back: Vec<&str> =
        r["grants"].as_array().unwrap().iter().map(|g| g["sensor_id"].as_str().unwrap()).collect();
    back.sort();
    assert_eq!(back, [b.as_str(), c.as_str(), d.as_str()]);
    let v = get(&srv, rollout).await.expect(200);
    assert_eq!((v["state"].as_str(), v["paused_by"].as_str()), (Some("paused"), Some("operator")));
    assert_eq!(v["counts"]["rolling_back"], 3);
    assert_eq!(audit_actions(&srv).await.iter().filter(|a| *a == "rollout.rollback").count(), 4);
    // By version: nobody is left on 1.1.0 that is not already rolling back.
    call(&srv, Method::POST, &rb, Some(&operator), Some(json!({"version": "1.1.0"}))).await.error(409, "conflict");
}

async fn concurrency_two_grants_two_at_once_and_max_failures_two_pauses_at_the_second(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let ids = fleet(&srv).await;
    let mut more = Vec::new();
    for n in 5..=6 {
        more.push(row(&srv, n, &format!("E{n}")));
    }
    import(&srv, more).await;
    publish(&srv, dir.path(), "1.0.0").await;
    publish(&srv, dir.path(), "1.1.0").await;
    let v = until(&srv, "two updating", |v| v["version"] == "1.1.0" && v["counts"]["updating"] == 2).await;
    assert_eq!(v["concurrency"], 2);
    assert_eq!(v["max_failures"], 2);
    assert_eq!((state(&v, &ids[0]), state(&v, &ids[1])), ("updating".into(), "updating".into()));
    assert_eq!(state(&v, &ids[2]), "pending");
    // One failure of two allowed: the rollout goes on and tops up to two.
    finish(&srv, &ids[0], "1.0.0", false).await;
    let v = until(&srv, "the next one", |v| v["counts"]["updating"] == 2 && v["counts"]["failed"] == 1).await;
    assert_eq!(v["state"], "active");
    assert_eq!(v["failures"], 1);
    assert_eq!(sensor(&v, &ids[0])["error"], "bad signature");
    // The second failure pauses it.
    finish(&srv, &ids[1], "1.0.0", false).await;
    let v = until(&srv, "paused by failures", |v| v["state"] == "paused").await;
    assert_eq!(v["paused_by"], "failures");
    assert!(v["paused_reason"].as_str().unwrap().contains("--rollout-max-failures"), "{v}");
    assert_eq!(v["counts"]["updating"], 1, "the open grant carries on, nothing new");
}

/// Serves the sensor API's router on plain TCP, every request carrying `fingerprint` as the
/// mutual-TLS acceptor would put it there; a second replica on the same store and clock.
async fn sensor_router(srv: &TestServer, fingerprint: String) -> String {
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let prepared = prepared.with_clock(srv.clock.clone());
    let state = picket_server::sensor_api::SensorState {
        app: prepared.app().clone(),
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
    format!("http://{addr}")
}

async fn heartbeat_with_watchdog(base: &str, restart: Option<Timestamp>) {
    let mut body = json!({"service_status": "running", "version": "1.0.0"});
    if let Some(t) = restart {
        body["watchdog_restart_at"] = json!(picket_proto::time::format_ts(t));
    }
    let r = reqwest::Client::new().post(format!("{base}/sensor/v1/heartbeat")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn watchdog_issues(srv: &TestServer, id: &str) -> Value {
    get(srv, &format!("/api/v1/health-issues?kind=watchdog_restart&sensor_id={id}")).await.expect(200)
}

async fn watchdog_restart_in_a_heartbeat_raises_an_issue_that_closes_when_quiet(srv: TestServer) {
    let (r1, r2) = (row(&srv, 1, "DC01"), row(&srv, 2, "DC02"));
    let (id1, id2) = (r1.id.clone(), r2.id.clone());
    let (s1, s2) = (
        sensor_router(&srv, r1.cert_fingerprint.clone().unwrap()).await,
        sensor_router(&srv, r2.cert_fingerprint.clone().unwrap()).await,
    );
    import(&srv, vec![r1, r2]).await;
    heartbeat_with_watchdog(&s1, None).await;
    assert_eq!(watchdog_issues(&srv, &id1).await["total"], 0);

    // A restart a minute ago: one open issue, medium, however often it is repeated.
    let at = Timestamp(srv.clock.now().0 - 60_000);
    for _ in 0..3 {
        heartbeat_with_watchdog(&s1, Some(at)).await;
    }
    let v = watchdog_issues(&srv, &id1).await;
    assert_eq!(v["total"], 1, "{v}");
    let issue = &v["items"][0];
    assert_eq!((issue["status"].as_str(), issue["severity"].as_str()), (Some("open"), Some("medium")));
    assert_eq!(issue["title"], "Sensor restarted by the resource watchdog");
    assert!(issue["detail"].as_str().unwrap().contains(&picket_domain::issues::format_utc(at)), "{issue}");
    let sensor = get(&srv, &format!("/api/v1/sensors/{id1}")).await.expect(200);
    assert_eq!(sensor["health_issues"], 1);
    // A restart older than the quiet period (1 h: six times --disconnect-after) raises nothing.
    heartbeat_with_watchdog(&s2, Some(Timestamp(srv.clock.now().0 - 2 * 3_600_000))).await;
    assert_eq!(watchdog_issues(&srv, &id2).await["total"], 0);

    // An hour without another restart: the rollout job closes it.
    srv.clock.advance(Duration::from_secs(3600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = watchdog_issues(&srv, &id1).await;
        if v["items"][0]["status"] == "closed" {
            assert_eq!(v["total"], 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watchdog issue did not close: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new restart opens a new issue.
    heartbeat_with_watchdog(&s1, Some(srv.clock.now())).await;
    let v = watchdog_issues(&srv, &id1).await;
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["items"].as_array().unwrap().iter().filter(|i| i["status"] == "open").count(), 1);
}
