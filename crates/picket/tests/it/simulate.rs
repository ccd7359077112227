//! `picket simulate` against a real `picket serve`: a small fleet is onboarded, activated
//! (one certificate each) and heartbeats with no errors, and the server shows it activated,
//! running and up to date. And the sensor-authentication cache: a deleted sensor is refused
//! at once by the replica that deleted it, and within the bound by another replica.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use picket_proto::time::parse_ts;
use picket_sim::conn::Conn;
use picket_sim::{Fleet, OnboardOptions, SimError, SimSensor};

use crate::harness::{ADMIN_TOKEN, Server};

/// The contract: a deleted sensor is refused on every replica within 5 s.
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

fn check_simulate(server: &Server) {
    let started = now_ms();
    let run = server.cli(&[
        "simulate",
        "--sensors",
        "5",
        "--interval",
        "1s",
        "--duration",
        "3s",
        "--prefix",
        "simtest-",
        "--json",
    ]);
    let summary = run.json();
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["sensors"], 5, "{summary}");
    assert!(summary["sent"].as_u64().expect("sent") >= 5, "every sensor beat at least once: {summary}");
    assert!(summary["p99_ms"].as_f64().expect("p99_ms") > 0.0, "{summary}");
    // Heartbeats are written in batches: poll until the last batch is in.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = server.cli(&["sensors", "list", "--json", "--q", "simtest-", "--limit", "100"]).json();
        let items = page["items"].as_array().expect("items").clone();
        assert_eq!(items.len(), 5, "{page}");
        let fresh = |s: &serde_json::Value| {
            s["last_seen_at"].as_str().and_then(parse_ts).is_some_and(|t| t.millis() >= started - 1000)
        };
        if items.iter().all(|s| s["sensor_status"] == "up_to_date" && s["service_status"] == "running" && fresh(s)) {
            assert!(items.iter().all(|s| s["mode"] == "cloud_connected" && s["version"] == "1.0.0"), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "the simulated sensors never showed up as up to date: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sensors that cannot keep a connection open reconnect for every heartbeat; the sensor
/// listener's session tickets let them resume instead of making a full mutual-TLS handshake.
fn check_resumption(server: &Server) {
    let run = server.cli(&[
        "simulate",
        "--sensors",
        "2",
        "--max-connections",
        "0",
        "--interval",
        "300ms",
        "--duration",
        "2s",
        "--prefix",
        "resume-",
        "--json",
    ]);
    let summary = run.json();
    assert_eq!(summary["errors"], 0, "{summary}");
    let (connects, resumed) =
        (summary["connects"].as_u64().expect("connects"), summary["resumed"].as_u64().expect("resumed"));
    assert!(connects >= 4, "every heartbeat makes a connection: {summary}");
    assert!(resumed >= connects - 2, "all but each sensor's first connection resume a session: {summary}");
}

#[test]
fn simulate_onboards_activates_and_heartbeats_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), Some(ADMIN_TOKEN), 0);
    check_simulate(&server);
    check_resumption(&server);
    let bad = server.cli_as(Some("pkt_not_a_token"), &["simulate", "--sensors", "1", "--duration", "1s"]);
    assert_eq!(bad.code(), 4, "a refused token exits 4: {}", bad.stderr());
    assert!(bad.stderr().contains("refused the API token"), "{}", bad.stderr());
    assert!(server.terminate().success());
}

#[test]
fn simulate_onboards_activates_and_heartbeats_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = rt.block_on(picket_testkit::pg::fresh_database_url());
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), &dir.path().join("data"), Some(ADMIN_TOKEN), 0, &["--database-url", &url]);
    check_simulate(&server);
    assert!(server.terminate().success());
}

async fn heartbeat(conn: &mut Conn) -> Result<(), SimError> {
    let body = br#"{"service_status":"running","version":"1.0.0","config_version_applied":0}"#;
    conn.call(
        hyper::Method::POST,
        "/sensor/v1/heartbeat",
        Some(bytes::Bytes::from_static(body)),
        Duration::from_secs(10),
    )
    .await
    .map(drop)
}

async fn onboard(server: &Server, n: usize, prefix: &str) -> Fleet {
    let opts = OnboardOptions {
        server: server.url(),
        token: ADMIN_TOKEN.to_string(),
        sensors: n,
        prefix: prefix.to_string(),
        concurrency: 2,
        sensor_server: None,
        timeout: Duration::from_secs(10),
    };
    Fleet::onboard(&opts, Arc::new(|_| {})).await.expect("onboarding")
}

async fn connect(fleet: &Fleet, s: &SimSensor) -> Conn {
    Conn::open(&fleet.target, &s.identity, s.sessions.clone()).await.expect("connecting")
}

fn refused(r: &Result<(), SimError>) -> bool {
    matches!(r, Err(SimError::Refused { status: 401, .. }))
}

#[test]
fn a_deleted_sensor_is_refused_at_once_here_and_within_the_bound_on_another_replica() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = rt.block_on(picket_testkit::pg::fresh_database_url());
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start_with(dir.path(), &dir.path().join("a"), Some(ADMIN_TOKEN), 0, &["--database-url", &url]);
    let b = Server::start_with(dir.path(), &dir.path().join("b"), Some(ADMIN_TOKEN), 1, &["--database-url", &url]);
    rt.block_on(async {
        // Sensors of replica A: the deleting replica refuses the very next request.
        let fleet_a = onboard(&a, 2, "here-").await;
        let (gone, kept) = (&fleet_a.sensors[0], &fleet_a.sensors[1]);
        let (mut conn_gone, mut conn_kept) = (connect(&fleet_a, gone).await, connect(&fleet_a, kept).await);
        heartbeat(&mut conn_gone).await.unwrap();
        heartbeat(&mut conn_gone).await.unwrap(); // now cached
        heartbeat(&mut conn_kept).await.unwrap();
        // A sensor of replica B, cached there.
        let fleet_b = onboard(&b, 1, "there-").await;
        let far = &fleet_b.sensors[0];
        let mut conn_far = connect(&fleet_b, far).await;
        heartbeat(&mut conn_far).await.unwrap();
        heartbeat(&mut conn_far).await.unwrap();

        a.cli(&["sensors", "delete", &gone.id, "--yes"]).ok();
        let r = heartbeat(&mut conn_gone).await;
        assert!(refused(&r), "the deleting replica must refuse at once: {r:?}");
        heartbeat(&mut conn_kept).await.expect("another sensor is unaffected");

        a.cli(&["sensors", "delete", &far.id, "--yes"]).ok();
        let deleted_at = Instant::now();
        loop {
            let r = heartbeat(&mut conn_far).await;
            if refused(&r) {
                break;
            }
            r.expect("accepted until the cache entry expires");
            assert!(
                deleted_at.elapsed() < REVOCATION_BOUND,
                "replica B still accepted a sensor deleted through replica A after {REVOCATION_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And a new connection with the deleted certificate is refused as well.
        let mut again = connect(&fleet_b, far).await;
        assert!(refused(&heartbeat(&mut again).await));
    });
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
