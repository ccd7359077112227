//! Updates through `update/grant.json` (written here as the sensor would write what the
//! control plane grants): a downgrade is refused, an update switches `current` and the sensor
//! reports the new version, a version that crashes on start is rolled back automatically, an
//! operator rollback returns to the previous version on disk, and the updater killed with
//! SIGKILL during the download, during extraction and right after the switch recovers to a working sensor.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

async fn report_for(inst: &Path, id: &str) -> Value {
    wait_for(Duration::from_secs(90), &format!("report.json of {id}"), async || {
        update_file(inst, "report").filter(|r| r["update_id"] == id)
    })
    .await
}

async fn reports_version(server: &Server, id: &str, v: &str) {
    wait_for(Duration::from_secs(60), &format!("the sensor reports {v}"), async || {
        let s = server.sensor(id).await;
        (s["version"] == v && s["service_status"] == "running").then_some(())
    })
    .await;
}

async fn updates(backend: Backend) {
    let server = Server::start(backend).await;
    let (id, activation) = server.onboard("dc-update").await;
    let dir = server.dir.path();
    let p1 = package(&server.key, "1.0.0", dir);
    let inst = dir.join("inst");
    let out = updater(&[
        "install",
        "--quiet",
        "--activation-file",
        activation.to_str().unwrap(),
        "--install-dir",
        inst.to_str().unwrap(),
        "--package",
        p1.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    let r2 = server.publish(&package(&server.key, "2.0.0", dir)).await;
    let r3 = server.publish(&package(&server.key, "3.0.0", dir)).await;
    let (sha2, size2) = (r2["sha256"].as_str().unwrap().to_string(), r2["size"].as_u64().unwrap());
    let (sha3, size3) = (r3["sha256"].as_str().unwrap().to_string(), r3["size"].as_u64().unwrap());
    let mut up = UpdaterProcess::start(&inst, &[]);
    reports_version(&server, &id, "1.0.0").await;

    // A downgrade (or same version) is refused; the sensor stays.
    write_grant(&inst, "upd_down", "1.0.0", &sha2, size2, "update");
    let r = report_for(&inst, "upd_down").await;
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(r["error"].as_str().unwrap().contains("not above the running version"), "{r}");
    assert_eq!(current(&inst).as_deref(), Some("1.0.0"));

    // An update: downloaded over mutual TLS, verified, extracted, switched, cleared.
    write_grant(&inst, "upd_2", "2.0.0", &sha2, size2, "update");
    let r = report_for(&inst, "upd_2").await;
    assert_eq!(r["outcome"], "succeeded", "{r} {}", up.log());
    assert_eq!(current(&inst).as_deref(), Some("2.0.0"));
    assert!(inst.join("1.0.0").is_dir(), "the previous version is kept for rollback");
    reports_version(&server, &id, "2.0.0").await;

    // An operator rollback goes back to the previous version kept on disk.
    write_grant(&inst, "upd_rb", "1.0.0", "", 0, "rollback");
    let r = report_for(&inst, "upd_rb").await;
    assert_eq!(r["outcome"], "succeeded", "{r}");
    assert_eq!(current(&inst).as_deref(), Some("1.0.0"));
    reports_version(&server, &id, "1.0.0").await;

    // SIGKILL during extraction: the journal says `extracting`, a half-written directory is
    // left; the sensor the killed updater started keeps running meanwhile.
    up.kill9();
    let orphan = sensor_pid(&inst).expect("the sensor outlives the killed updater");
    let mut j: Value = serde_json::from_slice(&std::fs::read(inst.join("journal.json")).unwrap()).unwrap();
    j["step"] = serde_json::json!({"step": "extracting", "update_id": "upd_3", "version": "3.0.0"});
    std::fs::write(inst.join("journal.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    std::fs::create_dir_all(inst.join(".3.0.0.partial-crash/bin")).unwrap();
    std::fs::write(inst.join(".3.0.0.partial-crash/bin/picket-sensor"), b"half").unwrap();
    write_grant(&inst, "upd_3", "3.0.0", &sha3, size3, "update");
    let mut up = UpdaterProcess::start(&inst, &[]);
    let r = report_for(&inst, "upd_3").await;
    assert_eq!(r["outcome"], "succeeded", "{r} {}", up.log());
    assert_eq!(current(&inst).as_deref(), Some("3.0.0"));
    assert!(!inst.join(".3.0.0.partial-crash").exists(), "the partial extraction is removed");
    assert!(!Path::new(&format!("/proc/{orphan}/exe")).exists() || sensor_pid(&inst) != Some(orphan));
    reports_version(&server, &id, "3.0.0").await;

    // SIGKILL right after the switch of an operator rollback (journal `switched`, `current`
    // already renamed): the restarted updater finishes it.
    up.kill9();
    let mut j: Value = serde_json::from_slice(&std::fs::read(inst.join("journal.json")).unwrap()).unwrap();
    j["step"] = serde_json::json!({"step": "switched", "update_id": "upd_rb2", "action": "rollback",
        "from": "3.0.0", "to": "1.0.0"});
    std::fs::write(inst.join("journal.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    std::os::unix::fs::symlink("1.0.0", inst.join("current.tmp")).unwrap();
    std::fs::rename(inst.join("current.tmp"), inst.join("current")).unwrap();
    write_grant(&inst, "upd_rb2", "1.0.0", "", 0, "rollback");
    let mut up = UpdaterProcess::start(&inst, &[]);
    let r = report_for(&inst, "upd_rb2").await;
    assert_eq!(r["outcome"], "succeeded", "{r} {}", up.log());
    assert_eq!(current(&inst).as_deref(), Some("1.0.0"));
    reports_version(&server, &id, "1.0.0").await;

    // A release whose program crashes on start is rolled back automatically.
    let bad_in = dir.join("bad");
    std::fs::create_dir_all(bad_in.join("bin")).unwrap();
    std::fs::write(bad_in.join("bin/picket-sensor"), "#!/bin/sh\necho crashing >&2\nexit 3\n").unwrap();
    let out = dir.join("bad.pkg");
    let opts = picket_package::BuildOptions {
        version: "4.0.0".parse().unwrap(),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now(),
        expires_at: picket_domain::Timestamp(now().0 + 86_400_000),
        min_updater_version: "0.1.0".parse().unwrap(),
        compression_level: 1,
    };
    picket_package::build(&bad_in, &opts, &server.key, &out).unwrap();
    let r4 = server.publish(&out).await;
    write_grant(&inst, "upd_4", "4.0.0", r4["sha256"].as_str().unwrap(), r4["size"].as_u64().unwrap(), "update");
    let r = report_for(&inst, "upd_4").await;
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert!(r["error"].as_str().unwrap().contains("exited on start"), "{r}");
    assert_eq!(current(&inst).as_deref(), Some("1.0.0"));
    reports_version(&server, &id, "1.0.0").await;

    // SIGKILL during the download: half the package is in `downloads/`, the journal says
    // `downloading`; the restarted updater resumes it with `Range` and finishes the update.
    up.kill9();
    let p5 = package(&server.key, "5.0.0", dir);
    let r5 = server.publish(&p5).await;
    let sha5 = r5["sha256"].as_str().unwrap().to_string();
    let bytes = std::fs::read(&p5).unwrap();
    std::fs::create_dir_all(inst.join("downloads")).unwrap();
    std::fs::write(inst.join(format!("downloads/{sha5}.part")), &bytes[..bytes.len() / 2]).unwrap();
    let mut j: Value = serde_json::from_slice(&std::fs::read(inst.join("journal.json")).unwrap()).unwrap();
    j["step"] = serde_json::json!({"step": "downloading", "update_id": "upd_5", "version": "5.0.0"});
    std::fs::write(inst.join("journal.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    write_grant(&inst, "upd_5", "5.0.0", &sha5, bytes.len() as u64, "update");
    let mut up = UpdaterProcess::start(&inst, &[]);
    let r = report_for(&inst, "upd_5").await;
    assert_eq!(r["outcome"], "succeeded", "{r} {}", up.log());
    assert_eq!(current(&inst).as_deref(), Some("5.0.0"));
    assert!(!inst.join(format!("downloads/{sha5}.part")).exists());
    reports_version(&server, &id, "5.0.0").await;
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_rollbacks_refusals_and_crash_recovery_sqlite() {
    updates(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_rollbacks_refusals_and_crash_recovery_postgres() {
    updates(Backend::Postgres).await;
}
