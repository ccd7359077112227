//! Detection with real `picket-sensor` processes on locally managed sensors (no control plane
//! is involved, so none is started): a followed JSON-lines file (partial lines, malformed
//! lines, rotation by rename and by truncation, `kill -9` and restart with a rotation while
//! down) and UDP and TCP syslog listeners produce exactly the expected alerts on disk
//! (`alerts list --json`); `ti import` takes effect in a running sensor without a restart, and
//! tampered, foreign-key or not-newer packages are refused with the TI in effect unchanged.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_package::{SecretKey, TiBuildOptions, build_ti};
use serde_json::{Value, json};

use crate::harness::{SensorProcess, free_port, s, sensor_fails, sensor_ok, wait_for};

/// Generous: two cores shared by many builds.
const WAIT: Duration = Duration::from_secs(60);

/// A hash indicator used below.
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Writes a locally managed activation file trusting `key` and activates `state` with it.
pub fn activate_local(dir: &Path, state: &Path, id: &str, key: &SecretKey) {
    let file = dir.join(format!("{id}.activation.json"));
    let body = json!({
        "format": 1,
        "sensor_id": id,
        "sensor_name": "OT07",
        "mode": "locally_managed",
        "control_plane_urls": ["https://127.0.0.1:9"],
        "ca_cert_pem": "unused by a locally managed sensor",
        "activation_token": "unused",
        "expires_at": "2099-01-01T00:00:00Z",
        "package_signing_keys": [key.public().to_base64()],
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&body).expect("json")).expect("activation file");
    sensor_ok(&["activate", "--activation-file", s(&file), "--state-dir", s(state)]);
}

/// A TI package of `indicators` (`(type, value, severity)`) at `version`, signed by `key`,
/// written into `dir`.
pub fn ti_package(dir: &Path, key: &SecretKey, version: i64, indicators: &[(&str, &str, &str)]) -> PathBuf {
    let items: Vec<Value> = indicators
        .iter()
        .map(|(t, v, sev)| json!({"type": t, "value": v, "severity": sev, "description": format!("test {t}")}))
        .collect();
    let bytes = serde_json::to_vec(&json!({ "indicators": items })).expect("json");
    let opts = TiBuildOptions {
        version,
        indicator_count: indicators.len() as u64,
        signed_at: picket_domain::Timestamp(1_800_000_000_000),
    };
    let pkg = build_ti(&bytes, &opts, key).expect("build TI package");
    let path = dir.join(format!("ti-{version}-{}.pkg", key.public().key_id()));
    std::fs::write(&path, pkg).expect("write package");
    path
}

/// `alerts list --json`.
pub fn alerts(state: &Path) -> Vec<Value> {
    let out = sensor_ok(&["alerts", "list", "--json", "--state-dir", s(state)]);
    serde_json::from_str::<Vec<Value>>(&out).expect("alerts list --json is a JSON array")
}

/// Waits until the store holds at least `n` alerts; returns them.
pub async fn wait_alerts(state: &Path, n: usize, what: &str) -> Vec<Value> {
    wait_for(WAIT, what, async || {
        let a = alerts(state);
        (a.len() >= n).then_some(a)
    })
    .await
}

