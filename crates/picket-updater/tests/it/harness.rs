//! Real processes for the end-to-end tests of `picket-updater`: `picket serve` and
//! `picket-sensor` (built once per run with the same cargo and target dir, as the sensor's
//! own end-to-end tests do), packages built and signed with `picket-package` whose entry
//! point is the real sensor binary (stripped, as a release build would be), a small REST
//! helper, read access to the server's database (the rollout's grant records), a throttling
//! TCP proxy in front of the sensor listener (to catch an updater mid-download), the host's
//! sensor processes as `/proc` shows them, polling with deadlines.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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

/// The sensor binary that goes into packages: the debug build without its debug info (a
/// fifth of the size, so every download, verification and extraction is quicker), or the
/// build itself where `strip` is missing.
pub fn packaged_sensor() -> PathBuf {
    static STRIPPED: OnceLock<PathBuf> = OnceLock::new();
    STRIPPED
        .get_or_init(|| {
            let src = bins().1;
            let tmp = src.with_file_name(format!("picket-sensor-updater-e2e.{}.tmp", std::process::id()));
            let out = src.with_file_name("picket-sensor-updater-e2e");
            let ok = Command::new("strip")
                .arg("-o")
                .arg(&tmp)
                .arg(&src)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                && std::fs::rename(&tmp, &out).is_ok();
            if ok { out } else { src }
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
    package_with_files(key, v, dir, 0)
}

/// The input directory `package_with_files` packed for version `v`.
pub fn package_input(dir: &Path, v: &str) -> PathBuf {
    dir.join(format!("input-{v}"))
}

/// `package`, plus `files` small data files under `data/` (each synced on extraction, so
/// extracting a few thousand of them takes seconds: long enough to kill the updater in it).
pub fn package_with_files(key: &SecretKey, v: &str, dir: &Path, files: usize) -> PathBuf {
    let input = package_input(dir, v);
    std::fs::create_dir_all(input.join("bin")).expect("input dir");
    for i in 0..files {
        let sub = input.join(format!("data/{:02}", i % 64));
        std::fs::create_dir_all(&sub).expect("data dir");
        std::fs::write(sub.join(format!("file-{i:05}")), format!("data file {i} of version {v}\n")).expect("data file");
    }
    std::fs::copy(packaged_sensor(), input.join("bin/picket-sensor")).expect("copy the sensor");
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

/// A running `picket serve` trusting two release keys; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub api: String,
    /// The sensor listener (mutual TLS), `127.0.0.1:<port>`.
    pub sensor_addr: std::net::SocketAddr,
    /// Scratch space.
    pub dir: tempfile::TempDir,
    /// The release key the server trusts.
    pub key: SecretKey,
    /// A second key the server trusts too (activation files carry both).
    pub other_key: SecretKey,
    /// Where its database is.
    pub database: Database,
    http: reqwest::Client,
}

/// Where a test server keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// `<data-dir>/picket.db`.
    Sqlite(PathBuf),
    /// The URL of its fresh PostgreSQL database.
    Postgres(String),
}

impl Server {
    /// Starts `picket serve` on `backend` and waits until healthy.
    pub async fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[]).await
    }

    /// Starts `picket serve` on `backend` with `extra` arguments (shortened timings).
    pub async fn start_with(backend: Backend, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = SecretKey::generate().expect("key");
        let other_key = SecretKey::generate().expect("key");
        let pub_path = dir.path().join("release.pub");
        std::fs::write(&pub_path, key.public().to_base64()).expect("pub key");
        let other_pub_path = dir.path().join("other-release.pub");
        std::fs::write(&other_pub_path, other_key.public().to_base64()).expect("pub key");
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
            .arg("--release-key-pub")
            .arg(&other_pub_path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("PICKET_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.err")).expect("stderr file"));
        let database = match backend {
            Backend::Sqlite => Database::Sqlite(dir.path().join("data/picket.db")),
            Backend::Postgres => Database::Postgres(picket_testkit::pg::fresh_database_url().await),
        };
        if let Database::Postgres(url) = &database {
            cmd.arg("--database-url").arg(url);
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
        Server {
            child,
            api: format!("http://127.0.0.1:{port}"),
            sensor_addr: std::net::SocketAddr::from(([127, 0, 0, 1], sensor_port)),
            dir,
            key,
            other_key,
            database,
            http: reqwest::Client::new(),
        }
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
        self.onboard_with(name, false).await
    }

    /// Onboards a sensor with `delayed_update`; returns its id and its activation file.
    pub async fn onboard_with(&self, name: &str, delayed_update: bool) -> (String, PathBuf) {
        let body = serde_json::json!({"name": name, "type": "domain_controller", "domain": "corp.example.com",
            "mode": "cloud_connected", "delayed_update": delayed_update});
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

    /// The open health issues of `kind` of sensor `id`.
    pub async fn open_issues(&self, id: &str, kind: &str) -> Vec<Value> {
        let (status, v) = self.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/health-issues"), None).await;
        assert_eq!(status, 200, "health issues: {v}");
        v["items"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["kind"] == kind && i["status"] == "open").cloned().collect())
            .unwrap_or_default()
    }

    /// A connection to the server's database.
    pub async fn db(&self) -> Db {
        Db::connect(&self.database).await
    }
}

