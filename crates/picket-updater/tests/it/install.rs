//! `picket-updater install` and `run`: a quiet install activates the real sensor, which then
//! heartbeats through the supervisor; refused packages leave nothing installed; without
//! `--package` the install fetches the current release (waiting for the first publish keeps
//! the activated identity, a tampered release is refused). (The watchdog is tested end to end
//! in `update`, with the health issue it raises.)

use std::time::Duration;

use crate::harness::*;

async fn install_and_run(backend: Backend) {
    let server = Server::start(backend).await;
    let (id, activation) = server.onboard("dc-updater-1").await;
    let pkg = package(&server.key, "1.0.0", server.dir.path());
    let inst = server.dir.path().join("inst");
    let out = try_install(&activation, &pkg, &inst);
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
    // A second `run` on the same dir is refused and the first one's sensor stays the only one.
    let mut second = std::process::Command::new(UPDATER)
        .args(["run", "--install-dir", inst.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a second picket-updater run");
    let exited =
        wait_for(Duration::from_secs(20), "the second run to give up", async || second.try_wait().expect("try_wait"))
            .await;
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!exited.success(), "a second run is refused: {err}");
    assert!(err.contains("only one `picket-updater run` may supervise an install dir"), "{err}");
    assert_eq!(sensor_processes(&inst).len(), 1, "one sensor process");
    // An install whose activation fails (the token was used above) leaves nothing behind, so
    // it can be run again once the cause is fixed: again it fails at the activation.
    let inst2 = server.dir.path().join("inst2");
    for attempt in ["first", "second"] {
        let out = try_install(&activation, &pkg, &inst2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{attempt}: a used activation token is refused");
        assert!(err.contains("activating the sensor failed") && err.contains("nothing was left installed"), "{err}");
        nothing_installed(&inst2, attempt);
    }
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
        let out = try_install(&activation, pkg, &inst);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: refused");
        assert!(err.contains("refusing the package"), "{why}: {err}");
        assert!(current(&inst).is_none(), "{why}: no current");
        assert!(!inst.join("journal.json").exists() && !inst.join("state/sensor.json").exists(), "{why}");
        let left: Vec<_> =
            std::fs::read_dir(&inst).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{why}: nothing extracted: {left:?}");
    }
}

/// `picket-updater install --quiet` with no `--package`.
fn install_current(activation: &std::path::Path, inst: &std::path::Path) -> std::process::Output {
    updater(&[
        "install",
        "--quiet",
        "--activation-file",
        activation.to_str().unwrap(),
        "--install-dir",
        inst.to_str().unwrap(),
    ])
}

/// What is in `downloads/` (a fetched package is not kept).
fn downloads(inst: &std::path::Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(inst.join("downloads")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default()
}

/// The sensor heartbeats `version`, running, through `picket-updater run`; then stops.
async fn runs_version(server: &Server, id: &str, inst: &std::path::Path, version: &str) {
    let mut up = UpdaterProcess::start(inst, &[]);
    wait_for(Duration::from_secs(60), &format!("the sensor heartbeats running {version}"), async || {
        let v = server.sensor(id).await;
        (v["version"] == version && v["service_status"] == "running").then_some(())
    })
    .await;
    up.stop();
}

async fn install_fetches_the_current_release(backend: Backend) {
    let server = Server::start(backend).await;
    let dir = server.dir.path();
    server.publish(&package(&server.key, "1.0.0", dir)).await;
    server.publish(&package(&server.key, "1.1.0", dir)).await;
    let (id, activation) = server.onboard("dc-fetch-1").await;
    let inst = dir.join("inst");
    let out = install_current(&activation, &inst);
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "--quiet prints nothing: {out:?}");
    assert_eq!(current(&inst).as_deref(), Some("1.1.0"), "the current release");
    assert!(inst.join("1.1.0/bin/picket-sensor").is_file());
    assert!(!inst.join("1.0.0").exists(), "only the current release is installed");
    assert!(inst.join("state/sensor.json").is_file(), "activated");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(inst.join("state/identity/key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is the sensor's alone");
    }
    assert!(downloads(&inst).is_empty(), "the fetched package is not kept: {:?}", downloads(&inst));
    runs_version(&server, &id, &inst, "1.1.0").await;
    // The sensor's own status names the identity the updater made and activated.
    let cert = std::fs::read_to_string(inst.join("state/identity/cert.pem")).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_without_package_fetches_the_current_release_sqlite() {
    install_fetches_the_current_release(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_without_package_fetches_the_current_release_postgres() {
    install_fetches_the_current_release(Backend::Postgres).await;
}

/// Nothing is installed until a good release is published; the identity activated by the
/// first attempt is the one the finished install runs with.
fn nothing_installed(inst: &std::path::Path, why: &str) {
    assert!(current(inst).is_none(), "{why}: no current");
    assert!(!inst.join("journal.json").exists() && !inst.join("updater.json").exists(), "{why}: no journal");
    assert!(!inst.join("state/sensor.json").exists(), "{why}: the sensor's activation is not recorded yet");
    let versions: Vec<_> = std::fs::read_dir(inst)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "state" && n != "downloads" && n != "updater.lock")
        .collect();
    assert!(versions.is_empty(), "{why}: nothing extracted: {versions:?}");
    assert!(downloads(inst).is_empty(), "{why}: no download kept: {:?}", downloads(inst));
}

async fn install_waits_for_a_good_release(backend: Backend) {
    let server = Server::start(backend).await;
    let dir = server.dir.path();
    let (id, activation) = server.onboard("dc-fetch-2").await;
    let inst = dir.join("inst");
    let out = install_current(&activation, &inst);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no release: refused");
    assert!(
        err.contains("no release is published on the control plane yet")
            && err.contains("picket release publish")
            && err.contains("--package"),
        "a clear error: {err}"
    );
    nothing_installed(&inst, "no release");
    let cert = std::fs::read_to_string(inst.join("state/identity/cert.pem")).expect("the activated identity is kept");
    assert_ne!(server.sensor(&id).await["sensor_status"], "pending_activation", "the token is consumed");

    // A current release whose stored bytes were altered: refused, nothing installed.
    let bad = server.publish(&package(&server.key, "1.0.0", dir)).await;
    server.db().await.tamper_package(bad["sha256"].as_str().unwrap()).await;
    let out = install_current(&activation, &inst);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tampered: refused");
    assert!(err.contains("refusing the package"), "{err}");
    nothing_installed(&inst, "tampered");

    // A good release: the same command finishes, with the identity activated the first time.
    server.publish(&package(&server.key, "1.0.1", dir)).await;
    let out = install_current(&activation, &inst);
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(current(&inst).as_deref(), Some("1.0.1"));
    assert!(inst.join("state/sensor.json").is_file(), "activated");
    assert_eq!(std::fs::read_to_string(inst.join("state/identity/cert.pem")).unwrap(), cert, "the same identity");
    runs_version(&server, &id, &inst, "1.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_without_package_waits_for_a_good_release_sqlite() {
    install_waits_for_a_good_release(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_without_package_waits_for_a_good_release_postgres() {
    install_waits_for_a_good_release(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_without_package_refuses_a_locally_managed_sensor() {
    let server = Server::start(Backend::Sqlite).await;
    let body = serde_json::json!({"name": "ot-local-1", "type": "ot_network", "domain": "plant.example.com",
        "mode": "locally_managed"});
    let (status, v) = server.call(reqwest::Method::POST, "/api/v1/sensors", Some(body)).await;
    assert_eq!(status, 201, "onboard: {v}");
    let id = v["id"].as_str().unwrap();
    let (status, file) =
        server.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/activation-file"), None).await;
    assert_eq!(status, 200, "{file}");
    let activation = server.dir.path().join("local.activation.json");
    std::fs::write(&activation, serde_json::to_vec(&file).unwrap()).unwrap();
    let inst = server.dir.path().join("inst-local");
    let out = install_current(&activation, &inst);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("locally managed") && err.contains("--package PKG"), "{err}");
    assert!(current(&inst).is_none() && !inst.join("state/identity").exists(), "nothing made");
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