/// Appends `text` to `path`.
fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn values(a: &[Value]) -> Vec<String> {
    a.iter()
        .map(|x| {
            format!(
                "{}:{}",
                x["indicator"]["type"].as_str().unwrap_or("?"),
                x["indicator"]["value"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_files_and_syslog_raise_alerts_exactly_once_across_rotations_and_kills() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::generate().expect("key");
    let state = dir.path().join("state");
    activate_local(dir.path(), &state, "s-local-detect", &key);
    let pkg = ti_package(
        dir.path(),
        &key,
        1,
        &[
            ("ip", "203.0.113.7", "high"),
            ("domain", "evil.example", "medium"),
            ("cidr", "198.51.100.0/24", "low"),
            ("sha256", SHA, "high"),
            ("pattern", "mimikatz", "high"),
        ],
    );
    let out = sensor_ok(&["ti", "import", s(&pkg), "--state-dir", s(&state)]);
    assert!(out.contains("imported TI version 1") && out.contains("5 indicators"), "{out}");

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let app = logs.join("app.jsonl");
    // Before the sensor starts: a match, a miss, a malformed line, and a partial last line.
    append(
        &app,
        "{\"src\":\"203.0.113.7\",\"n\":1}\n{\"src\":\"192.0.2.1\"}\nnot json at all\n{\"q\":\"a.evil.example\"",
    );
    let (udp, tcp) = (free_port(), free_port());
    let udp_url = format!("udp://127.0.0.1:{udp}");
    let tcp_url = format!("tcp://127.0.0.1:{tcp}");
    let extra = ["--follow", s(&app), "--syslog-listen", &udp_url, "--syslog-listen", &tcp_url];
    let sensor = SensorProcess::run_with(&state, 1, &extra);

    let a = wait_alerts(&state, 1, "the first line's alert").await;
    assert_eq!(values(&a), ["ip:203.0.113.7"], "{a:?}");
    let first = &a[0];
    assert_eq!(first["severity"], "high");
    assert_eq!(first["excerpt"], "{\"src\":\"203.0.113.7\",\"n\":1}");
    assert_eq!(first["sensor_id"], "s-local-detect");
    assert_eq!(first["ti_version"], 1);
    assert_eq!(first["description"], "test ip");
    assert_eq!(first["uploaded"], false);
    let id = first["id"].as_str().expect("id");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    // The partial line is handled once its line feed arrives.
    append(&app, "}\n");
    let a = wait_alerts(&state, 2, "the completed partial line").await;
    assert_eq!(values(&a)[1], "domain:evil.example");
    assert_eq!(a[1]["excerpt"], "{\"q\":\"a.evil.example\"}");

    // Rotation by rename + create; the writer still adds a line to the renamed file.
    let mut old_writer = std::fs::OpenOptions::new().append(true).open(&app).expect("writer");
    std::fs::rename(&app, logs.join("app.jsonl.1")).expect("rotate");
    writeln!(old_writer, "{{\"file\":{{\"sha256\":\"{SHA}\"}}}}").expect("late line in the old file");
    drop(old_writer);
    append(&app, "{\"dst\":\"198.51.100.9:443\"}\n");
    let a = wait_alerts(&state, 4, "alerts from both sides of a rename rotation").await;
    let mut got = values(&a[2..]);
    got.sort();
    assert_eq!(got, ["cidr:198.51.100.0/24".to_string(), format!("sha256:{SHA}")]);

    // Rotation by truncation (copytruncate): filler first, so the file shrinks.
    append(&app, &"{\"filler\":\"nothing to see here\"}\n".repeat(10));
    std::fs::OpenOptions::new().write(true).truncate(true).open(&app).expect("truncate");
    append(&app, "{\"cmd\":\"run mimikatz\"}\n");
    let a = wait_alerts(&state, 5, "the line written after a truncation").await;
    assert_eq!(values(&a)[4], "pattern:mimikatz");

    // Syslog over UDP (RFC 5424) and TCP (RFC 3164, octet counting and newline framing).
    wait_for(WAIT, "the syslog listeners", async || {
        sensor.log().contains("syslog listener (TCP) started").then_some(())
    })
    .await;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.send_to(b"this is no syslog message", ("127.0.0.1", udp)).expect("send");
    sock.send_to(
        b"<34>1 2026-11-22T10:00:00Z web01 sshd 42 - - Failed password from 203.0.113.7: port 22",
        ("127.0.0.1", udp),
    )
    .expect("send");
    let mut conn = TcpStream::connect(("127.0.0.1", tcp)).expect("tcp");
    let m1 = "<13>Nov 22 10:00:00 web01 proxy: GET http://x.evil.example/a";
    let m2 = "<13>Nov 22 10:00:01 web01 proxy: GET http://fine.example/b";
    writeln!(conn, "{} {m1}{m2}", m1.len()).expect("tcp send");
    conn.flush().expect("flush");
    let a = wait_alerts(&state, 7, "the syslog alerts").await;
    let mut got = values(&a[5..]);
    got.sort();
    assert_eq!(got, ["domain:evil.example", "ip:203.0.113.7"]);
    assert!(a.iter().any(|x| x["excerpt"] == m1), "{a:?}");
    drop(conn);

    // kill -9; while it is down a line is added and the file rotated again.
    sensor.signal("-KILL");
    drop(sensor);
    append(&app, "{\"src\":\"203.0.113.7\",\"while\":\"down, before the rotation\"}\n");
    std::fs::rename(&app, logs.join("app.jsonl.2")).expect("rotate while down");
    append(&app, "{\"src\":\"198.51.100.200\",\"while\":\"down, after the rotation\"}\n");
    let sensor = SensorProcess::run_with(&state, 2, &extra);
    let a = wait_alerts(&state, 9, "the lines written while the sensor was down").await;
    append(&app, "{\"sentinel\":\"mimikatz\"}\n");
    let a2 = wait_alerts(&state, 10, "the sentinel line").await;
    assert_eq!(a2.len(), 10, "nothing read twice after the restart: {:?}", values(&a2));
    assert_eq!(a2[..9], a[..9]);
    let excerpts: Vec<&str> = a2.iter().map(|x| x["excerpt"].as_str().unwrap_or("")).collect();
    assert!(excerpts.iter().any(|e| e.contains("before the rotation")), "{excerpts:?}");
    assert!(excerpts.iter().any(|e| e.contains("after the rotation")), "{excerpts:?}");
    let mut ids: Vec<&str> = a2.iter().map(|x| x["id"].as_str().unwrap_or("")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ids are unique");
    let log = sensor.log();
    drop(sensor);
    assert!(log.contains("following from the checkpoint"), "{log}");

    // The table says the alerts are kept on the host.
    let table = sensor_ok(&["alerts", "list", "--state-dir", s(&state)]);
    assert!(table.contains("kept") && table.contains("10 alerts"), "{table}");
    let newest = sensor_ok(&["alerts", "list", "--json", "--limit", "2", "--state-dir", s(&state)]);
    let newest: Vec<Value> = serde_json::from_str(&newest).expect("json");
    assert_eq!(newest, a2[8..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ti_import_takes_effect_without_a_restart_and_bad_packages_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::generate().expect("key");
    let state = dir.path().join("state");
    activate_local(dir.path(), &state, "s-local-ti", &key);
    let events = dir.path().join("events.jsonl");
    append(&events, "{\"ip\":\"192.0.2.55\",\"before\":\"any TI\"}\n");
    let mut sensor = SensorProcess::run_with(&state, 1, &["--follow", s(&events)]);
    wait_for(WAIT, "the sensor to start", async || sensor.log().contains("no TI package yet").then_some(())).await;

    let v1 = ti_package(dir.path(), &key, 1, &[("ip", "192.0.2.55", "low")]);
    let out = sensor_ok(&["ti", "import", s(&v1), "--state-dir", s(&state)]);
    assert!(out.contains("imported TI version 1") && out.contains(&key.public().key_id()), "{out}");
    wait_for(WAIT, "TI 1 in effect", async || sensor.log().contains("ti_version=1").then_some(())).await;
    append(&events, "{\"ip\":\"192.0.2.55\",\"after\":\"TI 1\"}\n");
    let a = wait_alerts(&state, 1, "an alert from TI 1").await;
    assert_eq!(a.len(), 1);
    assert_eq!((a[0]["ti_version"].as_i64(), a[0]["severity"].as_str()), (Some(1), Some("low")));
    assert!(a[0]["excerpt"].as_str().unwrap_or("").contains("after"), "lines before the TI are not re-read: {a:?}");

    // Version 2 replaces it while the sensor runs.
    let v2 = ti_package(dir.path(), &key, 2, &[("ip", "192.0.2.66", "high")]);
    sensor_ok(&["ti", "import", s(&v2), "--state-dir", s(&state)]);
    wait_for(WAIT, "TI 2 in effect", async || sensor.log().contains("ti_version=2").then_some(())).await;
    append(&events, "{\"ip\":\"192.0.2.55\",\"after\":\"TI 2, no longer an indicator\"}\n{\"ip\":\"192.0.2.66\"}\n");
    let a = wait_alerts(&state, 2, "an alert from TI 2").await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!((a[1]["ti_version"].as_i64(), a[1]["indicator"]["value"].as_str()), (Some(2), Some("192.0.2.66")));

    // Refused: tampered, signed by a key the activation did not carry, not newer.
    let v3 = ti_package(dir.path(), &key, 3, &[("ip", "192.0.2.77", "high")]);
    let mut bytes = std::fs::read(&v3).expect("read");
    let at = bytes.windows(10).position(|w| w == b"192.0.2.77").expect("indicator in the package");
    bytes[at + 9] = b'8';
    let tampered = dir.path().join("tampered.pkg");
    std::fs::write(&tampered, bytes).expect("write");
    let err = sensor_fails(&["ti", "import", s(&tampered), "--state-dir", s(&state)]);
    assert!(err.contains("refused") && err.contains("not imported"), "{err}");
    let stranger = SecretKey::generate().expect("key");
    let foreign = ti_package(dir.path(), &stranger, 4, &[("ip", "192.0.2.77", "high")]);
    let err = sensor_fails(&["ti", "import", s(&foreign), "--state-dir", s(&state)]);
    assert!(err.contains("refused"), "{err}");
    let err = sensor_fails(&["ti", "import", s(&v1), "--state-dir", s(&state)]);
    assert!(err.contains("not above the active version 2"), "{err}");
    let st: Value =
        serde_json::from_str(&sensor_ok(&["ti", "status", "--json", "--state-dir", s(&state)])).expect("json");
    assert_eq!(st["version"], 2);
    assert!(sensor.child.try_wait().expect("try_wait").is_none(), "refusals do not disturb the running sensor");
    drop(sensor);
}
