//! Real processes for the end-to-end tests of `picket-updater`: `picket serve` and
//! `picket-sensor` (built once per run with the same cargo and target dir, as the sensor's
//! own end-to-end tests do), packages built and signed with `picket-package` whose entry
//! point is the real sensor binary, a small REST helper, polling with deadlines.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use picket_domain::{Timestamp, Version};
use picket_package::{BuildOptions, SecretKey};
use serde_json::Value;

/// The updater under test.
pub const UPDATER: &str = env!("CARGO_BIN_EXE_picket-updater");

/// The admin token the test servers start with.
pub const ADMIN_TOKEN: &str = "pkt_updater_e2e_admin_token_0123456789abcdef";

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data dir.
    Sqlite,
    /// A fresh database of the throw-away PostgreSQL cluster.
    Postgres,
}

/// `(picket, picket-sensor)`, built once per test run with the same cargo and target dir.
pub fn bins() -> (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "picket",
            "--bin",
            "picket",
            "-p",
            "picket-sensor",
            "--bin",
            "picket-sensor",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .stdin(Stdio::null());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().is_ok_and(|s| s.success()), "cannot build picket and picket-sensor");
        let (p, s) = (profile_dir.join("picket"), profile_dir.join("picket-sensor"));
        assert!(p.exists() && s.exists(), "binaries missing after building them");
        (p, s)
    })
    .clone()
}

/// Now as a `Timestamp`.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    Timestamp(ms as i64)
}

