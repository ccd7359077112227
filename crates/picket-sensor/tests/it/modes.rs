//! Modes, names and reactivation with real processes: a locally managed sensor activates and
//! runs with no connection to the control plane (which shows it `not_applicable`) and can be
//! renamed on the host; a cloud-connected one refuses a rename and shows the control plane's
//! name; `reactivate` after delete + onboard switches control-plane record or mode, refuses the
//! file of the sensor already active, and the old identity is refused afterwards.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Backend, SensorProcess, Server, ca_of, identity_of, raw_heartbeat, s, sensor_fails, sensor_ok, sensor_status,
    wait_for,
};

/// A TCP listener on loopback that counts connections (and closes them).
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, n)
}

async fn modes(backend: Backend) {
    let server = Server::start(backend, "10m").await;
    let port = server.sensor_port;

    // Locally managed: the control plane shows it not_applicable; activate and run make no
    // network call (its file points at a listener that counts connections).
    let local_id = server.onboard_mode("OT01", "locally_managed").await;
    let v = server.sensor(&local_id).await;
    assert_eq!((v["sensor_status"].as_str(), v["service_status"].as_str()), (Some("not_applicable"), Some("unknown")));
    let file = server.activation_file(&local_id).await;
    let (trap_port, connections) = counting_listener();
    let mut af: Value = serde_json::from_slice(&std::fs::read(&file).expect("file")).expect("JSON");
    af["control_plane_urls"] = serde_json::json!([format!("https://127.0.0.1:{trap_port}")]);
    std::fs::write(&file, serde_json::to_vec(&af).expect("JSON")).expect("write");
    let local = server.dir.path().join("local-state");
    let out = sensor_ok(&["activate", "--activation-file", s(&file), "--state-dir", s(&local)]);
    assert!(out.contains("locally managed") && out.contains(&local_id), "{out}");
    let st = sensor_status(&local);
    assert_eq!((st["mode"].as_str(), st["sensor_name"].as_str()), (Some("locally_managed"), Some("OT01")));
    let text = sensor_ok(&["status", "--state-dir", s(&local)]);
    assert!(text.contains("locally managed"), "{text}");
    let mut sensor = SensorProcess::run(&local, 1);
    wait_for(Duration::from_secs(10), "run to start", async || sensor.log().contains("locally managed").then_some(()))
        .await;
    // Observe a window of several heartbeat intervals (300 ms): not one connection.
    let window = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < window {
        assert_eq!(connections.load(Ordering::SeqCst), 0, "a locally managed sensor contacted the control plane");
        assert!(sensor.child.try_wait().expect("try_wait").is_none(), "run keeps running: {}", sensor.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    drop(sensor);
    let v = server.sensor(&local_id).await;
    assert_eq!(v["sensor_status"], "not_applicable");
    assert!(v["last_seen_at"].is_null(), "{v}");

    // Its name can change on the host; the control plane keeps the onboarding name.
    let out = sensor_ok(&["rename", "OT01-HALL-B", "--state-dir", s(&local)]);
    assert!(out.contains("OT01-HALL-B"), "{out}");
    assert_eq!(sensor_status(&local)["sensor_name"], "OT01-HALL-B");
    assert_eq!(server.sensor(&local_id).await["name"], "OT01");
    let err = sensor_fails(&["rename", "not a name!", "--state-dir", s(&local)]);
    assert!(err.contains("name"), "{err}");

    // Cloud connected: the name is the control plane's; rename is refused on the host.
    let cloud_id = server.onboard("DC01").await;
    let cloud_file = server.activation_file(&cloud_id).await;
    let ca = ca_of(&cloud_file);
    let cloud = server.dir.path().join("cloud-state");
    sensor_ok(&["activate", "--activation-file", s(&cloud_file), "--state-dir", s(&cloud)]);
    let err = sensor_fails(&["rename", "DC99", "--state-dir", s(&cloud)]);
    assert!(err.contains("set in the control plane"), "{err}");
    let sensor = SensorProcess::run(&cloud, 1);
    let (status, v) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sensors/{cloud_id}"),
            Some(serde_json::json!({"name": "DC01-NEW"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    wait_for(Duration::from_secs(10), "the control plane's new name on the host", async || {
        (sensor_status(&cloud)["sensor_name"] == "DC01-NEW").then_some(())
    })
    .await;
    drop(sensor);

    // Reactivate: delete, onboard again, new activation file. The file of the sensor already
    // active here is refused first.
    let err = sensor_fails(&["reactivate", "--activation-file", s(&cloud_file), "--state-dir", s(&cloud)]);
    assert!(err.contains("already active"), "{err}");
    std::fs::write(cloud.join("config.json.keep-check"), b"kept").expect("marker");
    let old = identity_of(&cloud);
    let (status, _) = server.call(reqwest::Method::DELETE, &format!("/api/v1/sensors/{cloud_id}"), None).await;
    assert_eq!(status, 204);
    let new_id = server.onboard("DC01").await;
    let new_file = server.activation_file(&new_id).await;
    let out = sensor_ok(&["reactivate", "--activation-file", s(&new_file), "--state-dir", s(&cloud)]);
    assert!(out.contains("reactivated") && out.contains(&new_id), "{out}");
    let st = sensor_status(&cloud);
    assert_eq!(st["sensor_id"], new_id.as_str());
    let new = identity_of(&cloud);
    assert_ne!(new, old, "a new identity");
    assert!(cloud.join("config.json.keep-check").exists(), "the rest of the state dir is kept");
    assert_eq!(raw_heartbeat(port, &ca, (&old.0, &old.1)).await, 401, "the old identity is refused");
    assert_eq!(raw_heartbeat(port, &ca, (&new.0, &new.1)).await, 200, "the new identity works");
    let err = sensor_fails(&["reactivate", "--activation-file", s(&new_file), "--state-dir", s(&cloud)]);
    assert!(err.contains("already active"), "{err}");
    let sensor = SensorProcess::run(&cloud, 2);
    wait_for(Duration::from_secs(20), "the reactivated sensor up_to_date", async || {
        (server.sensor(&new_id).await["sensor_status"] == "up_to_date").then_some(())
    })
    .await;
    drop(sensor);

    // A reactivation killed after the control plane accepted the new identity but before the
    // state dir recorded it: run again with the same file, it recognises its own activation.
    let (status, _) = server.call(reqwest::Method::DELETE, &format!("/api/v1/sensors/{new_id}"), None).await;
    assert_eq!(status, 204);
    let third_id = server.onboard("DC01").await;
    let third_file = server.activation_file(&third_id).await;
    let next = picket_sensor::identity::generate("DC01", picket_sensor::run::now()).expect("identity");
    picket_sensor::state::StateDir::new(&cloud).write_next(&next.cert_pem, &next.key_pem).expect("identity/next");
    let af: Value = serde_json::from_slice(&std::fs::read(&third_file).expect("file")).expect("JSON");
    let body = serde_json::json!({"sensor_id": third_id, "activation_token": af["activation_token"]}).to_string();
    let activated =
        crate::harness::raw_call(port, &ca, (&next.cert_pem, &next.key_pem), "POST", "/sensor/v1/activate", &body)
            .await
            .expect("activate handshake");
    assert_eq!(activated, 200, "the half-done reactivation reached the control plane");
    let out = sensor_ok(&["reactivate", "--activation-file", s(&third_file), "--state-dir", s(&cloud)]);
    assert!(out.contains(&third_id), "{out}");
    assert_eq!(identity_of(&cloud), (next.cert_pem.clone(), next.key_pem.clone()), "the identity it activated");
    assert_eq!(sensor_status(&cloud)["sensor_id"], third_id.as_str());
    assert!(!cloud.join("identity/next").exists());

    // Switch mode: the locally managed sensor moves to cloud connected.
    let (status, _) = server.call(reqwest::Method::DELETE, &format!("/api/v1/sensors/{local_id}"), None).await;
    assert_eq!(status, 204);
    let moved_id = server.onboard("OT01").await;
    let moved_file = server.activation_file(&moved_id).await;
    sensor_ok(&["reactivate", "--activation-file", s(&moved_file), "--state-dir", s(&local)]);
    let st = sensor_status(&local);
    assert_eq!((st["mode"].as_str(), st["sensor_id"].as_str()), (Some("cloud_connected"), Some(moved_id.as_str())));
    let v = server.sensor(&moved_id).await;
    assert!(!v["activated_at"].is_null(), "activated with the control plane: {v}");
    let err = sensor_fails(&["rename", "OT02", "--state-dir", s(&local)]);
    assert!(err.contains("set in the control plane"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_on_sqlite() {
    modes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_on_postgres() {
    modes(Backend::Postgres).await;
}
