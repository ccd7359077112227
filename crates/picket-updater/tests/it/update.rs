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
//! 2. the updater killed with SIGKILL in the middle of the download (a proxy between the host
//!    and the sensor listener slows the server's bytes down, so the test catches it with a
//!    third of the package on disk) resumes it with `Range` from the partial file's size and
//!    finishes;
//! 3. a package signed with a key the host's activation file does not carry is refused;
//! 4. the updater killed with SIGKILL in the middle of extraction (a package of 4,000 files,
//!    each synced, killed once a few hundred are in the temp dir) removes the half version dir,
//!    extracts again from the kept package and finishes;
//! 5. a grant rewritten to a version below the running one (a downgrade) is refused;
//! 6. the updater killed with SIGKILL right after the switch finishes the update;
//! 7. a release whose program exits on start is rolled back automatically;
//! 8. a sensor over its memory limit is restarted by the watchdog, keeps heartbeating, and the
//!    control plane (told by the heartbeat's `watchdog_restart_at`) raises a `watchdog_restart`
//!    health issue.
//!
//! Every kill is a real `kill -9` of `picket-updater run` at that moment (the test polls the
//! journal, `downloads/` and the install dir to find it), and after each restart exactly one
//! sensor process runs, the restarted updater's child: the sensor the killed updater left
//! running is stopped, found through `sensor.pid` or, when the kill left none (step 4 removes
//! it, as a kill between spawning a sensor and recording its pid would), by its command line.
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

/// Polls `f` every 5 ms until it gives `Some`, panicking with `what` after `timeout`: tight
/// enough to catch a step that lasts seconds, in the middle.
async fn poll_tight<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// After a restart that followed a SIGKILL: exactly one sensor process runs for `inst`, and it
/// is the child of the restarted updater `up` (a sensor the killed updater left running was
/// stopped, not run beside).
async fn one_sensor(inst: &Path, up: &UpdaterProcess) -> u32 {
    let updater = up.child.id();
    let pid = wait_for(Duration::from_secs(60), "one sensor, the restarted updater's child", async || {
        let ps = sensor_processes(inst);
        (ps.len() == 1 && proc_stat(ps[0]).is_some_and(|(_, ppid)| ppid == updater)).then(|| ps[0])
    })
    .await;
    assert_eq!(sensor_pid(inst), Some(pid), "sensor.pid names it");
    pid
}

