//! Updates the real way: `picket release publish` → the rollout job grants → the sensor writes
//! the grant from its heartbeat answer to `update/grant.json` → the updater downloads,
//! verifies, extracts, switches and restarts → the new version's heartbeat gives clearance (the
//! sensor relays `update/report.json`) → the grant is finished in the control plane.
//!
//! One sensor+updater pair on one server goes through every case in turn, each with a release
//! of its own (a failure pauses its rollout and is not retried in it; the next release starts a
//! new one), alternating refusals with successful updates so that each refusal has to raise a
//! fresh `update_failed` health issue (a success closes it):
//!
//! 1. a package whose stored bytes were altered after publishing is refused;
//! 2. the updater killed with SIGKILL during the download resumes it and finishes;
//! 3. a package signed with a key the host's activation file does not carry is refused;
//! 4. the updater killed with SIGKILL during extraction starts again cleanly and finishes;
//! 5. a grant rewritten to a version below the running one (a downgrade) is refused;
//! 6. the updater killed with SIGKILL right after the switch finishes the update;
//! 7. a release whose program exits on start is rolled back automatically;
//! 8. a sensor over its memory limit is restarted by the watchdog, keeps heartbeating, and the
//!    control plane (told by the heartbeat's `watchdog_restart_at`) raises a `watchdog_restart`
//!    health issue.
//!
//! The control plane refuses bad packages at publish, so the refusal cases make the host
//! receive one as an attacker or an accident would: through the server's database (package
//! bytes, a grant) or through a key the server trusts but this host was never given.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// The grant the rollout of `version` gave to `sensor`, once given.
async fn granted(db: &Db, version: &str, sensor: &str) -> GrantRow {
    wait_for(Duration::from_secs(60), &format!("a grant of {version}"), async || {
        db.grants(version).await.into_iter().find(|g| g.sensor_id == sensor)
    })
    .await
}

/// The grant `update_id` once finished (succeeded or failed).
async fn finished(db: &Db, update_id: &str, up: &UpdaterProcess) -> GrantRow {
    let g = wait_for(Duration::from_secs(120), &format!("grant {update_id} finished"), async || {
        Some(db.grant(update_id).await).filter(|g| g.state != "granted")
    })
    .await;
    assert!(g.finished_at.is_some(), "{g:?}");
    eprintln!("grant {} of {}: {} {:?}", g.update_id, g.version, g.state, g.error);
    if g.state == "succeeded" {
        return g;
    }
    assert!(g.error.is_some(), "a failed grant says why: {g:?}\n{}", up.log());
    g
}

/// The control plane shows the sensor running `v`.
async fn runs(server: &Server, id: &str, v: &str) {
    wait_for(Duration::from_secs(60), &format!("the sensor reports {v} running"), async || {
        let s = server.sensor(id).await;
        (s["version"] == v && s["service_status"] == "running").then_some(())
    })
    .await;
}

/// After a refusal: the host still runs `v`, the control plane shows `update_failed` and an
/// open `update_failed` health issue.
async fn refused(server: &Server, id: &str, inst: &Path, v: &str, refused_version: &str) {
    assert_eq!(current(inst).as_deref(), Some(v), "the sensor stays on its version");
    assert!(!inst.join(refused_version).exists(), "nothing of {refused_version} is installed");
    runs(server, id, v).await;
    wait_for(Duration::from_secs(60), "update_failed with an open health issue", async || {
        let s = server.sensor(id).await;
        let issues = server.open_issues(id, "update_failed").await;
        (s["sensor_status"] == "update_failed" && issues.len() == 1).then_some(())
    })
    .await;
}

/// After a success: the host and the control plane agree on `v`, and no `update_failed`
/// issue is left open.
async fn updated(server: &Server, id: &str, inst: &Path, v: &str) {
    assert_eq!(current(inst).as_deref(), Some(v));
    runs(server, id, v).await;
    wait_for(Duration::from_secs(60), "up_to_date with no open update_failed issue", async || {
        let s = server.sensor(id).await;
        let issues = server.open_issues(id, "update_failed").await;
        (s["sensor_status"] == "up_to_date" && issues.is_empty()).then_some(())
    })
    .await;
}

/// `state/update/grant.json` as the sensor wrote it for grant `update_id`.
async fn relayed(inst: &Path, update_id: &str) -> Value {
    wait_for(Duration::from_secs(60), "the sensor writes grant.json", async || {
        update_file(inst, "grant").filter(|g| g["update_id"] == update_id)
    })
    .await
}

fn set_journal_step(inst: &Path, step: Value) {
    let mut j: Value = serde_json::from_slice(&std::fs::read(inst.join("journal.json")).unwrap()).unwrap();
    j["step"] = step;
    std::fs::write(inst.join("journal.json"), serde_json::to_vec(&j).unwrap()).unwrap();
}

