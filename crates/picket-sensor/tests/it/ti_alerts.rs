//! Issue 6 end to end with real processes (`picket serve` with a release key, a webhook and a
//! TCP syslog collector; two cloud-connected `picket-sensor run`s), on SQLite and PostgreSQL:
//! - a sensor with `auto_ti_updates` gets each published TI package through its heartbeat,
//!   applies it without a restart, reports its `ti_version`, and matches the new indicators;
//! - a sensor with auto updates off does not, until the operator downloads the package through
//!   the API and `picket-sensor ti import`s it on the host;
//! - alerts from a followed file and a syslog listener reach the control plane exactly once,
//!   with the sensor killed (`kill -9`) while it uploads and restarted, and when it lost its
//!   record of an upload the control plane had accepted (the state a kill between the answer
//!   and the mark leaves): the re-sent alerts are duplicates, stored once;
//! - a TI package altered in the control plane's storage after its publish (one byte of the
//!   stored bytes flipped in the database) is refused on the automatic path, first by the
//!   digest of the heartbeat's offer, then, once its stored digest is rewritten to match too
//!   (a compromised control plane), by the signed manifest's indicators digest: the sensor says
//!   why in its log, downloads each altered package once however many heartbeats offer it,
//!   keeps matching with the TI in effect (old indicators alert, the altered package's do not),
//!   keeps reporting the old `ti_version`, and applies the next good package;
//! - every alert the control plane stored reaches the webhook (signature checked) and the
//!   syslog collector (CEF) exactly once: one delivery per alert id at each receiver, none for
//!   the duplicates of the re-sent uploads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use picket_package::SecretKey;
use serde_json::{Value, json};

use crate::detection::{alerts, ti_package};
use crate::harness::{
    ADMIN_TOKEN, Backend, SensorProcess, Server, free_port, receiver, s, sensor_ok, sensor_status, signature_ok,
    syslog_tcp_receiver, wait_for,
};

const SECRET: &str = "e2e-alert-webhook-secret-0123456789";

const WAIT: Duration = Duration::from_secs(90);

/// A REST call with the admin token sending `body` as `application/octet-stream`.
async fn post_bytes(server: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.api))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("REST call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("REST body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A GET with the admin token returning the raw body.
async fn get_bytes(server: &Server, path: &str) -> (u16, Vec<u8>) {
    let resp =
        reqwest::Client::new().get(format!("{}{path}", server.api)).bearer_auth(ADMIN_TOKEN).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("REST body").to_vec())
}

async fn onboard(server: &Server, name: &str, auto_ti_updates: bool) -> String {
    let body = json!({"name": name, "type": "domain_controller", "domain": "corp.example.com",
        "mode": "cloud_connected", "auto_ti_updates": auto_ti_updates});
    let (status, v) = server.call(reqwest::Method::POST, "/api/v1/sensors", Some(body)).await;
    assert_eq!(status, 201, "onboard: {v}");
    v["id"].as_str().expect("id").to_string()
}

fn ti_version(state: &Path) -> Option<i64> {
    let out = sensor_ok(&["ti", "status", "--json", "--state-dir", s(state)]);
    serde_json::from_str::<Value>(&out).expect("json")["version"].as_i64()
}

/// `GET /api/v1/alerts?sensor_id=ID`'s total.
async fn server_alerts(server: &Server, id: &str) -> (u64, Value) {
    let (status, v) = server.call(reqwest::Method::GET, &format!("/api/v1/alerts?sensor_id={id}&limit=10"), None).await;
    assert_eq!(status, 200, "alerts: {v}");
    (v["total"].as_u64().expect("total"), v)
}

/// The offset of the (only) follow checkpoint file of `state`.
fn follow_offset(state: &Path) -> Option<u64> {
    let dir = state.join("detect").join("follow");
    let e = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
    v["offset"].as_u64()
}

