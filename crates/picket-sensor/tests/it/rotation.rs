//! Two-phase certificate rotation with real processes: a rotation stopped after the propose
//! phase (a crash) leaves the old certificate working and the pending one refused; finishing it
//! retires the old one (401); a rotation whose confirm reached the server but not the disk is
//! finished by the next `rotate-cert`; a running `picket-sensor run` keeps heartbeating across
//! a rotation made by `rotate-cert`, and rotates by itself when its certificate nears expiry.

use std::time::Duration;

use picket_domain::Timestamp;
use serde_json::Value;

use crate::harness::{
    Backend, SensorProcess, Server, ca_of, identity_of, raw_call, raw_heartbeat, s, sensor_ok, sensor_status, wait_for,
};

fn ts(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(picket_proto::time::parse_ts)
}

fn fingerprint(state: &std::path::Path) -> String {
    sensor_status(state)["cert_fingerprint"].as_str().expect("fingerprint").to_string()
}

async fn audit_actions(server: &Server, id: &str) -> Vec<String> {
    let (status, v) = server.call(reqwest::Method::GET, "/api/v1/audit?limit=200", None).await;
    assert_eq!(status, 200, "audit: {v}");
    let items = v["items"].as_array().or_else(|| v.as_array()).cloned().unwrap_or_default();
    items.iter().filter(|e| e["target_id"] == id).filter_map(|e| e["action"].as_str().map(str::to_string)).collect()
}

/// The `cert_expiring` health issues of a sensor.
async fn cert_issues(server: &Server, id: &str) -> Vec<Value> {
    let (status, v) = server.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/health-issues"), None).await;
    assert_eq!(status, 200, "health issues: {v}");
    let items = v["items"].as_array().or_else(|| v.as_array()).cloned().unwrap_or_default();
    items.into_iter().filter(|i| i["kind"] == "cert_expiring").collect()
}