/// One row of `update_grants`, as the rollout job and the heartbeat hook left it.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// `upd_...`.
    pub update_id: String,
    /// The sensor it went to.
    pub sensor_id: String,
    /// The version granted.
    pub version: String,
    /// `granted`, `succeeded` or `failed`.
    pub state: String,
    /// When it was given (ms).
    pub granted_at: i64,
    /// When it finished (ms).
    pub finished_at: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Direct access to the server's database, for reading the rollout's records and for the few
/// cases where a test plays a compromised control plane (altered package bytes, altered grant).
pub enum Db {
    /// SQLite (WAL: readable and writable beside the server, which waits on its lock).
    Sqlite(sqlx::SqlitePool),
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
}

macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            Db::Sqlite($p) => $body,
            Db::Postgres($p) => $body,
        }
    };
}

macro_rules! grant_rows {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|r| {
                use sqlx::Row;
                GrantRow {
                    update_id: r.get("update_id"),
                    sensor_id: r.get("sensor_id"),
                    version: r.get("version"),
                    state: r.get("state"),
                    granted_at: r.get("granted_at"),
                    finished_at: r.get("finished_at"),
                    error: r.get("error"),
                }
            })
            .collect::<Vec<GrantRow>>()
    };
}

const GRANTS_OF: &str = "SELECT update_id, sensor_id, version, state, granted_at, finished_at, error     FROM update_grants WHERE rollout_version = $1 ORDER BY granted_at, update_id";
const GRANT_BY_ID: &str = "SELECT update_id, sensor_id, version, state, granted_at, finished_at, error     FROM update_grants WHERE update_id = $1";

impl Db {
    /// Connects to `database`.
    pub async fn connect(database: &Database) -> Db {
        match database {
            Database::Sqlite(path) => {
                let opts =
                    sqlx::sqlite::SqliteConnectOptions::new().filename(path).busy_timeout(Duration::from_secs(30));
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .expect("open the server's SQLite database");
                Db::Sqlite(pool)
            }
            Database::Postgres(url) => Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .expect("connect to the server's PostgreSQL database"),
            ),
        }
    }

    /// Every grant of the rollout of `version`, in the order given.
    pub async fn grants(&self, version: &str) -> Vec<GrantRow> {
        on_pool!(self, p => {
            let rows = sqlx::query(GRANTS_OF).bind(version).fetch_all(p).await.expect("read grants");
            grant_rows!(rows)
        })
    }

    /// The grant `update_id`.
    pub async fn grant(&self, update_id: &str) -> GrantRow {
        on_pool!(self, p => {
            let rows = sqlx::query(GRANT_BY_ID).bind(update_id).fetch_all(p).await.expect("read a grant");
            grant_rows!(rows).pop().expect("the grant exists")
        })
    }

    /// When the rollout of `version` started (ms).
    pub async fn rollout_started_at(&self, version: &str) -> i64 {
        on_pool!(self, p => {
            use sqlx::Row;
            let row = sqlx::query("SELECT started_at FROM rollouts WHERE version = $1")
                .bind(version)
                .fetch_one(p)
                .await
                .expect("the rollout exists");
            row.get::<i64, _>("started_at")
        })
    }

    /// Flips one byte in the middle of the first stored chunk of package `sha256`, as an
    /// attacker with write access to the storage (or a bad disk) would.
    pub async fn tamper_package(&self, sha256: &str) {
        on_pool!(self, p => {
            use sqlx::Row;
            let row = sqlx::query("SELECT data FROM release_chunks WHERE sha256 = $1 AND seq = 0")
                .bind(sha256)
                .fetch_one(p)
                .await
                .expect("the package's first chunk");
            let mut data: Vec<u8> = row.get("data");
            let n = data.len() / 2;
            data[n] ^= 0x5a;
            let done = sqlx::query("UPDATE release_chunks SET data = $2 WHERE sha256 = $1 AND seq = 0")
                .bind(sha256)
                .bind(data)
                .execute(p)
                .await
                .expect("alter the chunk");
            assert_eq!(done.rows_affected(), 1);
        })
    }

    /// Rewrites the version of the open grant `update_id`, as a compromised control plane would.
    pub async fn rewrite_grant_version(&self, update_id: &str, version: &str) {
        on_pool!(self, p => {
            let done = sqlx::query("UPDATE update_grants SET version = $2 WHERE update_id = $1 AND state = 'granted'")
                .bind(update_id)
                .bind(version)
                .execute(p)
                .await
                .expect("rewrite the grant");
            assert_eq!(done.rows_affected(), 1, "the grant is still open");
        })
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

/// `picket-updater install --quiet` of `pkg` into `inst`, whatever its outcome.
pub fn try_install(activation: &Path, pkg: &Path, inst: &Path) -> Output {
    Command::new(UPDATER)
        .arg("install")
        .arg("--quiet")
        .arg("--activation-file")
        .arg(activation)
        .arg("--install-dir")
        .arg(inst)
        .arg("--package")
        .arg(pkg)
        .stdin(Stdio::null())
        .output()
        .expect("run picket-updater install")
}

/// `picket-updater install --quiet` of `pkg` into `inst`, which must succeed.
pub fn install(activation: &Path, pkg: &Path, inst: &Path) {
    let out = try_install(activation, pkg, inst);
    assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
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

/// `state/update/<name>.json`, parsed.
pub fn update_file(dir: &Path, name: &str) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join(format!("state/update/{name}.json"))).ok()?).ok()
}

