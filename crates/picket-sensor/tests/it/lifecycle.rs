//! Onboard → activation file → `picket-sensor activate` → `run` → `up_to_date`/`running` with
//! `last_seen_at` advancing; SIGKILL → `disconnected`; restart → back; SIGTERM exits 0.

use std::time::Duration;

use picket_domain::Timestamp;

use crate::harness::{Backend, SensorProcess, Server, sensor_cmd, sensor_status, wait_for};

fn ts(v: &serde_json::Value) -> Option<Timestamp> {
    v.as_str().and_then(picket_proto::time::parse_ts)
}

async fn lifecycle(backend: Backend) {
    let mut server = Server::start(backend, "3s").await;
    let id = server.onboard("DC01").await;
    assert_eq!(server.sensor(&id).await["sensor_status"], "pending_activation");
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
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id), "activate names the sensor");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("identity/key.pem")).expect("test fixture").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem is 0600");
        assert!(state.join("identity/cert.pem").exists());
    }
    let status = sensor_status(&state);
    assert_eq!(status["sensor_id"], id.as_str());
    let fingerprint = status["cert_fingerprint"].as_str().expect("fingerprint").to_string();
    assert_eq!(fingerprint.len(), 64);
    let expires = ts(&status["cert_expires_at"]).expect("expiry");
    let years = (expires.0 - picket_sensor::run::now().0) as f64 / (365.0 * 86_400_000.0);
    assert!((1.9..2.1).contains(&years), "certificate valid about two years, got {years}");
    let v = server.sensor(&id).await;
    assert_eq!(v["sensor_status"], "syncing", "activated, configuration not pulled yet: {v}");

    let sensor = SensorProcess::run(&state, 1);
    let first_seen = wait_for(Duration::from_secs(20), "up_to_date and running", async || {
        let v = server.sensor(&id).await;
        (v["sensor_status"] == "up_to_date" && v["service_status"] == "running").then(|| ts(&v["last_seen_at"]))
    })
    .await
    .expect("last_seen_at set");
    let v = server.sensor(&id).await;
    assert_eq!(v["config_version_applied"], v["config_version_desired"]);
    assert_eq!(v["version"], picket_sensor::BUILD_VERSION);
    wait_for(Duration::from_secs(10), "last_seen_at advancing", async || {
        let v = server.sensor(&id).await;
        ts(&v["last_seen_at"]).filter(|t| t.0 > first_seen.0)
    })
    .await;
    let status = sensor_status(&state);
    assert!(ts(&status["last_contact_at"]).is_some(), "status records the last contact: {status}");
    assert_eq!(status["config_version_applied"], 1);

    // SIGKILL: no goodbye; the control plane notices the silence after disconnect_after (3 s)
    // and no longer shows the service status it last heard (DESIGN.md: `unknown` when not
    // heard from).
    sensor.signal("-KILL");
    drop(sensor);
    wait_for(Duration::from_secs(15), "disconnected with service_status unknown after SIGKILL", async || {
        let v = server.sensor(&id).await;
        (v["sensor_status"] == "disconnected" && v["service_status"] == "unknown").then_some(())
    })
    .await;

    // Restarted, it is back, reporting its service running again.
    let mut sensor = SensorProcess::run(&state, 2);
    wait_for(Duration::from_secs(20), "up_to_date and running again after restart", async || {
        let v = server.sensor(&id).await;
        (v["sensor_status"] == "up_to_date" && v["service_status"] == "running").then_some(())
    })
    .await;

    // The control plane goes down: the sensor keeps retrying (recording the error) and never
    // exits; when the control plane is back, so is the sensor.
    server.stop();
    let down_at = picket_sensor::run::now();
    wait_for(Duration::from_secs(10), "the sensor records the outage", async || {
        let s = sensor_status(&state);
        let at = s["last_error_at"].as_str().and_then(picket_proto::time::parse_ts)?;
        (at.0 >= down_at.0 && s["last_error"].as_str()?.contains("cannot reach")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sensor.child.try_wait().expect("try_wait").is_none(), "the sensor survives an outage: {}", sensor.log());
    server.start_again().await;
    let back_at = picket_sensor::run::now();
    wait_for(Duration::from_secs(20), "heartbeats again after the control plane restarts", async || {
        let v = server.sensor(&id).await;
        let seen = ts(&v["last_seen_at"])?;
        (seen.0 >= back_at.0 && v["sensor_status"] == "up_to_date").then_some(())
    })
    .await;

    // SIGTERM ends it cleanly with exit code 0.
    sensor.signal("-TERM");
    let exit =
        wait_for(Duration::from_secs(10), "exit after SIGTERM", async || sensor.child.try_wait().ok().flatten()).await;
    assert!(exit.success(), "SIGTERM exits 0, got {exit}: {}", sensor.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() {
    lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() {
    lifecycle(Backend::Postgres).await;
}