/// The journal's step once the updater was killed.
fn journal_step(inst: &Path) -> Value {
    journal(inst).expect("journal.json is readable after the kill")["step"].clone()
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
    // The sensor and the updater reach the sensor listener through a proxy that can slow the
    // server's bytes down (step 2).
    let proxy = Proxy::start(server.sensor_addr);
    let urls = file["control_plane_urls"].as_array().unwrap();
    assert!(urls.len() == 1 && urls[0].as_str().unwrap().starts_with("https://"), "{urls:?}");
    file["control_plane_urls"] = serde_json::json!([format!("https://{}", proxy.addr)]);
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

    // 2. A real SIGKILL during the download. The proxy passes the server's bytes at 512 KiB/s
    // while this step wants a slow download, so fetching the few MB of 3.0.0 takes seconds;
    // the updater is killed once a third of it is in `downloads/<sha256>.part`. The restarted
    // updater stops the sensor the killed one left running, resumes with `Range` from the
    // partial file's size (its log says from which byte, and the proxy counts that only the
    // rest crossed the wire), and finishes the update.
    proxy.set_rate(512 << 10);
    let p3 = package(&server.key, "3.0.0", dir);
    let size3 = std::fs::metadata(&p3).unwrap().len();
    let r3 = server.publish(&p3).await;
    let sha3 = r3["sha256"].as_str().unwrap().to_string();
    let g = granted(&db, "3.0.0", &id).await;
    let part = inst.join(format!("downloads/{sha3}.part"));
    poll_tight(Duration::from_secs(120), "a third of 3.0.0 downloaded", || {
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        (have >= size3 / 3).then_some(())
    })
    .await;
    let orphan = sensor_pid(&inst).expect("a sensor runs");
    up.kill9();
    let have = std::fs::metadata(&part).map(|m| m.len()).expect("the partial download is on disk");
    assert!(have < size3, "killed mid-download: {have} of {size3} bytes");
    eprintln!("killed mid-download with {have} of {size3} bytes on disk");
    let step = journal_step(&inst);
    assert_eq!((step["step"].as_str(), step["update_id"].as_str()), (Some("downloading"), Some(g.update_id.as_str())));
    assert!(sensor_processes(&inst).contains(&orphan), "the sensor outlives the killed updater");
    proxy.set_rate(0);
    let seen = proxy.connections();
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "succeeded", "{g:?}\n{}", up.log());
    assert!(up.log().contains(&format!("from={have}")), "the download resumed at byte {have}:\n{}", up.log());
    let wire = proxy.downstream_since(seen).into_iter().max().unwrap_or(0);
    assert!(
        wire >= size3 - have && wire <= size3 - have + (64 << 10),
        "only the rest ({} bytes) is downloaded again, not the whole {size3}: {wire} bytes on the wire",
        size3 - have
    );
    eprintln!("resumed download: {wire} bytes on the wire for the {} left", size3 - have);
    assert!(!part.exists());
    updated(&server, &id, &inst, "3.0.0").await;
    let pid = one_sensor(&inst, &up).await;
    assert_ne!(pid, orphan, "the orphan was stopped");

    // 3. Signed with a key the server trusts but the host's activation file does not carry.
    let r4 = server.publish(&package(&server.other_key, "4.0.0", dir)).await;
    assert!(r4["sha256"].is_string());
    let g = granted(&db, "4.0.0", &id).await;
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "failed");
    assert!(g.error.as_deref().unwrap().contains("not one of the trusted release keys"), "{g:?}");
    refused(&server, &id, &inst, "3.0.0", "4.0.0").await;

    // 4. A real SIGKILL during extraction: 5.0.0 carries 4,000 small files, each synced as it
    // is extracted, so the extraction takes seconds; the updater is killed once the journal
    // says `extracting` and a few hundred files are in the temp dir `.5.0.0.partial-*`. The
    // restarted updater removes that half version dir, extracts again from the verified
    // package it kept (not downloaded again) and finishes on a complete 5.0.0.
    let p5 = package_with_files(&server.key, "5.0.0", dir, 4000);
    server.publish(&p5).await;
    let g = granted(&db, "5.0.0", &id).await;
    let partial = poll_tight(Duration::from_secs(120), "the extraction of 5.0.0 under way", || {
        if journal(&inst)?["step"]["step"] != "extracting" {
            return None;
        }
        let d = partial_dirs(&inst).pop()?;
        (files_under(&d).len() >= 300).then_some(d)
    })
    .await;
    let orphan = sensor_pid(&inst).expect("a sensor runs");
    up.kill9();
    let step = journal_step(&inst);
    assert_eq!((step["step"].as_str(), step["update_id"].as_str()), (Some("extracting"), Some(g.update_id.as_str())));
    // A kill between spawning a sensor and recording its pid leaves no `sensor.pid`; without
    // it, the restarted updater must find the orphan by its command line.
    std::fs::remove_file(inst.join("sensor.pid")).unwrap();
    assert!(sensor_processes(&inst).contains(&orphan), "the sensor outlives the killed updater");
    let expected = files_under(&package_input(dir, "5.0.0"));
    let left = files_under(&partial).len();
    assert!(left < expected.len(), "killed mid-extraction: {left} of {} files", expected.len());
    eprintln!("killed mid-extraction with {left} of {} files extracted", expected.len());
    assert!(!inst.join("5.0.0").exists(), "the half extraction is not under the version's name");
    assert_eq!(current(&inst).as_deref(), Some("3.0.0"));
    let seen = proxy.connections();
    up = UpdaterProcess::start(&inst, &[]);
    let g = finished(&db, &g.update_id, &up).await;
    assert_eq!(g.state, "succeeded", "{g:?}\n{}", up.log());
    assert!(!partial.exists() && partial_dirs(&inst).is_empty(), "the partial extraction is removed");
    assert_eq!(files_under(&inst.join("5.0.0")), expected, "5.0.0 is complete");
    for f in &expected {
        let (got, want) = (
            std::fs::read(inst.join("5.0.0").join(f)).unwrap(),
            std::fs::read(package_input(dir, "5.0.0").join(f)).unwrap(),
        );
        assert!(got == want, "{} differs from the package's", f.display());
    }
    let wire = proxy.downstream_since(seen).into_iter().max().unwrap_or(0);
    assert!(wire < 1 << 20, "the verified package was kept, not downloaded again: {wire} bytes on one connection");
    updated(&server, &id, &inst, "5.0.0").await;
    let pid = one_sensor(&inst, &up).await;
    assert_ne!(pid, orphan, "the orphan was stopped");

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
    one_sensor(&inst, &up).await;
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
