//! Issue 6 end to end with real processes (`picket serve` with a release key, two
//! cloud-connected `picket-sensor run`s), on SQLite and PostgreSQL:
//! - a sensor with `auto_ti_updates` gets each published TI package through its heartbeat,
//!   applies it without a restart, reports its `ti_version`, and matches the new indicators;
//! - a sensor with auto updates off does not, until the operator downloads the package through
//!   the API and `picket-sensor ti import`s it on the host;
//! - alerts from a followed file and a syslog listener reach the control plane exactly once,
//!   with the sensor killed (`kill -9`) while it uploads and restarted, and when it lost its
//!   record of an upload the control plane had accepted (the state a kill between the answer
//!   and the mark leaves): the re-sent alerts are duplicates, stored once.

use std::io::Write;
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use picket_package::SecretKey;
use serde_json::{Value, json};

use crate::detection::{alerts, ti_package};
use crate::harness::{ADMIN_TOKEN, Backend, SensorProcess, Server, free_port, s, sensor_ok, sensor_status, wait_for};

const WAIT: Duration = Duration::from_secs(90);

/// A REST call with the admin token sending `body` as `application/octet-stream`.
async fn post_bytes(server: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.api))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("REST call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("REST body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A GET with the admin token returning the raw body.
async fn get_bytes(server: &Server, path: &str) -> (u16, Vec<u8>) {
    let resp =
        reqwest::Client::new().get(format!("{}{path}", server.api)).bearer_auth(ADMIN_TOKEN).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("REST body").to_vec())
}

async fn onboard(server: &Server, name: &str, auto_ti_updates: bool) -> String {
    let body = json!({"name": name, "type": "domain_controller", "domain": "corp.example.com",
        "mode": "cloud_connected", "auto_ti_updates": auto_ti_updates});
    let (status, v) = server.call(reqwest::Method::POST, "/api/v1/sensors", Some(body)).await;
    assert_eq!(status, 201, "onboard: {v}");
    v["id"].as_str().expect("id").to_string()
}

fn ti_version(state: &Path) -> Option<i64> {
    let out = sensor_ok(&["ti", "status", "--json", "--state-dir", s(state)]);
    serde_json::from_str::<Value>(&out).expect("json")["version"].as_i64()
}

/// `GET /api/v1/alerts?sensor_id=ID`'s total.
async fn server_alerts(server: &Server, id: &str) -> (u64, Value) {
    let (status, v) = server.call(reqwest::Method::GET, &format!("/api/v1/alerts?sensor_id={id}&limit=10"), None).await;
    assert_eq!(status, 200, "alerts: {v}");
    (v["total"].as_u64().expect("total"), v)
}

/// The offset of the (only) follow checkpoint file of `state`.
fn follow_offset(state: &Path) -> Option<u64> {
    let dir = state.join("detect").join("follow");
    let e = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
    v["offset"].as_u64()
}

