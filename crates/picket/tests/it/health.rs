//! `picket health-issues list|close|reopen` against a real `picket serve` over a seeded store
//! (whose sensors the status job finds disconnected, start_failed, not configured, ...): table
//! and JSON output, and the documented exit codes for conflicts and unknown ids.

use std::time::{Duration, Instant};

use crate::harness::{Server, picket};

#[test]
fn health_issues_are_listed_closed_and_reopened_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seeded = picket(dir.path()).args(["seed", "--sensors", "40", "--data-dir"]).arg(&data).output().unwrap();
    assert!(seeded.status.success(), "seed: {}", String::from_utf8_lossy(&seeded.stderr));
    // A 2 s disconnect_after: the job runs every 400 ms and raises issues right after the grace period.
    let server =
        Server::start_with(dir.path(), &data, Some(crate::harness::ADMIN_TOKEN), 0, &["--disconnect-after", "2s"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page =
            server.cli(&["health-issues", "list", "--status", "open", "--kind", "disconnected", "--json"]).json();
        if page["total"].as_u64().unwrap_or(0) > 0 {
            break page;
        }
        assert!(Instant::now() < deadline, "no disconnected issue after 30 s: {}", server.stderr_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    let issue = &page["items"][0];
    assert_eq!((issue["status"].as_str(), issue["severity"].as_str()), (Some("open"), Some("high")), "{issue}");
    let id = issue["id"].as_str().unwrap().to_string();

    let table = server.cli(&["health-issues", "list", "--severity", "high"]).ok();
    let header = table.lines().next().unwrap_or_default();
    for col in ["ID", "SENSOR", "KIND", "SEVERITY", "STATUS", "OPENED", "CLOSED", "TITLE"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.contains(&id), "{table}");

    let out = server.cli(&["health-issues", "close", &id]).ok();
    assert!(out.starts_with("Closed the disconnected issue ") && out.contains("stays closed"), "{out}");
    let again = server.cli(&["health-issues", "close", &id]);
    again.expect_code(5);
    assert!(again.stderr().contains("already closed"), "{}", again.stderr());
    let closed = server.cli(&["health-issues", "list", "--status", "closed", "--json"]).json();
    assert!(closed["items"].as_array().unwrap().iter().any(|i| i["id"] == id.as_str()), "{closed}");

    let out = server.cli(&["health-issues", "reopen", &id, "--json"]).json();
    assert_eq!(out["status"], "open");
    server.cli(&["health-issues", "reopen", &id]).expect_code(5);
    server.cli(&["health-issues", "close", "no-such-issue"]).expect_code(3);
    server.cli(&["health-issues", "list", "--kind", "fire"]).expect_code(2);
}
