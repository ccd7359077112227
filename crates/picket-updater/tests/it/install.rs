//! `picket-updater install` and `run`: a quiet install activates the real sensor, which then
//! heartbeats through the supervisor; refused packages leave nothing installed. (The watchdog
//! is tested end to end in `update`, with the health issue it raises.)

use std::time::Duration;

use crate::harness::*;

async fn install_and_run(backend: Backend) {
    let server = Server::start(backend).await;
    let (id, activation) = server.onboard("dc-updater-1").await;
    let pkg = package(&server.key, "1.0.0", server.dir.path());
    let inst = server.dir.path().join("inst");
    let out = updater(&[
        "install",
        "--quiet",
        "--activation-file",
        activation.to_str().unwrap(),
        "--install-dir",
        inst.to_str().unwrap(),
        "--package",
        pkg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "--quiet prints nothing: {out:?}");
    assert_eq!(current(&inst).as_deref(), Some("1.0.0"));
    assert!(inst.join("1.0.0/bin/picket-sensor").is_file());
    assert!(inst.join("state/sensor.json").is_file(), "activated");
    let mut up = UpdaterProcess::start(&inst, &[]);
    let v = wait_for(Duration::from_secs(60), "the sensor heartbeats running 1.0.0", async || {
        let v = server.sensor(&id).await;
        (v["version"] == "1.0.0" && v["service_status"] == "running").then_some(v)
    })
    .await;
    assert!(v["last_seen_at"].is_string(), "{v}");
    // The updater marks the service running a moment after the sensor's first contact.
    wait_for(Duration::from_secs(30), "service.json says running", async || {
        update_file(&inst, "service").filter(|s| s["service_status"] == "running")
    })
    .await;
    // A sensor that dies is restarted.
    let pid = sensor_pid(&inst).expect("a sensor runs");
    std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap();
    wait_for(Duration::from_secs(30), "the sensor restarted", async || sensor_pid(&inst).filter(|p| *p != pid)).await;
    up.stop();
    assert_eq!(update_file(&inst, "service").unwrap()["service_status"], "stopped");
    assert_eq!(sensor_pid(&inst), None, "the sensor is stopped with the updater");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_activates_and_run_supervises_sqlite() {
    install_and_run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_activates_and_run_supervises_postgres() {
    install_and_run(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_packages_leave_nothing_installed() {
    let server = Server::start(Backend::Sqlite).await;
    let (_id, activation) = server.onboard("dc-refused").await;
    let dir = server.dir.path();
    let good = package(&server.key, "1.0.0", dir);
    let mut bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    bytes[n - 2048] ^= 0x40;
    let tampered = dir.join("tampered.pkg");
    std::fs::write(&tampered, bytes).unwrap();
    let other = picket_package::SecretKey::generate().unwrap();
    let unknown = package(&other, "1.0.1", &dir.join("other"));
    for (pkg, why) in [(&tampered, "tampered"), (&unknown, "unknown key")] {
        let inst = dir.join(format!("inst-{}", why.replace(' ', "-")));
        let out = updater(&[
            "install",
            "--quiet",
            "--activation-file",
            activation.to_str().unwrap(),
            "--install-dir",
            inst.to_str().unwrap(),
            "--package",
            pkg.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: refused");
        assert!(err.contains("refusing the package"), "{why}: {err}");
        assert!(current(&inst).is_none(), "{why}: no current");
        assert!(!inst.join("journal.json").exists() && !inst.join("state/sensor.json").exists(), "{why}");
        let left: Vec<_> =
            std::fs::read_dir(&inst).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{why}: nothing extracted: {left:?}");
    }
    // Without --package the install explains what to do.
    let out = updater(&[
        "install",
        "--quiet",
        "--activation-file",
        activation.to_str().unwrap(),
        "--install-dir",
        dir.join("inst-nopkg").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--package PKG is required"));
}

#[test]
fn help_documents_every_option() {
    let out = updater(&["install", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in ["--quiet", "--activation-file", "--install-dir", "--package", "--state-dir", "--service-user"] {
        assert!(text.contains(opt), "install --help names {opt}: {text}");
    }
    let out = updater(&["run", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in
        ["--install-dir", "--max-memory-percent", "--max-cpu-percent", "--watchdog-window", "--clearance-timeout"]
    {
        assert!(text.contains(opt), "run --help names {opt}: {text}");
    }
}