async fn end_to_end(backend: Backend) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::generate().expect("key");
    let key_pub = keys.path().join("release.key.pub");
    std::fs::write(&key_pub, key.public().to_base64()).expect("write key");
    let server = Server::start_with_args(backend, "10m", &["--release-key-pub".into(), s(&key_pub).into()]).await;
    let dir = server.dir.path();

    let auto_id = onboard(&server, "DC-AUTO", true).await;
    let manual_id = onboard(&server, "DC-MANUAL", false).await;
    let auto_state = dir.join("auto-state");
    let manual_state = dir.join("manual-state");
    for (id, state) in [(&auto_id, &auto_state), (&manual_id, &manual_state)] {
        let file = server.activation_file(id).await;
        sensor_ok(&["activate", "--activation-file", s(&file), "--state-dir", s(state)]);
    }
    let auto_log = dir.join("auto.jsonl");
    let manual_log = dir.join("manual.jsonl");
    std::fs::write(&auto_log, b"").expect("create");
    // Written before any TI: it must never raise an alert on the manual sensor.
    let early = "{\"src\":\"203.0.113.7\",\"when\":\"before the import\"}\n";
    std::fs::write(&manual_log, early).expect("create");
    let udp = free_port();
    let udp_url = format!("udp://127.0.0.1:{udp}");
    let auto_args = ["--follow", s(&auto_log), "--syslog-listen", &udp_url];
    let mut auto = SensorProcess::run_with(&auto_state, 1, &auto_args);
    let manual = SensorProcess::run_with(&manual_state, 1, &["--follow", s(&manual_log)]);

    // TI 1 published: the auto sensor applies it and reports it.
    let pkg1 = ti_package(keys.path(), &key, 1, &[("ip", "203.0.113.7", "high"), ("domain", "evil.example", "medium")]);
    let (status, v) = post_bytes(&server, "/api/v1/ti-packages", std::fs::read(&pkg1).expect("read")).await;
    assert_eq!(status, 201, "publish TI 1: {v}");
    wait_for(WAIT, "the auto sensor to apply TI 1", async || (ti_version(&auto_state) == Some(1)).then_some(())).await;
    wait_for(WAIT, "the control plane to see TI 1 on the auto sensor", async || {
        (server.sensor(&auto_id).await["ti_version"] == 1).then_some(())
    })
    .await;
    assert!(auto.log().contains("TI package from the control plane applied"), "{}", auto.log());

    // Alerts: many lines (several batches), killed while uploading, restarted.
    const N: u64 = 1500;
    let mut text = String::new();
    for n in 0..N {
        text.push_str(&format!("{{\"n\":{n},\"dst\":\"203.0.113.7:443\"}}\n"));
    }
    std::fs::OpenOptions::new().append(true).open(&auto_log).expect("open").write_all(text.as_bytes()).expect("write");
    let at_kill = wait_for(WAIT, "the first uploaded batch", async || {
        let (total, _) = server_alerts(&server, &auto_id).await;
        (total > 0).then_some(total)
    })
    .await;
    auto.signal("-KILL");
    let _ = auto.child.wait();
    let local = alerts(&auto_state);
    assert_eq!(local.len() as u64, N, "every line's alert is on disk");
    drop(auto);
    let mut auto = SensorProcess::run_with(&auto_state, 2, &auto_args);
    wait_for(WAIT, "all alerts on the control plane", async || {
        let (total, _) = server_alerts(&server, &auto_id).await;
        assert!(total <= N, "duplicates stored: {total} > {N}");
        (total == N).then_some(())
    })
    .await;
    eprintln!("killed with {at_kill} of {N} alerts uploaded");

    // Syslog too.
    wait_for(WAIT, "the syslog listener", async || auto.log().contains("syslog listener (UDP) started").then_some(()))
        .await;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let msg = "<38>1 2026-11-22T10:00:00Z dc01 dns - - - query for c2.evil.example from 10.0.0.5";
    sock.send_to(msg.as_bytes(), ("127.0.0.1", udp)).expect("send");
    wait_for(WAIT, "the syslog alert on the control plane", async || {
        (server_alerts(&server, &auto_id).await.0 == N + 1).then_some(())
    })
    .await;
    let local = alerts(&auto_state);
    wait_for(WAIT, "every alert marked uploaded", async || {
        alerts(&auto_state).iter().all(|a| a["uploaded"] == true).then_some(())
    })
    .await;
    let mut ids: Vec<&str> = local.iter().map(|a| a["id"].as_str().unwrap_or("")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, N + 1);

    // The sensor loses its record of accepted uploads (as a kill between the answer and the
    // mark would leave it): it sends everything again, and the control plane stores nothing new.
    auto.signal("-TERM");
    let _ = auto.child.wait();
    drop(auto);
    std::fs::write(auto_state.join("alerts/uploaded.json"), br#"{"format":1,"uploaded_through":0}"#).expect("write");
    let mut auto = SensorProcess::run_with(&auto_state, 3, &auto_args);
    wait_for(WAIT, "the re-sent alerts to be acknowledged", async || {
        alerts(&auto_state).iter().all(|a| a["uploaded"] == true).then_some(())
    })
    .await;
    assert_eq!(server_alerts(&server, &auto_id).await.0, N + 1, "re-sent alerts are stored once");
    assert!(auto.log().contains("duplicates="), "{}", auto.log());

    // The manual sensor never got TI 1 and raised nothing.
    let contact = sensor_status(&manual_state)["last_contact_at"].clone();
    wait_for(WAIT, "a later heartbeat of the manual sensor", async || {
        (sensor_status(&manual_state)["last_contact_at"] != contact).then_some(())
    })
    .await;
    assert_eq!(ti_version(&manual_state), None, "auto TI updates off: nothing pushed");
    assert!(server.sensor(&manual_id).await["ti_version"].is_null());
    wait_for(WAIT, "the manual sensor to read the early line", async || {
        (follow_offset(&manual_state) == Some(early.len() as u64)).then_some(())
    })
    .await;
    assert!(alerts(&manual_state).is_empty());

    // TI 2: the auto sensor swaps it in while running.
    let pkg2 = ti_package(keys.path(), &key, 2, &[("ip", "192.0.2.99", "low"), ("ip", "203.0.113.7", "high")]);
    let (status, v) = post_bytes(&server, "/api/v1/ti-packages", std::fs::read(&pkg2).expect("read")).await;
    assert_eq!(status, 201, "publish TI 2: {v}");
    wait_for(WAIT, "the auto sensor to apply TI 2", async || (ti_version(&auto_state) == Some(2)).then_some(())).await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&auto_log)
        .expect("open")
        .write_all(b"{\"new\":\"192.0.2.99\"}\n")
        .expect("write");
    wait_for(WAIT, "an alert from TI 2", async || {
        alerts(&auto_state)
            .iter()
            .any(|a| a["indicator"]["value"] == "192.0.2.99" && a["ti_version"] == 2)
            .then_some(())
    })
    .await;
    assert!(auto.child.try_wait().expect("try_wait").is_none(), "no restart: {}", auto.log());
    wait_for(WAIT, "the TI 2 alert on the control plane", async || {
        (server_alerts(&server, &auto_id).await.0 == N + 2).then_some(())
    })
    .await;

    // The operator downloads TI 2 and imports it on the manual sensor's host.
    let (status, bytes) = get_bytes(&server, "/api/v1/ti-packages/2/download").await;
    assert_eq!(status, 200);
    let downloaded = dir.join("downloaded-ti-2.pkg");
    std::fs::write(&downloaded, bytes).expect("write");
    let out = sensor_ok(&["ti", "import", s(&downloaded), "--state-dir", s(&manual_state)]);
    assert!(out.contains("imported TI version 2"), "{out}");
    wait_for(WAIT, "the manual sensor to use TI 2", async || manual.log().contains("ti_version=2").then_some(())).await;
    let late = "{\"src\":\"203.0.113.7\",\"when\":\"after the import\"}\n";
    std::fs::OpenOptions::new().append(true).open(&manual_log).expect("open").write_all(late.as_bytes()).expect("w");
    let (_, v) = wait_for(WAIT, "the manual sensor's alert on the control plane", async || {
        let (total, v) = server_alerts(&server, &manual_id).await;
        (total >= 1).then_some((total, v))
    })
    .await;
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    assert!(items[0]["excerpt"].as_str().unwrap_or("").contains("after the import"), "{v}");
    wait_for(WAIT, "the control plane to see TI 2 on the manual sensor", async || {
        (server.sensor(&manual_id).await["ti_version"] == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ti_and_alerts_end_to_end_sqlite() {
    end_to_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ti_and_alerts_end_to_end_postgres() {
    end_to_end(Backend::Postgres).await;
}
