//! Health issues end to end, real `picket serve` and `picket-sensor` processes on loopback:
//! activate → `up_to_date`; SIGKILL → `disconnected`, an open `disconnected` issue and
//! `not_healthy_high`; restart → the issue auto-closes and the sensor is healthy again.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Backend, SensorProcess, Server, sensor_cmd, wait_for};

async fn issues(server: &Server, id: &str) -> Value {
    let (status, v) = server.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/health-issues"), None).await;
    assert_eq!(status, 200, "sensor health issues: {v}");
    v
}

/// How many times the status job has run, from `/metrics`.
async fn job_runs(server: &Server) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.api)).await.expect("metrics").text().await.expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix("picket_health_check_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn health_issue_follows_a_killed_sensor(backend: Backend) {
    // disconnect_after 3 s; the status job then runs every 600 ms (a fifth of it).
    let server = Server::start(backend, "3s").await;
    let id = server.onboard("DC-HEALTH").await;
    let file = server.activation_file(&id).await;
    let state = server.dir.path().join("sensor-state");
    let out = sensor_cmd(&[
        "activate",
        "--activation-file",
        file.to_str().expect("utf-8 path"),
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "activate failed: {}\n{}", String::from_utf8_lossy(&out.stderr), server.log());

    let sensor = SensorProcess::run(&state, 1);
    wait_for(Duration::from_secs(20), "up_to_date and healthy", async || {
        let v = server.sensor(&id).await;
        (v["sensor_status"] == "up_to_date" && v["health_status"] == "healthy").then_some(())
    })
    .await;
    assert_eq!(issues(&server, &id).await["total"], 0, "no issue while it heartbeats");

    // SIGKILL: silence; after 3 s it is disconnected and the job opens one high issue.
    sensor.signal("-KILL");
    drop(sensor);
    let v = wait_for(Duration::from_secs(20), "disconnected with an open issue", async || {
        let v = server.sensor(&id).await;
        (v["sensor_status"] == "disconnected" && v["health_issues"] == 1).then_some(v)
    })
    .await;
    assert_eq!(v["health_status"], "not_healthy_high", "{v}");
    let list = issues(&server, &id).await;
    assert_eq!(list["total"], 1, "{list}");
    let issue = &list["items"][0];
    assert_eq!((issue["kind"].as_str(), issue["status"].as_str()), (Some("disconnected"), Some("open")), "{issue}");
    assert_eq!(issue["severity"], "high");
    assert!(issue["detail"].as_str().is_some_and(|d| d.starts_with("No heartbeat since ")), "{issue}");
    let issue_id = issue["id"].as_str().expect("issue id").to_string();
    let (status, all) = server.call(reqwest::Method::GET, "/api/v1/health-issues?status=open", None).await;
    assert_eq!((status, all["total"].as_i64()), (200, Some(1)), "{all}");

    // It stays one issue while the sensor stays down: three more runs of the job change nothing.
    let runs = job_runs(&server).await;
    wait_for(Duration::from_secs(20), "three more runs of the status job", async || {
        (job_runs(&server).await >= runs + 3).then_some(())
    })
    .await;
    assert_eq!(issues(&server, &id).await["total"], 1, "never a second open issue");

    // Restarted: heartbeats again, the issue auto-closes, healthy again.
    let _sensor = SensorProcess::run(&state, 2);
    wait_for(Duration::from_secs(20), "the issue auto-closed", async || {
        let v = server.sensor(&id).await;
        (v["sensor_status"] == "up_to_date" && v["health_status"] == "healthy" && v["health_issues"] == 0).then_some(())
    })
    .await;
    let list = issues(&server, &id).await;
    let issue = &list["items"][0];
    assert_eq!(issue["id"], issue_id.as_str());
    assert_eq!((issue["status"].as_str(), issue["closed_by"].as_str()), (Some("closed"), Some("system")), "{issue}");
    assert!(issue["closed_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_issue_on_sqlite() {
    health_issue_follows_a_killed_sensor(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_issue_on_postgres() {
    health_issue_follows_a_killed_sensor(Backend::Postgres).await;
}
