//! `service_status` over the REST API with the status job running (DESIGN.md: reported by the
//! sensor, `unknown` when not heard from): a sensor silent for `disconnect_after` reads
//! `unknown` (also through the list filter), and its next heartbeat, sent to the sensor API's
//! router and written by the heartbeat batcher, brings back what it reports; a silent sensor
//! raises only `disconnected`. The job keeps opening issues (`update_failed` here) after a
//! third release appears, which adds the `outdated` threshold to the status context (the
//! store's conformance suite checks the statements across it on the same connections).

use std::time::{Duration, Instant};

use picket_server::Clock;
use picket_server::app::HeartbeatBatcher;
use picket_store::releases::Release;
use picket_store::{Audit, SensorRow};
use picket_testkit::server::TestServer;
use serde_json::{Value, json};

use crate::support::*;

both_backends!(config = fast_job; a_silent_sensor_shows_service_status_unknown_until_its_next_heartbeat);

fn fast_job(c: &mut picket_server::ServerConfig) {
    c.health_check_every = Duration::from_millis(50);
}

/// Serves the sensor API's router on plain TCP, every request carrying `fingerprint` as the
/// mutual-TLS acceptor would put it there; heartbeats queue in `batcher` (the test flushes it,
/// as the listener's flush loop would).
async fn sensor_router(srv: &TestServer, fingerprint: String, batcher: HeartbeatBatcher) -> String {
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let prepared = prepared.with_clock(srv.clock.clone());
    let state = picket_server::sensor_api::SensorState { app: prepared.app().clone(), batcher };
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

/// A heartbeat through the sensor API reporting `service`, written at once.
async fn heartbeat(srv: &TestServer, base: &str, batcher: &HeartbeatBatcher, service: &str) {
    let body = json!({"service_status": service, "version": "1.0.0", "config_version_applied": 1});
    let r = reqwest::Client::new().post(format!("{base}/sensor/v1/heartbeat")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(batcher.flush(srv.store.as_ref()).await.unwrap(), 1);
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

/// Waits for one open issue of `kind` on sensor `id`.
async fn open_issue(srv: &TestServer, id: &str, kind: &str) {
    poll(srv, &format!("/api/v1/health-issues?status=open&kind={kind}&sensor_id={id}"), kind, |v| v["total"] == 1)
        .await;
}

/// A release record of `version` (below the sensors' 1.0.0, so no rollout grants anything).
async fn release(srv: &TestServer, version: &str) {
    let r = Release {
        version: version.parse().unwrap(),
        sha256: format!("{:0>64}", version.replace('.', "")),
        size: 4,
        manifest_json: "{}".into(),
        signing_key_id: "test".into(),
        published_by: "token:test".into(),
        created_at: srv.clock.now(),
    };
    let a = Audit { actor: "token:test".into(), action: "release.publish".into(), at: srv.clock.now() };
    srv.store.publish_release(&r, b"pkg!", &a).await.unwrap();
}

fn failed(srv: &TestServer, n: usize, name: &str) -> SensorRow {
    SensorRow { update_state: picket_domain::UpdateState::Failed, ..row(srv, n, name) }
}

async fn a_silent_sensor_shows_service_status_unknown_until_its_next_heartbeat(srv: TestServer) {
    let (r1, r2) = (row(&srv, 1, "DC01"), row(&srv, 2, "DC02"));
    let (id1, id2) = (r1.id.clone(), r2.id.clone());
    let batcher = HeartbeatBatcher::default();
    let s1 = sensor_router(&srv, r1.cert_fingerprint.clone().unwrap(), batcher.clone()).await;
    let s2 = sensor_router(&srv, r2.cert_fingerprint.clone().unwrap(), batcher.clone()).await;
    let f3 = failed(&srv, 3, "DC03");
    import(&srv, vec![r1, r2, f3.clone()]).await;
    heartbeat(&srv, &s1, &batcher, "running").await;
    let sensor = |id: &str| format!("/api/v1/sensors/{id}");
    let v = get(&srv, &sensor(&id1)).await.expect(200);
    assert_eq!((v["service_status"].as_str(), v["sensor_status"].as_str()), (Some("running"), Some("up_to_date")));
    // The job runs with no release; its issue for DC03 shows it ran.
    open_issue(&srv, &f3.id, "update_failed").await;

    // Three releases: the `outdated` threshold now exists. The job still opens issues.
    for v in ["0.1.0", "0.2.0", "0.3.0"] {
        release(&srv, v).await;
    }
    let f4 = failed(&srv, 4, "DC04");
    import(&srv, vec![f4.clone()]).await;
    open_issue(&srv, &f4.id, "update_failed").await;
    let failing = get(&srv, "/api/v1/sensors?sensor_status=update_failed").await.expect(200);
    assert_eq!(failing["total"], 2, "{failing}");

    // Eleven minutes: DC01 silent, DC02 heartbeats (stopped) just now.
    srv.clock.advance(Duration::from_secs(11 * 60));
    heartbeat(&srv, &s2, &batcher, "stopped").await;
    let v = poll(&srv, &sensor(&id1), "DC01 unknown", |v| v["service_status"] == "unknown").await;
    assert_eq!(v["sensor_status"], "disconnected");
    open_issue(&srv, &id1, "disconnected").await;
    let v = get(&srv, &sensor(&id2)).await.expect(200);
    assert_eq!((v["service_status"].as_str(), v["sensor_status"].as_str()), (Some("stopped"), Some("up_to_date")));
    open_issue(&srv, &id2, "service_stopped").await;
    let unknown = get(&srv, "/api/v1/sensors?service_status=unknown&sensor_status=disconnected").await.expect(200);
    // DC03 and DC04 were imported, never heard from by this server: silent too.
    assert_eq!(names(&unknown), vec!["DC01", "DC03", "DC04"], "{unknown}");
    let unknown_issues = get(&srv, &format!("/api/v1/health-issues?status=open&sensor_id={id1}")).await.expect(200);
    assert_eq!(unknown_issues["total"], 1, "only disconnected while silent: {unknown_issues}");

    // DC01's next heartbeat: running again, connected, its disconnected issue closed.
    heartbeat(&srv, &s1, &batcher, "running").await;
    let v = get(&srv, &sensor(&id1)).await.expect(200);
    assert_eq!((v["service_status"].as_str(), v["sensor_status"].as_str()), (Some("running"), Some("up_to_date")));
    // Its disconnected issue closes in a later tick, which leaves the reported value alone.
    poll(&srv, &sensor(&id1), "DC01's issue closed", |v| v["health_issues"] == 0).await;
    assert_eq!(get(&srv, &sensor(&id1)).await.expect(200)["service_status"], "running");
}