/// Builds a package of version `v` whose entry point `bin/picket-sensor` is the real sensor.
pub fn package(key: &SecretKey, v: &str, dir: &Path) -> PathBuf {
    let input = dir.join(format!("input-{v}"));
    std::fs::create_dir_all(input.join("bin")).expect("input dir");
    std::fs::copy(bins().1, input.join("bin/picket-sensor")).expect("copy the sensor");
    std::fs::write(input.join("README"), format!("picket sensor {v}\n")).expect("readme");
    let out = dir.join(format!("picket-sensor-{v}.pkg"));
    let opts = BuildOptions {
        version: v.parse::<Version>().expect("version"),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now(),
        expires_at: Timestamp(now().0 + 86_400_000),
        min_updater_version: "0.1.0".parse().expect("version"),
        compression_level: 1,
    };
    picket_package::build(&input, &opts, key, &out).expect("build the package");
    out
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// Polls `f` every 100 ms until it gives `Some`, panicking with `what` after `timeout`.
pub async fn wait_for<T>(timeout: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `picket serve` trusting one release key; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub api: String,
    /// Scratch space.
    pub dir: tempfile::TempDir,
    /// The release key the server trusts.
    pub key: SecretKey,
    http: reqwest::Client,
}

impl Server {
    /// Starts `picket serve` on `backend` and waits until healthy.
    pub async fn start(backend: Backend) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = SecretKey::generate().expect("key");
        let pub_path = dir.path().join("release.pub");
        std::fs::write(&pub_path, key.public().to_base64()).expect("pub key");
        let (port, sensor_port) = (free_port(), free_port());
        let mut cmd = Command::new(bins().0);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PICKET_") && k != "PICKET_TEST_DATABASE_URL" {
                cmd.env_remove(&k);
            }
        }
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--sensor-listen", &format!("127.0.0.1:{sensor_port}")])
            .arg("--release-key-pub")
            .arg(&pub_path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("PICKET_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.err")).expect("stderr file"));
        if backend == Backend::Postgres {
            cmd.arg("--database-url").arg(picket_testkit::pg::fresh_database_url().await);
        }
        let mut child = cmd.spawn().expect("picket serve starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("picket serve exited with {status}");
            }
            assert!(Instant::now() < deadline, "picket serve not healthy after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Server { child, api: format!("http://127.0.0.1:{port}"), dir, key, http: reqwest::Client::new() }
    }

    /// A REST call with the admin token; returns the status and the JSON body (or `Null`).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.api)).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("REST call");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("REST body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Publishes a package; returns the release view.
    pub async fn publish(&self, pkg: &Path) -> Value {
        let resp = self
            .http
            .post(format!("{}/api/v1/releases", self.api))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/octet-stream")
            .body(std::fs::read(pkg).expect("package"))
            .send()
            .await
            .expect("publish");
        let status = resp.status().as_u16();
        let v: Value = serde_json::from_str(&resp.text().await.expect("body")).unwrap_or(Value::Null);
        assert!(status == 201 || status == 200, "publish: {status} {v}");
        v
    }

    /// Onboards a sensor; returns its id and the path of its activation file.
    pub async fn onboard(&self, name: &str) -> (String, PathBuf) {
        let body = serde_json::json!({"name": name, "type": "domain_controller", "domain": "corp.example.com",
            "mode": "cloud_connected"});
        let (status, v) = self.call(reqwest::Method::POST, "/api/v1/sensors", Some(body)).await;
        assert_eq!(status, 201, "onboard: {v}");
        let id = v["id"].as_str().expect("sensor id").to_string();
        let (status, v) = self.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/activation-file"), None).await;
        assert_eq!(status, 200, "activation file: {v}");
        let path = self.dir.path().join(format!("{id}.activation.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json")).expect("write activation file");
        (id, path)
    }

    /// `GET /api/v1/sensors/{id}`.
    pub async fn sensor(&self, id: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}"), None).await;
        assert_eq!(status, 200, "get sensor: {v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `picket-updater ARGS` to completion.
pub fn updater(args: &[&str]) -> Output {
    Command::new(UPDATER).args(args).stdin(Stdio::null()).output().expect("run picket-updater")
}

/// A running `picket-updater run`; killed (with what it started) on drop.
pub struct UpdaterProcess {
    /// The child.
    pub child: Child,
    /// Its install dir.
    pub dir: PathBuf,
    /// Where it logs.
    pub log: PathBuf,
}

impl UpdaterProcess {
    /// `picket-updater run --install-dir DIR` with short timings and `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> UpdaterProcess {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.with_extension(format!("updater-{n}.log"));
        let child = Command::new(UPDATER)
            .arg("run")
            .arg("--install-dir")
            .arg(dir)
            .args(["--heartbeat-interval", "1s", "--poll-interval", "200ms", "--clearance-timeout", "30s"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::options().append(true).open(&log).expect("log"))
            .spawn()
            .expect("picket-updater run starts");
        UpdaterProcess { child, dir: dir.to_path_buf(), log }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash would: the sensor it started is left running.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let ok = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
        assert!(ok.success());
        let st = self.child.wait().expect("wait");
        assert!(st.success(), "picket-updater exits 0 on SIGTERM, got {st}: {}", self.log());
    }
}

/// The pid of the sensor the updater recorded, if it is running.
pub fn sensor_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("sensor.pid")).ok()?;
    let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?.to_string();
    (state != "Z").then_some(pid)
}

impl Drop for UpdaterProcess {
    fn drop(&mut self) {
        let pid = sensor_pid(&self.dir);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = pid {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

/// Where `current` points.
pub fn current(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("current")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// Writes a grant as the sensor would.
pub fn write_grant(dir: &Path, id: &str, version: &str, sha256: &str, size: u64, action: &str) {
    let g = serde_json::json!({"update_id": id, "version": version, "sha256": sha256, "size": size,
        "deadline": "2099-01-01T00:00:00Z", "action": action});
    let path = dir.join("state/update/grant.json");
    std::fs::write(path.with_extension("tmp"), serde_json::to_vec(&g).expect("json")).expect("grant");
    std::fs::rename(path.with_extension("tmp"), path).expect("grant");
}

/// `state/update/<name>.json`, parsed.
pub fn update_file(dir: &Path, name: &str) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join(format!("state/update/{name}.json"))).ok()?).ok()
}
