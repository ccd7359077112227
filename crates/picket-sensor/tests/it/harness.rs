//! Real processes for the end-to-end tests: `picket serve` (the workspace's `picket` binary,
//! built on first use with the same cargo, so a `-p picket-sensor` run never tests a stale
//! server) and `picket-sensor` (this package's binary); a small REST helper; polling; test
//! notification receivers (a webhook receiver with the HMAC check, a TCP syslog collector).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// The sensor binary under test.
pub const SENSOR: &str = env!("CARGO_BIN_EXE_picket-sensor");

/// The admin token the test servers start with.
pub const ADMIN_TOKEN: &str = "pkt_sensor_e2e_admin_token_0123456789abcdef";

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data dir.
    Sqlite,
    /// A fresh database of the throw-away PostgreSQL cluster.
    Postgres,
}

/// The `picket` binary, made fresh once per test run with the same cargo and target dir.
///
/// First `cargo test --workspace --no-run`: under `./scripts/test.sh` (the CI command) that is
/// exactly the build that just ran, so it is a no-op and the binary is the one built with the
/// workspace's feature set; `cargo build -p picket` alone would resolve features differently
/// and rebuild half the dependency tree. If the workspace's tests do not build (work in progress
/// elsewhere), fall back to building just the binary.
pub fn picket_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // <target>/<profile>/deps/integration-<hash>
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = |args: &[&str]| {
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
            cmd.args(args)
                .args(["--quiet", "--target-dir"])
                .arg(&target_dir)
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
                .stdin(Stdio::null());
            if release {
                cmd.arg("--release");
            }
            cmd.status().is_ok_and(|s| s.success())
        };
        let built = cargo(&["test", "--workspace", "--no-run"]) || cargo(&["build", "-p", "picket", "--bin", "picket"]);
        assert!(built, "cannot build the picket binary (cargo build -p picket failed)");
        let bin = profile_dir.join("picket");
        assert!(bin.exists(), "{} missing after building it", bin.display());
        bin
    })
    .clone()
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

/// A running `picket serve`; killed on drop.
pub struct Server {
    child: Child,
    database_url: Option<String>,
    port: u16,
    disconnect_after: String,
    extra_args: Vec<String>,
    runs: u32,
    /// `http://127.0.0.1:<port>`.
    pub api: String,
    /// The sensor listener's port.
    pub sensor_port: u16,
    /// Data dir and scratch space.
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// `picket serve` with its data in `dir` on the given ports (and `extra` arguments); run `run`
/// logs to `serve-<run>.err`.
fn spawn_server(
    dir: &Path,
    (port, sensor_port): (u16, u16),
    disconnect_after: &str,
    extra: &[String],
    db: Option<&str>,
    run: u32,
) -> Child {
    let mut cmd = Command::new(picket_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PICKET_") && k != "PICKET_TEST_DATABASE_URL" {
            cmd.env_remove(&k);
        }
    }
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--sensor-listen", &format!("127.0.0.1:{sensor_port}")])
        .args(["--disconnect-after", disconnect_after])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env("PICKET_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("serve-{run}.out"))).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join(format!("serve-{run}.err"))).expect("stderr file"));
    if let Some(url) = db {
        cmd.arg("--database-url").arg(url);
    }
    cmd.spawn().expect("picket serve starts")
}

impl Server {
    /// Starts `picket serve` on `backend` with `disconnect_after`, and waits until healthy.
    pub async fn start(backend: Backend, disconnect_after: &str) -> Server {
        Server::start_with_args(backend, disconnect_after, &[]).await
    }

    /// `start` with more `picket serve` arguments (e.g. `--release-key-pub FILE`).
    pub async fn start_with_args(backend: Backend, disconnect_after: &str, extra: &[String]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(picket_testkit::pg::fresh_database_url().await),
        };
        let (port, sensor_port) = (free_port(), free_port());
        let child = spawn_server(dir.path(), (port, sensor_port), disconnect_after, extra, database_url.as_deref(), 0);
        let mut server = Server {
            child,
            database_url,
            port,
            disconnect_after: disconnect_after.to_string(),
            extra_args: extra.to_vec(),
            runs: 0,
            api: format!("http://127.0.0.1:{port}"),
            sensor_port,
            dir,
            http: reqwest::Client::new(),
        };
        server.wait_healthy().await;
        server
    }