/// A signed package of `version` whose program prints an error and exits 3.
fn crashing_package(key: &picket_package::SecretKey, version: &str, dir: &Path) -> std::path::PathBuf {
    let input = dir.join(format!("crashing-{version}"));
    std::fs::create_dir_all(input.join("bin")).unwrap();
    std::fs::write(input.join("bin/picket-sensor"), "#!/bin/sh\necho crashing >&2\nexit 3\n").unwrap();
    let out = dir.join(format!("crashing-{version}.pkg"));
    let opts = picket_package::BuildOptions {
        version: version.parse().unwrap(),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now(),
        expires_at: picket_domain::Timestamp(now().0 + 86_400_000),
        min_updater_version: "0.1.0".parse().unwrap(),
        compression_level: 1,
    };
    picket_package::build(&input, &opts, key, &out).unwrap();
    out
}

async fn updates(backend: Backend) {
    let server = Server::start_with(backend, &["--update-deadline", "3m", "--health-check-every", "1s"]).await;
    let db = server.db().await;
    let dir = server.dir.path();
    let (id, activation) = server.onboard("dc-update").await;
    // The server trusts a second release key, but this host's activation file does not carry
    // it: as for a sensor onboarded before the operator added that key (activation files
    // carry the keys of their day).
    let other = server.other_key.public().to_base64();
    let mut file: Value = serde_json::from_slice(&std::fs::read(&activation).unwrap()).unwrap();
    let keys = file["package_signing_keys"].as_array().unwrap().clone();
    let kept: Vec<Value> = keys.iter().filter(|k| k.as_str().map(str::trim) != Some(other.trim())).cloned().collect();
    assert_eq!(kept.len() + 1, keys.len(), "the activation file carries both keys: {keys:?}");
    file["package_signing_keys"] = Value::Array(kept);
    std::fs::write(&activation, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let inst = dir.join("inst");
    install(&activation, &package(&server.key, "1.0.0", dir), &inst);
    let mut up = UpdaterProcess::start(&inst, &[]);
    runs(&server, &id, "1.0.0").await;

    // 1. Tampered: the package's bytes are altered in the store after publishing (the
    // server checked them at publish). The pair is stopped first so that no heartbeat
    // carries the grant before the bytes are altered; then it starts, gets the grant,
    // downloads the altered bytes and refuses them.
    up.stop();
    let r2 = server.publish(&package(&server.key, "2.0.0", dir)).await;
    let g = granted(&db, "2.0.0", &id).await;
    db.tamper_package(r2["sha256"].as_str().unwrap()).await;
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "failed");
    let err = g.error.unwrap();
    assert!(err.contains("refused") || err.contains("SHA-256"), "{err}");
    refused(&server, &id, &inst, "1.0.0", "2.0.0").await;

    // 2. SIGKILL during the download: the sensor the killed updater started keeps running and
    // relays the next grant; the test lays out what the kill leaves mid-download (the journal
    // at `downloading`, half the package in `downloads/<sha256>.part`); the restarted updater
    // stops the orphan, resumes the download with `Range` and finishes the update.
    up.kill9();
    let orphan = sensor_pid(&inst).expect("the sensor outlives the killed updater");
    let p3 = package(&server.key, "3.0.0", dir);
    let r3 = server.publish(&p3).await;
    let sha3 = r3["sha256"].as_str().unwrap().to_string();
    let g = granted(&db, "3.0.0", &id).await;
    let grant = relayed(&inst, &g.update_id).await;
    assert_eq!((grant["version"].as_str(), grant["sha256"].as_str()), (Some("3.0.0"), Some(sha3.as_str())));
    let bytes = std::fs::read(&p3).unwrap();
    std::fs::create_dir_all(inst.join("downloads")).unwrap();
    std::fs::write(inst.join(format!("downloads/{sha3}.part")), &bytes[..bytes.len() / 2]).unwrap();
    set_journal_step(&inst, serde_json::json!({"step": "downloading", "update_id": g.update_id, "version": "3.0.0"}));
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "succeeded", "{g:?}\n{}", up.log());
    assert!(!inst.join(format!("downloads/{sha3}.part")).exists());
    assert_ne!(sensor_pid(&inst), Some(orphan), "the orphan was stopped");
    updated(&server, &id, &inst, "3.0.0").await;

    // 3. Signed with a key the server trusts but the host's activation file does not carry.
    let r4 = server.publish(&package(&server.other_key, "4.0.0", dir)).await;
    assert!(r4["sha256"].is_string());
    let g = granted(&db, "4.0.0", &id).await;
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "failed");
    assert!(g.error.as_deref().unwrap().contains("not one of the trusted release keys"), "{g:?}");
    refused(&server, &id, &inst, "3.0.0", "4.0.0").await;

    // 4. SIGKILL during extraction: the journal at `extracting` and a half-written version
    // directory; the restarted updater removes it, extracts again and finishes.
    up.kill9();
    server.publish(&package(&server.key, "5.0.0", dir)).await;
    let g = granted(&db, "5.0.0", &id).await;
    relayed(&inst, &g.update_id).await;
    set_journal_step(&inst, serde_json::json!({"step": "extracting", "update_id": g.update_id, "version": "5.0.0"}));
    std::fs::create_dir_all(inst.join(".5.0.0.partial-crash/bin")).unwrap();
    std::fs::write(inst.join(".5.0.0.partial-crash/bin/picket-sensor"), b"half").unwrap();
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "succeeded", "{g:?}\n{}", up.log());
    assert!(!inst.join(".5.0.0.partial-crash").exists(), "the partial extraction is removed");
    updated(&server, &id, &inst, "5.0.0").await;

    // 5. A downgrade: the open grant is rewritten to 1.0.0 in the database (a compromised
    // control plane), with the pair stopped so the original grant never reaches it.
    up.stop();
    server.publish(&package(&server.key, "6.0.0", dir)).await;
    let g = granted(&db, "6.0.0", &id).await;
    db.rewrite_grant_version(&g.update_id, "1.0.0").await;
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "failed");
    assert!(g.error.as_deref().unwrap().contains("not above the running version"), "{g:?}");
    refused(&server, &id, &inst, "5.0.0", "6.0.0").await;

    // 6. A real SIGKILL right after the switch: `current` already points at 7.0.0 and the
    // updater waits for the new sensor's clearance. The restarted updater finishes the switch.
    server.publish(&package(&server.key, "7.0.0", dir)).await;
    let g = granted(&db, "7.0.0", &id).await;
    let t = std::time::Instant::now();
    while current(&inst).as_deref() != Some("7.0.0") {
        assert!(t.elapsed() < Duration::from_secs(120), "no switch to 7.0.0: {}", up.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    up.kill9();
    let j: Value = serde_json::from_slice(&std::fs::read(inst.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["step"]["step"], "switched", "killed between the switch and the clearance: {j}");
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "succeeded", "{g:?}\n{}", up.log());
    updated(&server, &id, &inst, "7.0.0").await;
    // The orphan's heartbeats on 7.0.0 may have cleared the grant already; the updater's own
    // record says whether it finished the switch.
    wait_for(Duration::from_secs(60), "the journal records 7.0.0 as current, 5.0.0 kept", async || {
        let j: Value = serde_json::from_slice(&std::fs::read(inst.join("journal.json")).ok()?).ok()?;
        (j["step"]["step"] == "idle" && j["current"] == "7.0.0" && j["previous"] == "5.0.0").then_some(())
    })
    .await;

    // 7. A release whose program exits on start is rolled back automatically.
    server.publish(&crashing_package(&server.key, "8.0.0", dir)).await;
    let g = granted(&db, "8.0.0", &id).await;
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "failed");
    assert!(g.error.as_deref().unwrap().contains("exited on start"), "{g:?}");
    assert!(up.log().contains("rolled_back"), "{}", up.log());
    assert_eq!(current(&inst).as_deref(), Some("7.0.0"));
    runs(&server, &id, "7.0.0").await;
    wait_for(Duration::from_secs(60), "update_failed with an open health issue", async || {
        let s = server.sensor(&id).await;
        (s["sensor_status"] == "update_failed" && server.open_issues(&id, "update_failed").await.len() == 1)
            .then_some(())
    })
    .await;

    // 8. The watchdog: limits no sensor can keep; it is restarted again and again, and the
    // sensor relays the restart time to the control plane, which opens a health issue.
    up.stop();
    up = UpdaterProcess::start(&inst, &["--max-memory-percent", "0.001", "--watchdog-window", "1s"]);
    let first = wait_for(Duration::from_secs(30), "a sensor runs", async || sensor_pid(&inst)).await;
    let w = wait_for(Duration::from_secs(30), "watchdog.json", async || update_file(&inst, "watchdog")).await;
    let reason = w["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("rss ") && reason.contains("over the limit"), "{reason}");
    wait_for(Duration::from_secs(30), "a new sensor process", async || sensor_pid(&inst).filter(|p| *p != first)).await;
    // It keeps heartbeating between restarts.
    let seen = server.sensor(&id).await["last_seen_at"].clone();
    wait_for(Duration::from_secs(60), "a heartbeat after the restart", async || {
        let s = server.sensor(&id).await;
        (s["last_seen_at"] != seen && s["version"] == "7.0.0").then_some(())
    })
    .await;
    wait_for(Duration::from_secs(60), "an open watchdog_restart issue", async || {
        server.open_issues(&id, "watchdog_restart").await.pop()
    })
    .await;
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_rollback_crash_recovery_and_watchdog_through_the_control_plane_sqlite() {
    updates(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_rollback_crash_recovery_and_watchdog_through_the_control_plane_postgres() {
    updates(Backend::Postgres).await;
}