/// Direct access to the server's database, to play a control plane whose storage was altered
/// after a publish (the server verified the package when it was published, so an altered
/// package cannot be published through the API).
enum Db {
    /// SQLite (WAL: writable beside the server, which waits on its lock).
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

impl Db {
    async fn connect(server: &Server) -> Db {
        match server.database_url() {
            None => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(server.dir.path().join("data/picket.db"))
                    .busy_timeout(Duration::from_secs(30));
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .expect("open the server's SQLite database");
                Db::Sqlite(pool)
            }
            Some(url) => Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .expect("connect to the server's PostgreSQL database"),
            ),
        }
    }

    /// Flips one byte of the stored TI package `sha256` (a single chunk): the first byte where
    /// `from` and `to` differ, at the first occurrence of `from`. Returns the altered bytes.
    async fn alter_ti_bytes(&self, sha256: &str, from: &[u8], to: &[u8]) -> Vec<u8> {
        on_pool!(self, p => {
            use sqlx::Row;
            let rows = sqlx::query("SELECT data FROM ti_package_chunks WHERE sha256 = $1 ORDER BY seq")
                .bind(sha256)
                .fetch_all(p)
                .await
                .expect("the package's chunks");
            assert_eq!(rows.len(), 1, "a small package is one chunk");
            let mut data: Vec<u8> = rows[0].get("data");
            let at = data.windows(from.len()).position(|w| w == from).expect("the value in the stored bytes");
            let diff = from.iter().zip(to).position(|(a, b)| a != b).expect("from and to differ");
            assert_eq!(&from[diff + 1..], &to[diff + 1..], "one byte differs");
            data[at + diff] = to[diff];
            let done = sqlx::query("UPDATE ti_package_chunks SET data = $2 WHERE sha256 = $1 AND seq = 0")
                .bind(sha256)
                .bind(&data)
                .execute(p)
                .await
                .expect("alter the chunk");
            assert_eq!(done.rows_affected(), 1);
            data
        })
    }

    /// Files the stored TI package `sha256` (its row and chunks) under `new_sha256`, as a
    /// compromised control plane making its altered bytes match the digest it offers would.
    async fn relabel_ti(&self, sha256: &str, new_sha256: &str) {
        on_pool!(self, p => {
            let mut tx = p.begin().await.expect("begin");
            let chunks = sqlx::query("UPDATE ti_package_chunks SET sha256 = $2 WHERE sha256 = $1")
                .bind(sha256)
                .bind(new_sha256)
                .execute(&mut *tx)
                .await
                .expect("relabel the chunks");
            let row = sqlx::query("UPDATE ti_packages SET sha256 = $2 WHERE sha256 = $1")
                .bind(sha256)
                .bind(new_sha256)
                .execute(&mut *tx)
                .await
                .expect("relabel the package");
            assert_eq!((chunks.rows_affected(), row.rows_affected()), (1, 1));
            tx.commit().await.expect("commit");
        })
    }
}

/// Waits until the sensor of `state` has made `n` more successful calls to the control plane
/// (each heartbeat answer offers the current TI package again).
async fn heartbeats(state: &Path, n: usize) {
    let mut last = sensor_status(state)["last_contact_at"].clone();
    for _ in 0..n {
        let prev = last.clone();
        last = wait_for(WAIT, "a later heartbeat", async || {
            let now = sensor_status(state)["last_contact_at"].clone();
            (now != prev).then_some(now)
        })
        .await;
    }
}

/// Lines of `log` holding every one of `parts`.
fn log_lines(log: &str, parts: &[&str]) -> usize {
    log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).count()
}

/// Appends `text` to `path`.
fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new().append(true).open(path).expect("open").write_all(text.as_bytes()).expect("write");
}

/// Every alert id the control plane stored (all sensors), paging through `GET /api/v1/alerts`.
async fn all_server_alert_ids(server: &Server) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/alerts?limit=1000&cursor={c}"),
            None => "/api/v1/alerts?limit=1000".to_string(),
        };
        let (status, v) = server.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "alerts: {v}");
        for item in v["items"].as_array().expect("items") {
            assert!(ids.insert(item["id"].as_str().expect("id").to_string()), "an alert listed twice: {item}");
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

/// The `value` of `key=value` in a CEF extension (values here hold no spaces).
fn cef_field<'a>(cef: &'a str, key: &str) -> Option<&'a str> {
    let at = cef.find(&format!(" {key}="))? + key.len() + 2;
    cef[at..].split(' ').next()
}

