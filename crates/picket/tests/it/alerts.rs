//! `picket alerts list` against a real `picket serve`: alerts written into its SQLite store
//! (as the sensor API stores them) are listed as a table and as the API's JSON page, with
//! the `--severity`, `--sensor-id` and `--since` filters; a bad value is refused by the CLI.

use picket_domain::{Severity, Timestamp};
use picket_store::alerts::NewAlert;
use picket_store::{AlertStore, Store};

use crate::harness::{ADMIN_TOKEN, Server, picket};

/// Stores three alerts of the first two seeded sensors straight into the store.
fn store_alerts(data: &std::path::Path) -> (String, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let store = picket_store_sqlite::SqliteStore::open(&data.join("picket.db")).await.expect("open the store");
        let q = picket_store::SensorQuery {
            scope: picket_store::Scope::All,
            filter: Default::default(),
            sort: Default::default(),
            after: None,
            limit: 2,
            status: picket_domain::StatusContext {
                now: Timestamp(0),
                timings: Default::default(),
                outdated_below: None,
                watching_since: Timestamp(0),
            },
        };
        let sensors = store.list_sensors(&q).await.expect("list sensors");
        let now = picket_proto::time::parse_ts("2026-11-22T10:00:00Z").expect("a time");
        let alert = |id: &str, mins_ago: i64, severity: Severity| NewAlert {
            id: id.to_string(),
            time: Timestamp(now.0 - mins_ago * 60_000),
            indicator_type: "ip".to_string(),
            indicator_value: "203.0.113.9".to_string(),
            severity,
            excerpt: "{\"src\":\"203.0.113.9\"}".to_string(),
            description: None,
            ti_version: Some(2),
        };
        let (a, b) = (&sensors[0].row, &sensors[1].row);
        store
            .insert_alerts(a, &[alert("a-old", 120, Severity::High), alert("a-new", 5, Severity::Low)], now)
            .await
            .expect("store alerts");
        store.insert_alerts(b, &[alert("b-mid", 30, Severity::High)], now).await.expect("store alerts");
        (a.id.clone(), a.name.clone())
    })
}

#[test]
fn alerts_are_listed_and_filtered_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seeded = picket(dir.path()).args(["seed", "--sensors", "3", "--data-dir"]).arg(&data).output().unwrap();
    assert!(seeded.status.success(), "seed: {}", String::from_utf8_lossy(&seeded.stderr));
    let (sensor_a, name_a) = store_alerts(&data);
    let server = Server::start(dir.path(), &data, Some(ADMIN_TOKEN), 0);

    let page = server.cli(&["alerts", "list", "--json"]).json();
    assert_eq!(page["total"], 3, "{page}");
    let ids: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a-new", "b-mid", "a-old"], "newest first");
    assert_eq!(page["items"][0]["indicator"]["type"], "ip");

    let table = server.cli(&["alerts", "list", "--severity", "high"]).ok();
    let header = table.lines().next().unwrap_or_default();
    for col in ["TIME", "SENSOR", "SEVERITY", "INDICATOR", "VALUE", "EXCERPT", "ID"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.contains("b-mid") && table.contains("a-old") && !table.contains("a-new"), "{table}");
    assert!(table.contains("203.0.113.9"), "{table}");

    let mine =
        server.cli(&["alerts", "list", "--sensor-id", &sensor_a, "--since", "2026-11-22T09:00:00Z", "--json"]).json();
    assert_eq!(mine["total"], 1, "{mine}");
    assert_eq!(mine["items"][0]["id"], "a-new");
    assert_eq!(mine["items"][0]["sensor_name"], name_a.as_str());

    let bad = server.cli(&["alerts", "list", "--severity", "critical"]);
    assert_ne!(bad.code(), 0);
    assert!(bad.stderr().contains("critical"), "{}", bad.stderr());
    let bad = server.cli(&["alerts", "list", "--since", "yesterday"]);
    assert_ne!(bad.code(), 0);
    assert!(bad.stderr().contains("RFC 3339"), "{}", bad.stderr());
}