    /// Stops the server with SIGTERM and checks it exits 0; it stays down until `start_again`.
    pub fn stop(&mut self) {
        let ok = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
        assert!(ok.success(), "kill -TERM picket serve");
        let status = self.child.wait().expect("wait for picket serve");
        assert!(status.success(), "picket serve exits 0 on SIGTERM, got {status}: {}", self.log());
    }

    /// Starts it again after `stop`, on the same ports and data.
    pub async fn start_again(&mut self) {
        self.runs += 1;
        let db = self.database_url.as_deref();
        let ports = (self.port, self.sensor_port);
        self.child = spawn_server(self.dir.path(), ports, &self.disconnect_after, &self.extra_args, db, self.runs);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(self.port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("picket serve exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "picket serve not healthy after 60 s: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's stderr so far (its latest run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("serve-{}.err", self.runs))).unwrap_or_default()
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

    /// Onboards a domain controller named `name`; returns its id.
    pub async fn onboard(&self, name: &str) -> String {
        self.onboard_mode(name, "cloud_connected").await
    }

    /// Onboards a domain controller named `name` in `mode`; returns its id.
    pub async fn onboard_mode(&self, name: &str, mode: &str) -> String {
        let body =
            serde_json::json!({"name": name, "type": "domain_controller", "domain": "corp.example.com", "mode": mode});
        let (status, v) = self.call(reqwest::Method::POST, "/api/v1/sensors", Some(body)).await;
        assert_eq!(status, 201, "onboard: {v}");
        v["id"].as_str().expect("sensor id").to_string()
    }

    /// Downloads the sensor's activation file into the scratch dir; returns its path.
    pub async fn activation_file(&self, id: &str) -> PathBuf {
        let (status, v) = self.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/activation-file"), None).await;
        assert_eq!(status, 200, "activation file: {v}");
        let path = self.dir.path().join(format!("{id}.activation.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json")).expect("write activation file");
        path
    }

    /// The PostgreSQL URL it runs on (`None`: SQLite, in `<dir>/data/picket.db`).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
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

/// `picket-sensor ARGS` to completion.
pub fn sensor_cmd(args: &[&str]) -> Output {
    Command::new(SENSOR).args(args).env("RUST_LOG", "info").stdin(Stdio::null()).output().expect("run picket-sensor")
}

/// A running `picket-sensor run`; killed on drop.
pub struct SensorProcess {
    /// The child.
    pub child: Child,
    log: PathBuf,
}

impl SensorProcess {
    /// `picket-sensor run --state-dir STATE --heartbeat-interval 300ms`, logging beside the state dir.
    pub fn run(state: &Path, run: u32) -> SensorProcess {
        SensorProcess::run_with(state, run, &[])
    }

    /// `run` with more arguments.
    pub fn run_with(state: &Path, run: u32, extra: &[&str]) -> SensorProcess {
        let log = state.with_extension(format!("run{run}.log"));
        let child = Command::new(SENSOR)
            .args(["run", "--heartbeat-interval", "300ms", "--max-backoff", "1s", "--state-dir"])
            .arg(state)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sensor log"))
            .spawn()
            .expect("picket-sensor run starts");
        SensorProcess { child, log }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`-KILL`, `-TERM`) to it.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").arg(signal).arg(self.child.id().to_string()).status().expect("kill");
        assert!(ok.success(), "kill {signal} failed");
    }
}

impl Drop for SensorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `picket-sensor status --json --state-dir STATE`.
pub fn sensor_status(state: &Path) -> Value {
    let out = sensor_cmd(&["status", "--json", "--state-dir", state.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// Presents one certificate and key on every TLS connection.
#[derive(Debug)]
struct Present(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// One raw mutual-TLS request to the sensor listener presenting `cert_pem` with `key_pem`;
/// the HTTP status, or the error of a refused handshake.
pub async fn raw_call(
    port: u16,
    ca_pem: &str,
    (cert_pem, key_pem): (&str, &str),
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<u16> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let signer = provider.key_provider.load_private_key(key).expect("signing key");
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM")).expect("CA");
    let certified = rustls::sign::CertifiedKey::new(vec![cert], signer);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(std::sync::Arc::new(Present(std::sync::Arc::new(certified))));
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1").expect("server name").to_owned();
    let mut tls = connector.connect(name, tcp).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(status)
}

/// A raw heartbeat with the identity `(cert, key)`: its HTTP status.
pub async fn raw_heartbeat(port: u16, ca_pem: &str, id: (&str, &str)) -> u16 {
    let body = r#"{"service_status":"running","version":"0.1.0"}"#;
    raw_call(port, ca_pem, id, "POST", "/sensor/v1/heartbeat", body).await.expect("TLS handshake")
}

/// The CA certificate PEM from an activation file.
pub fn ca_of(activation_file: &Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(activation_file).expect("activation file")).expect("JSON");
    v["ca_cert_pem"].as_str().expect("ca_cert_pem").to_string()
}

/// The current identity of a state dir: `(cert.pem, key.pem)`.
pub fn identity_of(state: &Path) -> (String, String) {
    (
        std::fs::read_to_string(state.join("identity/cert.pem")).expect("cert.pem"),
        std::fs::read_to_string(state.join("identity/key.pem")).expect("key.pem"),
    )
}

/// `picket-sensor ARGS` that must succeed; its stdout.
pub fn sensor_ok(args: &[&str]) -> String {
    let out = sensor_cmd(args);
    assert!(
        out.status.success(),
        "picket-sensor {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `picket-sensor ARGS` that must fail; its stderr.
pub fn sensor_fails(args: &[&str]) -> String {
    let out = sensor_cmd(args);
    assert!(
        !out.status.success(),
        "picket-sensor {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// HMAC-SHA256 (RFC 2104) from SHA-256, as a receiver without our code would compute it.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// One received webhook request: lower-case headers and the raw body.
pub type Request = (HashMap<String, String>, Vec<u8>);

/// A minimal HTTP/1.1 receiver on 127.0.0.1:0 answering 204 and recording each request.
pub async fn receiver() -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(conn);
                let mut headers = HashMap::new();
                let mut line = String::new();
                conn.read_line(&mut line).await.ok()?; // request line
                loop {
                    line.clear();
                    conn.read_line(&mut line).await.ok()?;
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':')?;
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers.get("content-length")?.parse().ok()?;
                let mut body = vec![0u8; len];
                conn.read_exact(&mut body).await.ok()?;
                sink.lock().await.push((headers, body));
                let mut conn = conn.into_inner();
                conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await.ok()?;
                conn.shutdown().await.ok()
            });
        }
    });
    (url, got)
}

/// Whether `headers` carry a valid `X-Picket-Signature` of `body` under `secret`
/// (`sha256=<hex HMAC-SHA256 of "<X-Picket-Timestamp>.<body>">`).
pub fn signature_ok(headers: &HashMap<String, String>, body: &[u8], secret: &str) -> bool {
    let Some(ts) = headers.get("x-picket-timestamp") else { return false };
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &signed)));
    headers.get("x-picket-signature") == Some(&expected)
}

/// A TCP syslog collector on 127.0.0.1:0 reading RFC 6587 octet-counted frames (`LEN SP MSG`)
/// from any number of connections; returns its `tcp://` URL and the messages received.
pub async fn syslog_tcp_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("tcp://{}", listener.local_addr().expect("addr"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(conn);
                loop {
                    let mut len = Vec::new();
                    if conn.read_until(b' ', &mut len).await.ok()? == 0 {
                        return Some(());
                    }
                    let len: usize = std::str::from_utf8(&len).ok()?.trim().parse().ok()?;
                    let mut msg = vec![0u8; len];
                    conn.read_exact(&mut msg).await.ok()?;
                    sink.lock().await.push(String::from_utf8(msg).ok()?);
                }
            });
        }
    });
    (url, got)
}
