//! Every filter of the list, sorting, and cursor paging.

use std::time::Duration;

use picket_domain::{HealthStatus, Mode, SensorType, ServiceStatus, UpdateState};
use picket_testkit::server::TestServer;
use serde_json::json;

use crate::support::*;

both_backends!(
    each_filter_selects_what_it_says,
    sort_orders_and_directions,
    cursor_paging_walks_everything_once,
    statuses_follow_the_clock
);

/// Eight sensors that differ in one attribute each from the baseline `BASE`.
async fn fleet(srv: &TestServer) {
    post(srv, "/api/v1/zones", json!({"name": "DMZ"})).await.expect(201);
    subscription(srv, "emea").await;
    let mut rows = Vec::new();
    let mut r = row(srv, 1, "BASE");
    r.tags = vec!["prod".into()];
    rows.push(r);
    let mut r = row(srv, 2, "STOPPED");
    r.service_status = ServiceStatus::Stopped;
    rows.push(r);
    let mut r = row(srv, 3, "SICK");
    r.health_status = HealthStatus::NotHealthyMedium;
    r.open_issues = 2;
    rows.push(r);
    let mut r = row(srv, 4, "ADFS");
    r.sensor_type = SensorType::Adfs;
    r.capture_setting = Some("eth1".into());
    r.domain = "other.example.org".into();
    rows.push(r);
    let mut r = row(srv, 5, "EMEA");
    r.subscription = "emea".into();
    r.site = "Paris".into();
    r.zone = "DMZ".into();
    rows.push(r);
    let mut r = row(srv, 6, "LOCAL");
    r.mode = Mode::LocallyManaged;
    r.tags = vec!["lab".into(), "prod".into()];
    rows.push(r);
    let mut r = row(srv, 7, "NEWER");
    r.version = Some("1.2.0".parse().unwrap());
    r.delayed_update = true;
    rows.push(r);
    let mut r = row(srv, 8, "BROKEN");
    r.update_state = UpdateState::Failed;
    rows.push(r);
    import(srv, rows).await;
    settle(srv).await;
}

/// Waits until the status job has raised the issues this fleet's facts call for (`STOPPED`'s
/// service stopped, `BROKEN`'s update failed), so that health filters and sorts see a fleet at
/// rest rather than racing the job.
async fn settle(srv: &TestServer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let open = get(srv, "/api/v1/health-issues?status=open").await.expect(200);
        if open["total"] == 2 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the status job raised no issues in 30 s: {open}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check(srv: &TestServer, query: &str, expected: &[&str]) {
    let page = get(srv, &format!("/api/v1/sensors?{query}&sort=name")).await.expect(200);
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names(&page), want, "{query}");
    assert_eq!(page["total"], expected.len(), "{query}");
}

async fn each_filter_selects_what_it_says(srv: TestServer) {
    fleet(&srv).await;
    check(&srv, "sensor_status=update_failed", &["BROKEN"]).await;
    check(&srv, "sensor_status=not_applicable,update_failed", &["BROKEN", "LOCAL"]).await;
    check(&srv, "service_status=stopped", &["STOPPED"]).await;
    check(&srv, "health_status=not_healthy_medium", &["BROKEN", "SICK"]).await;
    check(&srv, "health_status=not_healthy_high", &["STOPPED"]).await;
    check(&srv, "type=adfs", &["ADFS"]).await;
    check(&srv, "domain=OTHER.example.org", &["ADFS"]).await;
    check(&srv, "subscription=emea", &["EMEA"]).await;
    check(&srv, "site=Paris", &["EMEA"]).await;
    check(&srv, "zone=DMZ", &["EMEA"]).await;
    check(&srv, "tag=prod", &["BASE", "LOCAL"]).await;
    check(&srv, "tag=lab,nothing", &["LOCAL"]).await;
    check(&srv, "mode=locally_managed", &["LOCAL"]).await;
    check(&srv, "version=1.2.0", &["NEWER"]).await;
    check(&srv, "delayed_update=true", &["NEWER"]).await;
    check(&srv, "q=ick", &["SICK"]).await;
    check(&srv, "q=%25", &[]).await;
    check(&srv, "type=adfs&tag=prod", &[]).await;
    check(&srv, "type=adfs,domain_controller&service_status=stopped,running&mode=locally_managed", &["LOCAL"]).await;
    let all = get(&srv, "/api/v1/sensors?delayed_update=false").await.expect(200);
    assert_eq!(all["total"], 7);
    for bad in
        ["service_status=dead", "health_status=ok", "type=router", "mode=remote", "version=1", "delayed_update=maybe"]
    {
        let m = get(&srv, &format!("/api/v1/sensors?{bad}")).await.error(400, "bad_request");
        let param = bad.split('=').next().unwrap();
        assert!(m.starts_with(param), "{bad}: {m}");
    }
}