/// A TCP proxy on loopback in front of `target` (the server's sensor listener): the bytes pass
/// through unchanged (TLS end to end between the sensor or updater and the server), the
/// server's side at a limited rate when one is set, and it counts, per connection, the bytes
/// it passed from the server to the client. Stops accepting on drop.
pub struct Proxy {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    rate: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<Arc<AtomicU64>>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0`, forwarding each connection to `target`; no rate limit yet.
    pub fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let rate = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<Arc<AtomicU64>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, c, st) = (rate.clone(), conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let counter = Arc::new(AtomicU64::new(0));
                c.lock().expect("proxy connections").push(counter.clone());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_in, &mut server_out);
                    let _ = server_out.shutdown(std::net::Shutdown::Write);
                });
                let r = r.clone();
                std::thread::spawn(move || pump_down(server, client, &r, &counter));
            }
        });
        Proxy { addr, rate, conns, stop }
    }

    /// Limits what each connection passes from the server to `bytes_per_second` (0: no limit).
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// How many connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.lock().expect("proxy connections").len()
    }

    /// The bytes passed from the server to the client on each connection accepted after the
    /// first `skip`.
    pub fn downstream_since(&self, skip: usize) -> Vec<u64> {
        let conns = self.conns.lock().expect("proxy connections");
        conns.iter().skip(skip).map(|c| c.load(Ordering::SeqCst)).collect()
    }
}

/// Server to client: read, write, count, and, when a rate is set, wait as long as those bytes
/// take at that rate.
fn pump_down(mut from: TcpStream, mut to: TcpStream, rate: &AtomicU64, count: &AtomicU64) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let r = rate.load(Ordering::SeqCst);
        let chunk =
            if r == 0 { buf.len() } else { usize::try_from(r / 20).unwrap_or(usize::MAX).clamp(512, buf.len()) };
        let n = match from.read(&mut buf[..chunk]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
        if r > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The live (not zombie) processes whose command line is `... run ... --state-dir <inst>/state`:
/// the sensors of the install dir `inst`, whoever started them.
pub fn sensor_processes(inst: &Path) -> Vec<u32> {
    let state = inst.join("state");
    let state = state.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) == Some(&&b"run"[..])
            && args.windows(2).any(|w| w[0] == b"--state-dir" && w[1] == state)
            && proc_stat(pid).is_some_and(|(st, _)| st != "Z")
        {
            pids.push(pid);
        }
    }
    pids
}

/// State letter and parent pid of `pid`, from `/proc/<pid>/stat`.
pub fn proc_stat(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.to_string();
    Some((state, rest.next()?.parse().ok()?))
}

/// `journal.json` of `inst`, parsed (`None` while it is being replaced or missing).
pub fn journal(inst: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(inst.join("journal.json")).ok()?).ok()
}

/// The `.<version>.partial-*` extraction dirs in `inst`.
pub fn partial_dirs(inst: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(inst) else { return Vec::new() };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".partial-")))
        .collect()
}

/// Regular files under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(root, &p, out),
                Ok(t) if t.is_file() => out.push(p.strip_prefix(root).expect("under root").to_path_buf()),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
