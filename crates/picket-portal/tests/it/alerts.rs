//! The Alerts page in a real browser: alerts uploaded by sensors (through the use case behind
//! `POST /sensor/v1/alerts`) are listed newest first, the severity filter goes into the URL
//! and narrows the table, and a new upload appears without a reload (5 s live polling).

use std::time::{Duration, Instant};

use picket_domain::Timestamp;
use picket_proto::ti::{AlertIndicator, AlertUpload, SensorAlert};
use picket_server::Clock;
use picket_store::SensorRow;
use picket_testkit::server::TestServer;

use crate::browser::{Browser, fixtures, server};

fn alert(id: &str, minutes_ago: i64, severity: &str, kind: &str, value: &str, excerpt: &str) -> SensorAlert {
    SensorAlert {
        id: id.to_string(),
        time: Timestamp(picket_server::SystemClock.now().0 - minutes_ago * 60_000),
        indicator: AlertIndicator { kind: kind.to_string(), value: value.to_string() },
        severity: severity.to_string(),
        excerpt: excerpt.to_string(),
        description: Some("From the test TI package".to_string()),
        ti_version: Some(4),
        sensor_id: None,
    }
}

/// Uploads `alerts` as `sensor` through the same use case as the sensor API.
async fn upload(srv: &TestServer, sensor: &SensorRow, alerts: Vec<SensorAlert>) {
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let r = prepared.app().upload_alerts(sensor, &AlertUpload { alerts }).await.unwrap();
    assert!(r.accepted > 0, "{r:?}");
}

async fn rows(b: &Browser) -> Vec<String> {
    b.texts("#alerts-body tr").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_lists_filters_and_refreshes() {
    let srv = server().await;
    let sensors = fixtures(&srv).await;
    upload(
        &srv,
        &sensors[0],
        vec![
            alert("a1", 30, "high", "domain", "evil.example", r#"{"query":"beacon.evil.example","client":"10.0.0.5"}"#),
            alert("a2", 20, "low", "ip", "203.0.113.9", r#"{"src":"10.0.0.5","dst":"203.0.113.9","port":443}"#),
        ],
    )
    .await;
    upload(
        &srv,
        &sensors[1],
        vec![alert(
            "b1",
            10,
            "medium",
            "sha256",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            r#"{"file":"C:\\Users\\x\\dropper.exe","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}"#,
        )],
    )
    .await;

    let b = Browser::open(&srv).await;
    b.sign_in("/login", "viewer").await;
    b.navigate("#nav-alerts").await;
    assert_eq!(b.path().await, "/alerts");
    assert_eq!(b.wait("#nav-alerts").await.attr("aria-current").await.unwrap().as_deref(), Some("page"));
    assert_eq!(b.text("#count").await, "3 alerts match");
    let all = rows(&b).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all[0].contains("Medium") && all[0].contains(&sensors[1].name), "newest first: {all:?}");
    assert!(all[2].contains("High") && all[2].contains("evil.example") && all[2].contains("beacon.evil.example"));
    b.screenshot("alerts.png").await;
    b.assert_accessible().await;

    // Filter by severity: the choice goes into the URL and narrows the table.
    b.js("for (const o of document.querySelectorAll('#filter-severity option')) o.selected = o.value === 'high';")
        .await;
    b.navigate("#apply").await;
    assert!(b.path().await.contains("severity=high"), "{}", b.path().await);
    assert_eq!(b.text("#count").await, "1 alert match");
    let high = rows(&b).await;
    assert!(high.len() == 1 && high[0].contains("evil.example"), "{high:?}");

    // A new high alert is uploaded: it appears without a reload, still filtered.
    b.js("window.__still_here = true;").await;
    upload(&srv, &sensors[2], vec![alert("c1", 1, "high", "cidr", "198.51.100.0/24", r#"{"src":"198.51.100.23"}"#)])
        .await;
    upload(&srv, &sensors[2], vec![alert("c2", 1, "low", "ip", "192.0.2.1", r#"{"src":"192.0.2.1"}"#)]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rows(&b).await;
        if now.len() == 2 {
            assert!(now[0].contains("198.51.100.0/24"), "the new alert on top: {now:?}");
            assert!(now.iter().all(|r| r.contains("High")), "the live refresh keeps the filter: {now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the new alert did not appear in 30 s: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(b.js("return window.__still_here === true;").await, serde_json::json!(true), "no reload");
    b.close().await;
}
