//! Health issues in a real browser: a sensor's issues in its details pane, the issue pane with
//! detail and recommendation, Close and Reopen (operator), the Health issues page filtered by
//! kind and status in the URL; and a viewer, who sees no buttons and whose forms are refused.

use picket_domain::issues::HealthIssueKind;
use picket_store::SensorRow;
use picket_store::health::NewHealthIssue;
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::Value;

use crate::browser::{Browser, api, fixtures, server};
use picket_server::Clock;

/// Opens an issue of `kind` on `sensor` straight in the store (as the rotation code or the
/// updater's watchdog report would), `minutes_ago` minutes ago.
async fn open_issue(srv: &TestServer, sensor: &SensorRow, kind: HealthIssueKind, minutes_ago: i64) -> String {
    let id = format!("issue-{}-{}", kind.as_str(), sensor.name);
    let issue = NewHealthIssue {
        id: id.clone(),
        sensor_id: sensor.id.clone(),
        kind,
        opened_at: picket_domain::Timestamp(srv.clock.now().0 - minutes_ago * 60_000),
        title: kind.title().to_string(),
        detail: format!("Observed on {} ({}).", sensor.name, kind.as_str()),
        recommendation: kind.recommendation().to_string(),
    };
    srv.store.open_health_issue(&issue, None).await.unwrap().expect("opened");
    id
}

async fn issue_status(srv: &TestServer, sensor_id: &str, issue_id: &str) -> String {
    let (_, page) = api(srv, Method::GET, &format!("/api/v1/sensors/{sensor_id}/health-issues"), None).await;
    let items = page["items"].as_array().unwrap();
    let issue: &Value = items.iter().find(|i| i["id"] == issue_id).unwrap();
    issue["status"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_closes_and_reopens_health_issues() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let dc02 = &rows[1];
    let watchdog = open_issue(&srv, dc02, HealthIssueKind::WatchdogRestart, 30).await;
    let cert = open_issue(&srv, dc02, HealthIssueKind::CertExpiring, 90).await;
    let other = open_issue(&srv, &rows[2], HealthIssueKind::WatchdogRestart, 10).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;

    // The sensor's details pane lists its issues; one opens in the pane (htmx, URL pushed).
    b.goto(&format!("/sensors?zone=east&selected={}", dc02.id)).await;
    let listed = b.texts("#pane-issues .issue-link").await;
    assert!(listed.iter().any(|t| t.contains(HealthIssueKind::WatchdogRestart.title())), "{listed:?}");
    assert!(listed.iter().any(|t| t.contains(HealthIssueKind::CertExpiring.title())), "{listed:?}");
    b.click(&format!("#pi-{watchdog}")).await;
    assert_eq!(b.text("#issue-title").await, HealthIssueKind::WatchdogRestart.title());
    assert!(b.text("#issue-detail").await.contains("Observed on dc02-10-0-0-6"));
    assert_eq!(b.text("#issue-recommendation").await, HealthIssueKind::WatchdogRestart.recommendation());
    assert_eq!(b.text("#issue-status").await, "Open");
    let path = b.path().await;
    assert!(path.contains(&format!("issue={watchdog}")) && path.contains("zone=east"), "{path}");
    b.screenshot("issue.png").await;
    b.assert_accessible().await;

    // Close: back to the sensor's pane (filters kept), the issue shown closed.
    b.navigate("#issue-close").await;
    b.wait_text("#notice", "Health issue closed.").await;
    assert_eq!(b.text("#pane-title").await, dc02.name);
    assert!(b.path().await.contains("zone=east"));
    assert_eq!(issue_status(&srv, &dc02.id, &watchdog).await, "closed");
    assert!(b.has(&format!("#pane-issues li.closed #pi-{watchdog}")).await);

    // The Health issues page: filter by kind and status (in the URL), open one, reopen it.
    b.navigate("#nav-health").await;
    assert_eq!(b.wait("#nav-health").await.attr("aria-current").await.unwrap().as_deref(), Some("page"));
    let all = b.texts("#issues tbody tr").await.len();
    assert!(all >= 3, "{all} issues listed");
    b.wait("#filter-kind").await.select_by_value("watchdog_restart").await.unwrap();
    b.navigate("#apply").await;
    let path = b.path().await;
    assert!(path.contains("kind=watchdog_restart"), "{path}");
    let titles = b.texts("#issues tbody th").await;
    assert_eq!(titles.len(), 2, "{titles:?}");
    let newest_first: Vec<String> = b.texts("#issues tbody td:nth-of-type(2)").await;
    assert_eq!(newest_first, [rows[2].name.clone(), dc02.name.clone()], "newest first");
    b.wait("#filter-status").await.select_by_value("closed").await.unwrap();
    b.navigate("#apply").await;
    assert_eq!(b.texts("#issues tbody tr").await.len(), 1);
    b.click(&format!("#issue-{watchdog}")).await;
    assert_eq!(b.text("#issue-status").await, "Closed");
    assert!(b.text("#issue-fields").await.contains("by user:operator"), "who closed it is shown");
    b.screenshot("health-issues.png").await;
    assert!(b.has("aside#details > #issue-pane").await, "the pane goes inside the details aside");
    b.assert_accessible().await;
    b.navigate("#issue-reopen").await;
    b.wait_text("#notice", "Health issue reopened.").await;
    let path = b.path().await;
    assert!(path.contains("kind=watchdog_restart") && path.contains("status=closed"), "filters kept: {path}");
    assert_eq!(issue_status(&srv, &dc02.id, &watchdog).await, "open");
    assert_eq!(b.texts("#issues tbody tr").await.len(), 0, "no longer closed");
    assert_eq!(issue_status(&srv, &dc02.id, &cert).await, "open", "others untouched");
    assert_eq!(issue_status(&srv, &rows[2].id, &other).await, "open");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_reads_health_issues_but_cannot_close_them() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let issue = open_issue(&srv, &rows[0], HealthIssueKind::WatchdogRestart, 5).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "viewer").await;
    b.goto(&format!("/health-issues?issue={issue}&sensor={}", rows[0].id)).await;
    assert_eq!(b.text("#issue-title").await, HealthIssueKind::WatchdogRestart.title());
    assert!(!b.has("#issue-close").await && !b.has("#issue-reopen").await, "no buttons for a viewer");
    let status = b
        .js_async(&format!(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('input[name=csrf]').value;
             fetch('/health-issues/{issue}/close', {{method: 'POST',
               headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
               body: 'csrf=' + encodeURIComponent(csrf) + '&back=%2Fhealth-issues'}}).then(r => done(r.status));"
        ))
        .await;
    assert_eq!(status, 403);
    assert_eq!(issue_status(&srv, &rows[0].id, &issue).await, "open");
    b.close().await;
}
