//! `picket serve` as a process: the bootstrap token on first start, restarts, SIGTERM, and
//! serving a store filled by `picket seed`.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Server, picket};

#[test]
fn first_start_prints_a_token_once_and_the_cli_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    // The default data dir under the working directory, where the CLI looks for the token.
    let data = dir.path().join("picket-data");
    let server = Server::start(dir.path(), &data, None, 0);
    let printed = server.stdout_text();
    let file = data.join("bootstrap-token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(!token.is_empty());
    assert!(printed.contains(&token) && printed.contains("only this once"), "{printed}");
    assert!(printed.contains("bootstrap-token"), "{printed}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // No --token and no PICKET_TOKEN: the CLI uses the file and says so when refused.
    assert_eq!(server.cli_as(None, &["summary", "--json"]).json()["total"], 0);
    assert!(server.terminate().success());

    let server = Server::start(dir.path(), &data, None, 1);
    assert!(!server.stdout_text().contains("only this once"), "{}", server.stdout_text());
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    server.cli_as(None, &["summary"]).ok();
    std::fs::write(&file, "pkt_not_the_right_token_000000\n").unwrap();
    let refused = server.cli_as(None, &["summary"]);
    refused.expect_code(4);
    assert!(refused.stderr().contains("bootstrap-token"), "{}", refused.stderr());
    assert!(server.terminate().success());
}

#[test]
fn seeded_fleets_are_served_listed_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seeded = picket(dir.path())
        .args(["seed", "--sensors", "700", "--batch", "300", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&seeded.stdout);
    assert!(seeded.status.success(), "{out}{}", String::from_utf8_lossy(&seeded.stderr));
    assert!(out.contains("Seeded 700 sensors") && out.contains("sensors/s"), "{out}");

    let server = Server::start(dir.path(), &data, Some(crate::harness::ADMIN_TOKEN), 0);
    let summary = server.cli(&["summary", "--json"]).json();
    assert_eq!(summary["total"], 700);
    assert!(summary["locally_managed"].as_u64().unwrap() > 0);
    for status in ["not_applicable", "pending_activation", "unreachable", "update_failed", "syncing", "up_to_date"] {
        assert!(summary["by_sensor_status"][status].as_u64().unwrap() > 0, "no {status}: {summary}");
    }
    let subs = server.cli(&["subscriptions", "list", "--json"]).json();
    assert!(subs.as_array().unwrap().len() >= 4, "{subs}");
    let all = server.cli(&["sensors", "list", "--all", "--json", "--limit", "250", "--sort", "-last_seen_at"]).json();
    let items = all.as_array().unwrap();
    assert_eq!(items.len(), 700);
    let mut ids: Vec<&str> = items.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 700, "cursor paging repeated a sensor");
    let csv = server.cli(&["sensors", "export", "--mode", "cloud_connected"]).ok();
    assert_eq!(csv.lines().count() as u64, 1 + summary["cloud_connected"].as_u64().unwrap());
    assert!(server.terminate().success());
}

#[test]
fn postgres_backs_seed_and_serve() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = rt.block_on(picket_testkit::pg::fresh_database_url());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seeded = picket(dir.path()).args(["seed", "--sensors", "300", "--database-url", &url]).output().unwrap();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    assert!(String::from_utf8_lossy(&seeded.stdout).contains("into postgres"));
    assert!(!data.join("picket.db").exists(), "seeding PostgreSQL must not touch SQLite");

    let server = Server::start_with(dir.path(), &data, Some(crate::harness::ADMIN_TOKEN), 0, &["--database-url", &url]);
    assert_eq!(server.cli(&["summary", "--json"]).json()["total"], 300);
    let page = server.cli(&["sensors", "list", "--json", "--subscription", "finance", "--limit", "5"]).json();
    assert!(page["total"].as_u64().unwrap() > 0 && page["items"].as_array().unwrap().len() <= 5, "{page}");
    assert!(!data.join("picket.db").exists(), "a PostgreSQL server must not open SQLite");
    assert!(server.terminate().success());

    let refused = picket(dir.path()).args(["serve", "--database-url", "mysql://u:secret@h/db"]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("unsupported database URL") && !err.contains("secret"), "{err}");
}
