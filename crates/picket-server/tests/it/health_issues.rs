//! Health issues over the REST API with the status job running in the server: raised when a
//! sensor goes silent, shown on the sensor, listed with filters and scope, closed (and kept
//! closed while the condition persists), reopened (409 beside another open issue), auto-closed.

use std::time::{Duration, Instant};

use picket_domain::issues::HealthIssueKind;
use picket_domain::{ServiceStatus, Timestamp};
use picket_server::Clock;
use picket_store::{Heartbeat, NewHealthIssue};
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_backends!(config = fast_job; issues_follow_the_condition_and_the_operator);

fn fast_job(c: &mut picket_server::ServerConfig) {
    c.health_check_every = Duration::from_millis(50);
}

const S1: &str = "00000000-0000-4000-8000-000000000001";
const S2: &str = "00000000-0000-4000-8000-000000000002";

/// Polls `path` until `f` accepts its JSON, panicking after 20 s.
async fn poll(srv: &TestServer, path: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get(srv, path).await.expect(200);
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A heartbeat now from a sensor whose service started at `started` (before its last pull).
async fn heartbeat(srv: &TestServer, id: &str, started: Option<Timestamp>) {
    let hb = Heartbeat {
        sensor_id: id.to_string(),
        at: srv.clock.now(),
        service_status: ServiceStatus::Running,
        version: Some("1.0.0".parse().unwrap()),
        config_version_applied: 1,
        ti_version: None,
        service_started_at: started,
        rss_bytes: None,
        cpu_permille: None,
    };
    srv.store.record_heartbeats(&[hb]).await.unwrap();
}

async fn issues_follow_the_condition_and_the_operator(srv: TestServer) {
    subscription(&srv, "sub-a").await;
    let mut r2 = row(&srv, 2, "DC02");
    r2.subscription = "sub-a".into();
    let started = r2.service_started_at;
    import(&srv, vec![row(&srv, 1, "DC01"), r2]).await;
    assert_eq!(get(&srv, "/api/v1/health-issues").await.expect(200)["total"], 0);

    // Eleven minutes of silence: both disconnected, one issue each, shown on the sensor.
    srv.clock.advance(Duration::from_secs(11 * 60));
    let page = poll(&srv, "/api/v1/health-issues?status=open", "two open issues", |v| v["total"] == 2).await;
    for item in page["items"].as_array().unwrap() {
        assert_eq!(item["kind"], "disconnected");
        assert_eq!(item["severity"], "high");
        assert_eq!(item["closed_at"], Value::Null);
        assert!(item["detail"].as_str().unwrap().starts_with("No heartbeat since "), "{item}");
        assert!(item["recommendation"].as_str().unwrap().len() > 40);
    }
    let s1 = get(&srv, &format!("/api/v1/sensors/{S1}")).await.expect(200);
    assert_eq!(
        (s1["sensor_status"].as_str(), s1["health_status"].as_str(), s1["health_issues"].as_i64()),
        (Some("disconnected"), Some("not_healthy_high"), Some(1))
    );
    let high = get(&srv, "/api/v1/sensors?health_status=not_healthy_high").await.expect(200);
    assert_eq!(high["total"], 2);
    let mine = get(&srv, &format!("/api/v1/sensors/{S1}/health-issues")).await.expect(200);
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["sensor_name"], "DC01");
    let a = mine["items"][0]["id"].as_str().unwrap().to_string();

    // Filters, paging and scope.
    assert_eq!(get(&srv, "/api/v1/health-issues?severity=low,medium").await.expect(200)["total"], 0);
    assert_eq!(
        get(&srv, &format!("/api/v1/health-issues?kind=disconnected&sensor_id={S2}")).await.expect(200)["total"],
        1
    );
    let p1 = get(&srv, "/api/v1/health-issues?limit=1").await.expect(200);
    assert_eq!(p1["items"].as_array().unwrap().len(), 1);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = get(&srv, &format!("/api/v1/health-issues?limit=1&cursor={cursor}")).await.expect(200);
    assert_ne!(p2["items"][0]["id"], p1["items"][0]["id"]);
    assert_eq!(p2["next_cursor"], Value::Null);
    get(&srv, "/api/v1/health-issues?status=done").await.error(400, "bad_request");
    get(&srv, "/api/v1/health-issues?colour=red").await.error(400, "bad_request");
    get(&srv, "/api/v1/health-issues?cursor=zz").await.error(400, "bad_request");
    get(&srv, "/api/v1/sensors/nope/health-issues").await.error(404, "not_found");
    let scoped = token(&srv, "operator", Some(&["sub-a"])).await;
    let seen = call(&srv, Method::GET, "/api/v1/health-issues", Some(&scoped), None).await.expect(200);
    assert_eq!(seen["total"], 1);
    assert_eq!(seen["items"][0]["sensor_id"], S2);
    call(&srv, Method::POST, &format!("/api/v1/health-issues/{a}/close"), Some(&scoped), None)
        .await
        .error(404, "not_found");
    let viewer = token(&srv, "viewer", None).await;
    call(&srv, Method::POST, &format!("/api/v1/health-issues/{a}/close"), Some(&viewer), None)
        .await
        .error(403, "forbidden");

    // An operator closes DC01's issue while it stays silent; DC02 heartbeats again and its
    // issue auto-closes, which proves the job ran after the close: DC01's stays closed.
    let closed = post(&srv, &format!("/api/v1/health-issues/{a}/close"), json!({})).await.expect(200);
    assert_eq!(closed["status"], "closed");
    assert!(closed["closed_by"].as_str().unwrap().starts_with("token:"), "{closed}");
    post(&srv, &format!("/api/v1/health-issues/{a}/close"), json!({})).await.error(409, "conflict");
    heartbeat(&srv, S2, started).await;
    let auto = poll(&srv, &format!("/api/v1/sensors/{S2}/health-issues"), "DC02's issue auto-closed", |v| {
        v["items"][0]["status"] == "closed"
    })
    .await;
    assert_eq!(auto["items"][0]["closed_by"], "system");
    assert_eq!(get(&srv, &format!("/api/v1/sensors/{S2}")).await.expect(200)["health_status"], "healthy");
    let mine = get(&srv, &format!("/api/v1/sensors/{S1}/health-issues")).await.expect(200);
    assert_eq!((mine["total"].as_i64(), mine["items"][0]["status"].as_str()), (Some(1), Some("closed")), "{mine}");
    assert_eq!(get(&srv, &format!("/api/v1/sensors/{S1}")).await.expect(200)["health_issues"], 0);
    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "health_issue.close" && e["target_id"] == a.as_str())
    );

    // Reopen: open again; beside another open issue of the kind, 409 naming it.
    let re = post(&srv, &format!("/api/v1/health-issues/{a}/reopen"), json!({})).await.expect(200);
    assert_eq!((re["status"].as_str(), re["closed_at"].clone()), (Some("open"), Value::Null));
    post(&srv, &format!("/api/v1/health-issues/{a}/reopen"), json!({})).await.error(409, "conflict");
    assert_eq!(get(&srv, &format!("/api/v1/sensors/{S1}")).await.expect(200)["health_issues"], 1);
    post(&srv, &format!("/api/v1/health-issues/{a}/close"), json!({})).await.expect(200);
    let other = NewHealthIssue {
        id: "other-open-issue".into(),
        sensor_id: S1.into(),
        kind: HealthIssueKind::Disconnected,
        opened_at: srv.clock.now(),
        title: "t".into(),
        detail: "d".into(),
        recommendation: "r".into(),
    };
    assert!(srv.store.open_health_issue(&other, None).await.unwrap().is_some());
    let m = post(&srv, &format!("/api/v1/health-issues/{a}/reopen"), json!({})).await.error(409, "conflict");
    assert!(m.contains("other-open-issue") && m.contains("disconnected"), "{m}");
    post(&srv, "/api/v1/health-issues/nope/reopen", json!({})).await.error(404, "not_found");

    // DC01 heartbeats: its open issue auto-closes.
    heartbeat(&srv, S1, started).await;
    poll(&srv, &format!("/api/v1/sensors/{S1}"), "DC01 healthy again", |v| {
        v["health_status"] == "healthy" && v["health_issues"] == 0
    })
    .await;
    let page = get(&srv, "/api/v1/health-issues?status=open").await.expect(200);
    assert_eq!(page["total"], 0, "{page}");
}

#[test]
fn outbox_instants_are_written_like_the_api() {
    for ms in [0i64, 1_795_341_600_000, 1_795_341_600_250, 1_795_341_600_007, 1_795_341_600_999, 1_795_341_600_100] {
        let t = Timestamp(ms);
        assert_eq!(picket_store::health::rfc3339(t), picket_proto::time::format_ts(t), "{ms}");
    }
}