async fn sort_orders_and_directions(srv: TestServer) {
    fleet(&srv).await;
    let page = get(&srv, "/api/v1/sensors?sort=-name").await.expect(200);
    assert_eq!(names(&page)[0], "STOPPED");
    let page = get(&srv, "/api/v1/sensors?sort=created_at").await.expect(200);
    assert_eq!(names(&page), ["BASE", "STOPPED", "SICK", "ADFS", "EMEA", "LOCAL", "NEWER", "BROKEN"]);
    let page = get(&srv, "/api/v1/sensors?sort=-health_issues&limit=1").await.expect(200);
    assert_eq!(names(&page), ["SICK"]);
    let page = get(&srv, "/api/v1/sensors?sort=sensor_status&limit=2").await.expect(200);
    assert_eq!(names(&page), ["LOCAL", "BROKEN"]);
    let page = get(&srv, "/api/v1/sensors?sort=-version&limit=1").await.expect(200);
    assert_eq!(names(&page), ["NEWER"]);
    for key in [
        "name",
        "type",
        "domain",
        "subscription",
        "site",
        "zone",
        "tags",
        "mode",
        "service_status",
        "sensor_status",
        "version",
        "delayed_update",
        "health_status",
        "health_issues",
        "created_at",
        "last_seen_at",
    ] {
        for dir in ["", "-"] {
            let page = get(&srv, &format!("/api/v1/sensors?sort={dir}{key}")).await.expect(200);
            assert_eq!(page["items"].as_array().unwrap().len(), 8, "{dir}{key}");
        }
    }
}

async fn cursor_paging_walks_everything_once(srv: TestServer) {
    let rows: Vec<_> = (0..7).map(|i| row(&srv, i, &format!("S{i}"))).collect();
    import(&srv, rows).await;
    for sort in ["name", "-name", "created_at", "-last_seen_at", "sensor_status", "-tags"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/v1/sensors?limit=3&sort={sort}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = get(&srv, &path).await.expect(200);
            assert_eq!(page["total"], 7);
            seen.extend(names(&page));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{sort}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 7, "{sort}: {seen:?}");
    }
    // A cursor belongs to its sort order.
    let page = get(&srv, "/api/v1/sensors?limit=3&sort=name").await.expect(200);
    let c = page["next_cursor"].as_str().unwrap();
    let m = get(&srv, &format!("/api/v1/sensors?limit=3&sort=-name&cursor={c}")).await.error(400, "bad_request");
    assert!(m.contains("cursor"), "{m}");
    // Exactly a full last page has no next cursor.
    let page = get(&srv, "/api/v1/sensors?limit=7").await.expect(200);
    assert!(page["next_cursor"].is_null());
}

async fn statuses_follow_the_clock(srv: TestServer) {
    import(&srv, vec![row(&srv, 1, "DC01")]).await;
    let s = onboard_named(&srv, "NEW").await;
    let path = "/api/v1/sensors/00000000-0000-4000-8000-000000000001";
    assert_eq!(get(&srv, path).await.expect(200)["sensor_status"], "up_to_date");
    srv.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(get(&srv, path).await.expect(200)["sensor_status"], "disconnected");
    check(&srv, "sensor_status=disconnected", &["DC01"]).await;
    // An onboarded sensor whose activation file was never downloaded is just pending.
    let new = get(&srv, &format!("/api/v1/sensors/{}", s["id"].as_str().unwrap())).await.expect(200);
    assert_eq!(new["sensor_status"], "pending_activation");
}
