//! Notifications end to end, real processes on loopback: `picket serve --syslog udp://...`
//! with a webhook, a `picket-sensor` that is SIGKILLed, and the `disconnected` health issue
//! arriving at a test webhook receiver (signature checked with an HMAC computed here from
//! SHA-256, independent of the server's code) and at a test UDP syslog listener (RFC 5424
//! frame with a CEF message).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    ADMIN_TOKEN, Backend, SensorProcess, free_port, hmac_sha256, picket_bin, receiver, sensor_cmd, wait_for,
};

const SECRET: &str = "e2e-webhook-secret-0123456789";

/// `picket serve` with a short disconnect time and a UDP syslog target; killed on drop.
struct Serve {
    child: Child,
    api: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    async fn start(backend: Backend, syslog: &str) -> Serve {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(picket_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PICKET_") && k != "PICKET_TEST_DATABASE_URL" {
                cmd.env_remove(&k);
            }
        }
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--sensor-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--disconnect-after", "3s", "--syslog", syslog])
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
        let child = cmd.spawn().expect("picket serve starts");
        let s = Serve { child, api: format!("http://127.0.0.1:{port}"), dir, http: reqwest::Client::new() };
        wait_for(Duration::from_secs(60), "picket serve healthy", async || {
            let r = s.http.get(format!("{}/healthz", s.api)).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.err")).unwrap_or_default()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.api)).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("REST call");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("JSON answer")
    }
}

async fn disconnected_issue_is_notified(backend: Backend) {
    let (hook_url, hooks) = receiver().await;
    let syslog = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let server = Serve::start(backend, &format!("udp://{}", syslog.local_addr().expect("addr"))).await;
    server.call(reqwest::Method::POST, "/api/v1/webhooks", Some(json!({"url": hook_url, "secret": SECRET}))).await;

    let body = json!({"name": "DC-NOTIFY", "type": "domain_controller", "domain": "corp.example.com"});
    let id = server.call(reqwest::Method::POST, "/api/v1/sensors", Some(body)).await["id"]
        .as_str()
        .expect("sensor id")
        .to_string();
    let file = server.dir.path().join("activation.json");
    let activation = server.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}/activation-file"), None).await;
    std::fs::write(&file, activation.to_string()).expect("write activation file");
    let state = server.dir.path().join("sensor-state");
    let out = sensor_cmd(&[
        "activate",
        "--activation-file",
        file.to_str().expect("path"),
        "--state-dir",
        state.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "activate: {}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    let sensor = SensorProcess::run(&state, 1);
    wait_for(Duration::from_secs(20), "up_to_date", async || {
        let v = server.call(reqwest::Method::GET, &format!("/api/v1/sensors/{id}"), None).await;
        (v["sensor_status"] == "up_to_date").then_some(())
    })
    .await;

    sensor.signal("-KILL");
    drop(sensor);

    // The webhook: one signed request with the issue.
    let (headers, body) =
        wait_for(Duration::from_secs(30), "the webhook request", async || hooks.lock().await.first().cloned()).await;
    assert_eq!(headers.get("x-picket-event").map(String::as_str), Some("health_issue.opened"), "{headers:?}");
    assert!(headers.get("x-picket-delivery").is_some_and(|d| !d.is_empty()));
    let ts = headers.get("x-picket-timestamp").expect("timestamp header");
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected = format!("sha256={}", hex::encode(hmac_sha256(SECRET.as_bytes(), &signed)));
    assert_eq!(headers.get("x-picket-signature"), Some(&expected), "valid HMAC-SHA256 signature");
    let doc: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(doc["event"], "health_issue.opened");
    assert_eq!(
        (doc["issue"]["kind"].as_str(), doc["issue"]["sensor_id"].as_str()),
        (Some("disconnected"), Some(id.as_str()))
    );
    assert_eq!(doc["sensor"]["name"], "DC-NOTIFY");

    // Syslog: an RFC 5424 datagram whose MSG is the CEF line of the same issue.
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(Duration::from_secs(30), syslog.recv_from(&mut buf))
        .await
        .expect("a syslog datagram within 30 s")
        .expect("recv");
    let msg = String::from_utf8(buf[..len].to_vec()).expect("UTF-8");
    assert!(msg.starts_with("<131>1 "), "local0.err, RFC 5424 version 1: {msg}");
    let fields: Vec<&str> = msg.splitn(7, ' ').collect();
    assert_eq!((fields[3], fields[5]), ("picket", "health_issue.opened"), "{msg}");
    assert!(fields[6].starts_with("[picket@32473 delivery=\""), "{msg}");
    let cef = &msg[msg.find("CEF:").expect("a CEF message")..];
    let header: Vec<&str> = cef.splitn(8, '|').collect();
    assert_eq!(&header[..3], ["CEF:0", "Picket", "Picket"], "{cef}");
    assert_eq!((header[4], header[6]), ("health_issue:disconnected", "8"), "{cef}");
    assert!(header[7].contains("dhost=DC-NOTIFY") && header[7].contains(&format!("cs1={id}")), "{cef}");
    assert!(header[7].contains(&format!("externalId={}", doc["issue"]["id"].as_str().expect("issue id"))), "{cef}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_on_sqlite() {
    disconnected_issue_is_notified(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_on_postgres() {
    disconnected_issue_is_notified(Backend::Postgres).await;
}