/// The delivery id in an RFC 5424 message's structured data.
fn syslog_delivery(msg: &str) -> Option<&str> {
    let at = msg.find("delivery=\"")? + "delivery=\"".len();
    msg[at..].split('"').next()
}

async fn end_to_end(backend: Backend) {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::generate().expect("key");
    let key_pub = keys.path().join("release.key.pub");
    std::fs::write(&key_pub, key.public().to_base64()).expect("write key");
    let (hook_url, hooks) = receiver().await;
    let (syslog_url, syslog) = syslog_tcp_receiver().await;
    let args = ["--release-key-pub".into(), s(&key_pub).into(), "--syslog".into(), syslog_url];
    let server = Server::start_with_args(backend, "10m", &args).await;
    let dir = server.dir.path();
    let (status, v) =
        server.call(reqwest::Method::POST, "/api/v1/webhooks", Some(json!({"url": hook_url, "secret": SECRET}))).await;
    assert_eq!(status, 201, "webhook: {v}");

    let auto_id = onboard(&server, "DC-AUTO", true).await;
    let manual_id = onboard(&server, "DC-MANUAL", false).await;
    let auto_state = dir.join("auto-state");
    let manual_state = dir.join("manual-state");
    for (id, state) in [(&auto_id, &auto_state), (&manual_id, &manual_state)] {
        let file = server.activation_file(id).await;
        sensor_ok(&["activate", "--activation-file", s(&file), "--state-dir", s(state)]);
    }
    let auto_log = dir.join("auto.jsonl");
    let manual_log = dir.join("manual.jsonl");
    std::fs::write(&auto_log, b"").expect("create");
    // Written before any TI: it must never raise an alert on the manual sensor.
    let early = "{\"src\":\"203.0.113.7\",\"when\":\"before the import\"}\n";
    std::fs::write(&manual_log, early).expect("create");
    let udp = free_port();
    let udp_url = format!("udp://127.0.0.1:{udp}");
    let auto_args = ["--follow", s(&auto_log), "--syslog-listen", &udp_url];
    let mut auto = SensorProcess::run_with(&auto_state, 1, &auto_args);
    let manual = SensorProcess::run_with(&manual_state, 1, &["--follow", s(&manual_log)]);

    // TI 1 published: the auto sensor applies it and reports it.
    let pkg1 = ti_package(keys.path(), &key, 1, &[("ip", "203.0.113.7", "high"), ("domain", "evil.example", "medium")]);
    let (status, v) = post_bytes(&server, "/api/v1/ti-packages", std::fs::read(&pkg1).expect("read")).await;
    assert_eq!(status, 201, "publish TI 1: {v}");
    wait_for(WAIT, "the auto sensor to apply TI 1", async || (ti_version(&auto_state) == Some(1)).then_some(())).await;
    wait_for(WAIT, "the control plane to see TI 1 on the auto sensor", async || {
        (server.sensor(&auto_id).await["ti_version"] == 1).then_some(())
    })
    .await;
    assert!(auto.log().contains("TI package from the control plane applied"), "{}", auto.log());

    // Alerts: many lines (several batches), killed while uploading, restarted.
    const N: u64 = 1500;
    let mut text = String::new();
    for n in 0..N {
        text.push_str(&format!("{{\"n\":{n},\"dst\":\"203.0.113.7:443\"}}\n"));
    }
    std::fs::OpenOptions::new().append(true).open(&auto_log).expect("open").write_all(text.as_bytes()).expect("write");
    let at_kill = wait_for(WAIT, "the first uploaded batch", async || {
        let (total, _) = server_alerts(&server, &auto_id).await;
        (total > 0).then_some(total)
    })
    .await;
    auto.signal("-KILL");
    let _ = auto.child.wait();
    let local = alerts(&auto_state);
    assert_eq!(local.len() as u64, N, "every line's alert is on disk");
    drop(auto);
    let mut auto = SensorProcess::run_with(&auto_state, 2, &auto_args);
    wait_for(WAIT, "all alerts on the control plane", async || {
        let (total, _) = server_alerts(&server, &auto_id).await;
        assert!(total <= N, "duplicates stored: {total} > {N}");
        (total == N).then_some(())
    })
    .await;
    eprintln!("killed with {at_kill} of {N} alerts uploaded");

    // Syslog too.
    wait_for(WAIT, "the syslog listener", async || auto.log().contains("syslog listener (UDP) started").then_some(()))
        .await;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let msg = "<38>1 2026-11-22T10:00:00Z dc01 dns - - - query for c2.evil.example from 10.0.0.5";
    sock.send_to(msg.as_bytes(), ("127.0.0.1", udp)).expect("send");
    wait_for(WAIT, "the syslog alert on the control plane", async || {
        (server_alerts(&server, &auto_id).await.0 == N + 1).then_some(())
    })
    .await;
    let local = alerts(&auto_state);
    wait_for(WAIT, "every alert marked uploaded", async || {
        alerts(&auto_state).iter().all(|a| a["uploaded"] == true).then_some(())
    })
    .await;
    let mut ids: Vec<&str> = local.iter().map(|a| a["id"].as_str().unwrap_or("")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, N + 1);

    // The sensor loses its record of accepted uploads (as a kill between the answer and the
    // mark would leave it): it sends everything again, and the control plane stores nothing new.
    auto.signal("-TERM");
    let _ = auto.child.wait();
    drop(auto);
    std::fs::write(auto_state.join("alerts/uploaded.json"), br#"{"format":1,"uploaded_through":0}"#).expect("write");
    let mut auto = SensorProcess::run_with(&auto_state, 3, &auto_args);
    wait_for(WAIT, "the re-sent alerts to be acknowledged", async || {
        alerts(&auto_state).iter().all(|a| a["uploaded"] == true).then_some(())
    })
    .await;
    assert_eq!(server_alerts(&server, &auto_id).await.0, N + 1, "re-sent alerts are stored once");
    assert!(auto.log().contains("duplicates="), "{}", auto.log());

    // The manual sensor never got TI 1 and raised nothing.
    let contact = sensor_status(&manual_state)["last_contact_at"].clone();
    wait_for(WAIT, "a later heartbeat of the manual sensor", async || {
        (sensor_status(&manual_state)["last_contact_at"] != contact).then_some(())
    })
    .await;
    assert_eq!(ti_version(&manual_state), None, "auto TI updates off: nothing pushed");
    assert!(server.sensor(&manual_id).await["ti_version"].is_null());
    wait_for(WAIT, "the manual sensor to read the early line", async || {
        (follow_offset(&manual_state) == Some(early.len() as u64)).then_some(())
    })
    .await;
    assert!(alerts(&manual_state).is_empty());

    // TI 2: the auto sensor swaps it in while running.
    let pkg2 = ti_package(keys.path(), &key, 2, &[("ip", "192.0.2.99", "low"), ("ip", "203.0.113.7", "high")]);
    let (status, v) = post_bytes(&server, "/api/v1/ti-packages", std::fs::read(&pkg2).expect("read")).await;
    assert_eq!(status, 201, "publish TI 2: {v}");
    wait_for(WAIT, "the auto sensor to apply TI 2", async || (ti_version(&auto_state) == Some(2)).then_some(())).await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&auto_log)
        .expect("open")
        .write_all(b"{\"new\":\"192.0.2.99\"}\n")
        .expect("write");
    wait_for(WAIT, "an alert from TI 2", async || {
        alerts(&auto_state)
            .iter()
            .any(|a| a["indicator"]["value"] == "192.0.2.99" && a["ti_version"] == 2)
            .then_some(())
    })
    .await;
    assert!(auto.child.try_wait().expect("try_wait").is_none(), "no restart: {}", auto.log());
    wait_for(WAIT, "the TI 2 alert on the control plane", async || {
        (server_alerts(&server, &auto_id).await.0 == N + 2).then_some(())
    })
    .await;

    // The operator downloads TI 2 and imports it on the manual sensor's host.
    let (status, bytes) = get_bytes(&server, "/api/v1/ti-packages/2/download").await;
    assert_eq!(status, 200);
    let downloaded = dir.join("downloaded-ti-2.pkg");
    std::fs::write(&downloaded, bytes).expect("write");
    let out = sensor_ok(&["ti", "import", s(&downloaded), "--state-dir", s(&manual_state)]);
    assert!(out.contains("imported TI version 2"), "{out}");
    wait_for(WAIT, "the manual sensor to use TI 2", async || manual.log().contains("ti_version=2").then_some(())).await;
    let late = "{\"src\":\"203.0.113.7\",\"when\":\"after the import\"}\n";
    std::fs::OpenOptions::new().append(true).open(&manual_log).expect("open").write_all(late.as_bytes()).expect("w");
    let (_, v) = wait_for(WAIT, "the manual sensor's alert on the control plane", async || {
        let (total, v) = server_alerts(&server, &manual_id).await;
        (total >= 1).then_some((total, v))
    })
    .await;
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    assert!(items[0]["excerpt"].as_str().unwrap_or("").contains("after the import"), "{v}");
    wait_for(WAIT, "the control plane to see TI 2 on the manual sensor", async || {
        (server.sensor(&manual_id).await["ti_version"] == 2).then_some(())
    })
    .await;

    // TI 3 is published, then one byte of its stored bytes is flipped in the database (the
    // server verified it at publish). The auto sensor is stopped meanwhile, so no heartbeat
    // offers TI 3 before the bytes are altered.
    auto.signal("-TERM");
    let _ = auto.child.wait();
    drop(auto);
    let db = Db::connect(&server).await;
    let pkg3 = ti_package(keys.path(), &key, 3, &[("ip", "203.0.113.7", "high"), ("ip", "198.18.0.33", "high")]);
    let (status, v) = post_bytes(&server, "/api/v1/ti-packages", std::fs::read(&pkg3).expect("read")).await;
    assert_eq!(status, 201, "publish TI 3: {v}");
    let sha3 = v["sha256"].as_str().expect("sha256").to_string();
    let altered = db.alter_ti_bytes(&sha3, b"198.18.0.33", b"198.18.0.34").await;
    let mut auto = SensorProcess::run_with(&auto_state, 4, &auto_args);
    // (1) The download does not match the offer's digest.
    wait_for(WAIT, "the altered TI 3 to be refused", async || {
        (log_lines(&auto.log(), &["does not match the offer", &sha3]) > 0).then_some(())
    })
    .await;
    // Detection goes on with TI 2: an old indicator alerts, TI 3's own indicator (as signed
    // or as altered) does not. The old indicator's line comes last: once it has alerted, the
    // lines before it were matched.
    append(&auto_log, "{\"v3\":\"198.18.0.33\"}\n{\"v3_altered\":\"198.18.0.34\"}\n");
    append(&auto_log, "{\"src\":\"203.0.113.7\",\"after\":\"the altered TI 3\"}\n");
    let a = wait_for(WAIT, "an alert from TI 2 after the refusal", async || {
        let a = alerts(&auto_state);
        a.iter().any(|x| x["excerpt"].as_str().is_some_and(|e| e.contains("the altered TI 3"))).then_some(a)
    })
    .await;
    let last = a.iter().find(|x| x["excerpt"].as_str().is_some_and(|e| e.contains("the altered TI 3"))).expect("alert");
    assert_eq!((last["ti_version"].as_i64(), last["indicator"]["value"].as_str()), (Some(2), Some("203.0.113.7")));
    assert!(
        !a.iter().any(|x| x["indicator"]["value"].as_str().is_some_and(|v| v.starts_with("198.18."))),
        "no alert from the refused package: {a:?}"
    );
    // More heartbeats offer TI 3 again: it is not downloaded again, and TI 2 stays reported.
    heartbeats(&auto_state, 5).await;
    let log = auto.log();
    assert_eq!(log_lines(&log, &["downloading the offered TI package", &sha3]), 1, "{log}");
    assert_eq!(log_lines(&log, &["does not match the offer"]), 1, "{log}");
    assert_eq!(ti_version(&auto_state), Some(2));
    assert_eq!(server.sensor(&auto_id).await["ti_version"], 2);

    // (2) The control plane's storage also says the altered bytes' digest (row and chunks), so
    // the download matches the offer: the signed manifest's indicators digest refuses it.
    let sha3_altered = picket_package::sha256_hex(&altered);
    db.relabel_ti(&sha3, &sha3_altered).await;
    wait_for(WAIT, "the relabelled TI 3 to be refused by its signature", async || {
        (log_lines(&auto.log(), &["offered TI package refused", "digest mismatch"]) > 0).then_some(())
    })
    .await;
    heartbeats(&auto_state, 5).await;
    let log = auto.log();
    assert_eq!(log_lines(&log, &["downloading the offered TI package", &sha3_altered]), 1, "{log}");
    assert_eq!(log_lines(&log, &["downloading the offered TI package", &sha3]), 1, "{log}");
    assert_eq!(log_lines(&log, &["offered TI package refused"]), 1, "{log}");
    assert!(!log.contains("TI package from the control plane applied"), "{log}");
    assert_eq!(ti_version(&auto_state), Some(2));
    assert_eq!(server.sensor(&auto_id).await["ti_version"], 2);
    assert!(auto.child.try_wait().expect("try_wait").is_none(), "still running: {log}");

    // A good TI 4 is applied by the same process, and its indicators match.
    let pkg4 = ti_package(keys.path(), &key, 4, &[("ip", "203.0.113.7", "high"), ("ip", "198.18.0.44", "medium")]);
    let (status, v) = post_bytes(&server, "/api/v1/ti-packages", std::fs::read(&pkg4).expect("read")).await;
    assert_eq!(status, 201, "publish TI 4: {v}");
    wait_for(WAIT, "the auto sensor to apply TI 4", async || (ti_version(&auto_state) == Some(4)).then_some(())).await;
    append(&auto_log, "{\"v4\":\"198.18.0.44\"}\n");
    wait_for(WAIT, "the TI 4 alert on the control plane", async || {
        (server_alerts(&server, &auto_id).await.0 == N + 4).then_some(())
    })
    .await;
    let a = alerts(&auto_state);
    let newest = a.last().expect("alerts");
    assert_eq!((newest["ti_version"].as_i64(), newest["indicator"]["value"].as_str()), (Some(4), Some("198.18.0.44")));
    wait_for(WAIT, "the control plane to see TI 4 on the auto sensor", async || {
        (server.sensor(&auto_id).await["ti_version"] == 4).then_some(())
    })
    .await;
    assert!(auto.child.try_wait().expect("try_wait").is_none(), "no restart: {}", auto.log());

    // Forwarding: every stored alert reached the webhook and syslog, once each, although the
    // auto sensor was killed mid-upload and re-sent everything after losing its upload mark.
    let stored = all_server_alert_ids(&server).await;
    assert_eq!(stored.len() as u64, N + 5, "N + 4 from the auto sensor, 1 from the manual one");
    let mut local: BTreeSet<String> = BTreeSet::new();
    for a in alerts(&auto_state).iter().chain(alerts(&manual_state).iter()) {
        local.insert(a["id"].as_str().expect("id").to_string());
    }
    assert_eq!(local, stored, "the control plane holds exactly the sensors' alerts");
    let by_alert = async || {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (headers, body) in hooks.lock().await.iter() {
            if headers.get("x-picket-event").map(String::as_str) != Some("alert.raised") {
                continue;
            }
            let doc: Value = serde_json::from_slice(body).expect("JSON body");
            let id = doc["alert"]["id"].as_str().expect("alert id").to_string();
            m.entry(id).or_default().insert(headers.get("x-picket-delivery").cloned().unwrap_or_default());
        }
        m
    };
    let hooked = wait_for(WAIT, "every alert at the webhook", async || {
        let m = by_alert().await;
        (m.len() >= stored.len()).then_some(m)
    })
    .await;
    let syslog_by_alert = async || {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for msg in syslog.lock().await.iter() {
            if msg.split(' ').nth(5) != Some("alert.raised") {
                continue;
            }
            let id = cef_field(msg, "externalId").expect("externalId").to_string();
            m.entry(id).or_default().insert(syslog_delivery(msg).expect("delivery").to_string());
        }
        m
    };
    let logged = wait_for(WAIT, "every alert at the syslog collector", async || {
        let m = syslog_by_alert().await;
        (m.len() >= stored.len()).then_some(m)
    })
    .await;
    for (what, m) in [("webhook", &hooked), ("syslog", &logged)] {
        assert_eq!(m.keys().cloned().collect::<BTreeSet<_>>(), stored, "{what}: the stored alerts, no other");
        let twice: Vec<_> = m.iter().filter(|(_, d)| d.len() != 1).collect();
        assert!(twice.is_empty(), "{what}: alerts forwarded in more than one delivery: {twice:?}");
    }
    let requests = hooks.lock().await.clone();
    for (headers, body) in &requests {
        assert!(signature_ok(headers, body, SECRET), "valid HMAC-SHA256 signature: {headers:?}");
    }
    // The syslog alert, as the webhook and the collector got it.
    let (_, v) =
        server.call(reqwest::Method::GET, &format!("/api/v1/alerts?sensor_id={auto_id}&limit=1000"), None).await;
    let c2 = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|a| a["indicator"]["value"] == "evil.example")
        .expect("the syslog alert")
        .clone();
    let c2_id = c2["id"].as_str().expect("id");
    let (_, body) = requests
        .iter()
        .find(|(_, b)| serde_json::from_slice::<Value>(b).is_ok_and(|d| d["alert"]["id"] == c2_id))
        .expect("its webhook request");
    let doc: Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(doc["alert"]["indicator"], json!({"type": "domain", "value": "evil.example"}), "{doc}");
    assert_eq!(
        (doc["alert"]["severity"].as_str(), doc["alert"]["sensor_id"].as_str()),
        (Some("medium"), Some(auto_id.as_str()))
    );
    assert_eq!(doc["sensor"]["name"], "DC-AUTO");
    assert!(doc["alert"]["excerpt"].as_str().unwrap_or("").contains("c2.evil.example"), "{doc}");
    let msgs = syslog.lock().await.clone();
    let msg = msgs.iter().find(|m| cef_field(m, "externalId") == Some(c2_id)).expect("its syslog message");
    assert!(msg.starts_with("<132>1 "), "local0.warning for a medium alert: {msg}");
    let cef = &msg[msg.find("CEF:").expect("a CEF message")..];
    let header: Vec<&str> = cef.splitn(8, '|').collect();
    assert_eq!(
        (header[4], header[5], header[6]),
        ("alert:domain", "Threat indicator matched: domain evil.example", "6"),
        "{cef}"
    );
    assert_eq!(
        (cef_field(cef, "dhost"), cef_field(cef, "cs1"), cef_field(cef, "cs3")),
        (Some("DC-AUTO"), Some(auto_id.as_str()), Some("evil.example")),
        "{cef}"
    );
    eprintln!(
        "forwarded {} alerts: {} webhook requests, {} syslog messages",
        stored.len(),
        requests.len(),
        msgs.iter().filter(|m| m.contains(" alert.raised ")).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ti_and_alerts_end_to_end_sqlite() {
    end_to_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ti_and_alerts_end_to_end_postgres() {
    end_to_end(Backend::Postgres).await;
}