async fn rotation(backend: Backend) {
    let server = Server::start(backend, "3s").await;
    let port = server.sensor_port;
    let id = server.onboard("DC01").await;
    let file = server.activation_file(&id).await;
    let ca = ca_of(&file);
    let state = server.dir.path().join("sensor-state");
    sensor_ok(&["activate", "--activation-file", s(&file), "--state-dir", s(&state)]);
    let old = identity_of(&state);
    let old_fp = fingerprint(&state);

    // The crash: only the propose phase ran. The old certificate still works for everything;
    // the pending one authenticates nothing but the confirm.
    let out = sensor_ok(&["rotate-cert", "--phase", "propose", "--state-dir", s(&state)]);
    assert!(out.contains("proposed"), "{out}");
    let pending = (
        std::fs::read_to_string(state.join("identity/pending/cert.pem")).expect("pending cert kept in the state dir"),
        std::fs::read_to_string(state.join("identity/pending/key.pem")).expect("pending key"),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("identity/pending/key.pem")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the pending key is 0600");
    }
    assert_eq!(fingerprint(&state), old_fp, "the current identity is unchanged after propose");
    assert_eq!(sensor_status(&state)["rotation_pending"], true);
    assert_eq!(raw_heartbeat(port, &ca, (&old.0, &old.1)).await, 200, "the old certificate still authenticates");
    assert_eq!(raw_heartbeat(port, &ca, (&pending.0, &pending.1)).await, 401, "a pending certificate is not pinned");
    let v = server.sensor(&id).await;
    assert_eq!(v["sensor_status"], "syncing", "{v}");

    // The next rotate-cert resumes with the same pending certificate and finishes.
    let out = sensor_ok(&["rotate-cert", "--state-dir", s(&state)]);
    assert!(out.contains("rotated"), "{out}");
    let new = identity_of(&state);
    assert_eq!(new, pending, "the resumed rotation used the certificate proposed before the crash");
    assert!(!state.join("identity/pending").exists(), "nothing pending after the rotation");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("identity/key.pem")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the new key is 0600");
    }
    assert_ne!(fingerprint(&state), old_fp);
    assert_eq!(raw_heartbeat(port, &ca, (&old.0, &old.1)).await, 401, "after confirm the old certificate is refused");
    assert_eq!(raw_heartbeat(port, &ca, (&new.0, &new.1)).await, 200, "the new certificate works");
    let actions = audit_actions(&server, &id).await;
    for a in ["sensor.cert_propose", "sensor.cert_confirm"] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
    // The control plane records the pinned certificate's expiry (about two years away).
    let v = server.sensor(&id).await;
    let expires = ts(&v["cert_expires_at"]).unwrap_or_else(|| panic!("the details show the certificate expiry: {v}"));
    let status_expiry = ts(&sensor_status(&state)["cert_expires_at"]).expect("status expiry");
    assert_eq!(expires, status_expiry, "the control plane shows the pinned certificate's expiry");

    // A confirm that reached the control plane but not the disk (killed right after it): the
    // old certificate is refused at the next propose, and rotate-cert finishes with the confirm.
    sensor_ok(&["rotate-cert", "--phase", "propose", "--state-dir", s(&state)]);
    let pending = (
        std::fs::read_to_string(state.join("identity/pending/cert.pem")).expect("pending cert"),
        std::fs::read_to_string(state.join("identity/pending/key.pem")).expect("pending key"),
    );
    let confirmed = raw_call(port, &ca, (&pending.0, &pending.1), "POST", "/sensor/v1/cert/confirm", "")
        .await
        .expect("confirm handshake");
    assert_eq!(confirmed, 200);
    assert_eq!(raw_heartbeat(port, &ca, (&new.0, &new.1)).await, 401);
    let out = sensor_ok(&["rotate-cert", "--state-dir", s(&state)]);
    assert!(out.contains("rotated"), "{out}");
    assert_eq!(identity_of(&state), pending);
    let current = identity_of(&state);
    assert_eq!(raw_heartbeat(port, &ca, (&current.0, &current.1)).await, 200);

    // A running sensor keeps heartbeating across a rotation made by rotate-cert: it picks up
    // the new identity without a restart and is never marked disconnected (3 s window).
    let mut sensor = SensorProcess::run(&state, 1);
    wait_for(Duration::from_secs(20), "up_to_date", async || {
        (server.sensor(&id).await["sensor_status"] == "up_to_date").then_some(())
    })
    .await;
    let before = identity_of(&state);
    let out = sensor_ok(&["rotate-cert", "--state-dir", s(&state)]);
    assert!(out.contains("rotated"), "{out}");
    let rotated_at = picket_sensor::run::now();
    assert_eq!(raw_heartbeat(port, &ca, (&before.0, &before.1)).await, 401);
    let mut seen_after = 0;
    wait_for(Duration::from_secs(15), "heartbeats with the new certificate", async || {
        let v = server.sensor(&id).await;
        assert_eq!(v["sensor_status"], "up_to_date", "never disconnected across the rotation: {v}\n{}", sensor.log());
        let seen = ts(&v["last_seen_at"])?;
        if seen.0 > rotated_at.0 + 1000 {
            seen_after += 1;
        }
        (seen_after >= 3).then_some(())
    })
    .await;
    assert!(sensor.child.try_wait().expect("try_wait").is_none(), "still running: {}", sensor.log());
    assert!(sensor.log().contains("identity changed"), "run reloaded the identity: {}", sensor.log());
    let st = sensor_status(&state);
    assert!(st["last_error"].is_null() || ts(&st["last_error_at"]).is_some_and(|t| t.0 < rotated_at.0), "{st}");
    drop(sensor);

    // Near expiry, `run` rotates by itself: a sensor activated with a 10-day certificate rotates
    // at once (default --cert-rotate-before 30d) and keeps running with a two-year one.
    let id2 = server.onboard("DC02").await;
    let file2 = server.activation_file(&id2).await;
    let state2 = server.dir.path().join("sensor-state-2");
    sensor_ok(&["activate", "--activation-file", s(&file2), "--state-dir", s(&state2), "--cert-validity", "10d"]);
    let short = identity_of(&state2);
    let short_fp = fingerprint(&state2);
    // Inside the rotation window (30 days) from its activation: the cert_expiring issue is open.
    let issues = cert_issues(&server, &id2).await;
    assert_eq!(issues.iter().filter(|i| i["status"] == "open").count(), 1, "cert_expiring raised: {issues:?}");
    let mut sensor2 = SensorProcess::run(&state2, 1);
    wait_for(Duration::from_secs(20), "automatic rotation", async || {
        let st = sensor_status(&state2);
        let years = (ts(&st["cert_expires_at"])?.0 - picket_sensor::run::now().0) as f64 / (365.0 * 86_400_000.0);
        (st["cert_fingerprint"] != short_fp.as_str() && years > 1.9).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(20), "up_to_date after the automatic rotation", async || {
        (server.sensor(&id2).await["sensor_status"] == "up_to_date").then_some(())
    })
    .await;
    assert_eq!(raw_heartbeat(port, &ca, (&short.0, &short.1)).await, 401, "the expiring certificate is retired");
    let issues = cert_issues(&server, &id2).await;
    assert!(
        !issues.is_empty() && issues.iter().all(|i| i["status"] == "closed" && i["closed_by"] == "system"),
        "the rotation closed cert_expiring: {issues:?}"
    );
    assert!(sensor2.child.try_wait().expect("try_wait").is_none(), "{}", sensor2.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_sqlite() {
    rotation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_postgres() {
    rotation(Backend::Postgres).await;
}
