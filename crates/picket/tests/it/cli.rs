//! The admin commands against a real server: what an operator types, what they see, and the
//! exit codes scripts rely on.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Server, picket};

#[test]
fn an_operator_manages_sensors_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), Some(crate::harness::ADMIN_TOKEN), 0);

    // Zones and subscriptions.
    assert!(server.cli(&["zones", "create", "Head office", "--description", "HQ"]).ok().contains("Head office"));
    server.cli(&["subscriptions", "create", "finance"]).ok();
    assert!(server.cli(&["zones", "list"]).ok().contains("Head office"));
    let subs = server.cli(&["subscriptions", "list", "--json"]).json();
    assert!(subs.as_array().unwrap().iter().any(|s| s["name"] == "finance"), "{subs}");

    // Onboard, with the activation file written 0600.
    let act = dir.path().join("dc01.activation.json");
    let out = server
        .cli(&[
            "sensors",
            "onboard",
            "--name",
            "DC01-10-0-0-5",
            "--type",
            "domain_controller",
            "--domain",
            "corp.example.com",
            "--site",
            "Paris",
            "--zone",
            "Head office",
            "--tag",
            "tier-0",
            "--tag",
            "pci",
            "--activation-file",
            act.to_str().unwrap(),
        ])
        .ok();
    assert!(out.contains("Onboarded sensor DC01-10-0-0-5") && out.contains("pending_activation"), "{out}");
    assert_eq!(std::fs::metadata(&act).unwrap().permissions().mode() & 0o777, 0o600);
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&act).unwrap()).unwrap();
    let id = file["sensor_id"].as_str().unwrap().to_string();
    assert!(file["activation_token"].as_str().is_some_and(|t| !t.is_empty()));
    let sa = server
        .cli(&["sensors", "onboard", "--name", "SA01", "--type", "standalone", "--subscription", "finance", "--json"])
        .json();
    assert_eq!(sa["sensor_status"], "pending_activation");

    // List as a table, as JSON, filtered and sorted.
    let table = server.cli(&["sensors", "list"]).ok();
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATUS") && header.contains("LAST SEEN"), "{table}");
    assert!(table.contains("DC01-10-0-0-5") && table.contains("SA01"), "{table}");
    let page = server.cli(&["sensors", "list", "--json", "--sort", "-name"]).json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["name"], "SA01");
    let page = server.cli(&["sensors", "list", "--json", "--type", "domain_controller", "--tag", "pci"]).json();
    assert_eq!(page["total"], 1);
    let all = server.cli(&["sensors", "list", "--json", "--all", "--limit", "1"]).json();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // Show and edit.
    let shown = server.cli(&["sensors", "show", &id]).ok();
    assert!(shown.contains("corp.example.com") && shown.contains("tier-0,pci"), "{shown}");
    let edited = server
        .cli(&["sensors", "edit", &id, "--name", "DC01-renamed", "--delayed-update", "true", "--clear-tags", "--json"])
        .json();
    assert_eq!(edited["name"], "DC01-renamed");
    assert_eq!(edited["delayed_update"], true);
    assert_eq!(edited["tags"], serde_json::json!([]));
    server.cli(&["sensors", "edit", &id]).expect_code(2);

    // Activation file on demand.
    let again = dir.path().join("again.json");
    server.cli(&["sensors", "activation-file", &id, "--out", again.to_str().unwrap()]).ok();
    assert_eq!(std::fs::metadata(&again).unwrap().permissions().mode() & 0o777, 0o600);

    // Export: to stdout and to a file, the contract's columns.
    let csv = server.cli(&["sensors", "export"]).ok();
    assert!(csv.starts_with("Sensor,Type,Domain,Subscription,Site,Zone,Tags,Mode,Service Status,Sensor Status,Version,Delayed Update,Health Status,Health Issues,Created,Last Seen"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // `--out -` is stdout too, not a file named "-".
    assert_eq!(server.cli(&["sensors", "export", "--out", "-"]).ok(), csv);
    let out = dir.path().join("fleet.csv");
    server.cli(&["sensors", "export", "--subscription", "finance", "--out", out.to_str().unwrap()]).ok();
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("SA01"));

    // Summary.
    let summary = server.cli(&["summary", "--json"]).json();
    assert_eq!(summary["total"], 2);
    assert_eq!(summary["by_sensor_status"]["pending_activation"], 2);
    assert!(server.cli(&["summary"]).ok().contains("pending_activation"));

    // Errors and their exit codes: not found 3, auth 4, refused input 5, usage 2, failure 1.
    let missing = server.cli(&["sensors", "show", "00000000-0000-4000-8000-000000000000"]);
    missing.expect_code(3);
    assert!(missing.stderr().starts_with("error: "), "{}", missing.stderr());
    server.cli_as(Some("pkt_wrong_token_0123456789"), &["sensors", "list"]).expect_code(4);
    server.cli(&["sensors", "onboard", "--name", "SA01", "--type", "standalone"]).expect_code(5);
    server.cli(&["sensors", "onboard", "--name", "bad name!", "--type", "standalone"]).expect_code(5);
    server.cli(&["zones", "create", "Head office"]).expect_code(5);
    server.cli(&["sensors", "list", "--sensor-status", "sideways"]).expect_code(2);
    server.cli(&["sensors", "delete", &id]).expect_code(2);
    let unreachable = picket(dir.path())
        .args(["summary", "--server", &format!("http://127.0.0.1:{}", crate::harness::free_port())])
        .env("PICKET_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    let no_token = picket(dir.path()).args(["summary", "--server", &server.url()]).output().unwrap();
    assert_eq!(no_token.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("PICKET_TOKEN"));

    // Tokens: a viewer reads but may not onboard; revoked it reads nothing.
    let created = server.cli(&["tokens", "create", "--role", "viewer", "--description", "ci", "--json"]).json();
    let viewer = created["token"].as_str().unwrap().to_string();
    let viewer_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(server.cli_as(Some(&viewer), &["sensors", "list", "--json"]).json()["total"], 2);
    server.cli_as(Some(&viewer), &["sensors", "onboard", "--name", "X1", "--type", "adfs"]).expect_code(4);
    let listed = server.cli(&["tokens", "list"]).ok();
    assert!(listed.contains(&viewer_id) && !listed.contains(&viewer), "{listed}");
    assert!(server.cli(&["tokens", "create", "--role", "operator"]).ok().contains("only this once"));
    server.cli(&["tokens", "revoke", &viewer_id]).ok();
    server.cli_as(Some(&viewer), &["summary"]).expect_code(4);

    // Decommission, delete, and the audit log of it all.
    let dec = server.cli(&["sensors", "decommission", &id, "--json"]).json();
    assert_eq!(dec["sensor_status"], "pending_activation", "a pending sensor stays pending: {dec}");
    server.cli(&["sensors", "delete", &id, "--yes"]).ok();
    server.cli(&["sensors", "show", &id]).expect_code(3);
    server.cli(&["sensors", "delete", &id, "--yes"]).expect_code(3);
    let audit = server.cli(&["audit", "--limit", "100"]).ok();
    assert!(audit.contains("ACTION") && audit.lines().count() > 5, "{audit}");
    let audit = server.cli(&["audit", "--json"]).json();
    assert!(audit["items"].as_array().is_some_and(|a| !a.is_empty()));

    assert!(server.terminate().success());
}
