//! The operator's path through the portal in a real browser: sign in, onboard a sensor and
//! download its activation file, choose filters and pick values, sort, open the details pane,
//! enable delayed update, edit the zone, delete with confirmation, export; and the viewer's
//! read-only view.

use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::Value;

use crate::browser::{Browser, api, fixtures, server};

/// Names in the table, in order.
async fn names(b: &Browser) -> Vec<String> {
    b.texts("#sensors tbody th").await
}

/// Zones in the table, in order.
async fn zones(b: &Browser) -> Vec<String> {
    b.texts("#sensors tbody td:nth-of-type(5)").await
}

async fn sensor(srv: &TestServer, id: &str) -> (u16, Value) {
    api(srv, Method::GET, &format!("/api/v1/sensors/{id}"), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_onboards_filters_sorts_and_manages_sensors() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let b = Browser::open(&srv).await;

    // Signing in from a bookmarked view comes back to it.
    b.sign_in("/login?next=%2Fsensors%3Fsort%3Dname", "operator").await;
    assert_eq!(b.path().await, "/sensors?sort=name");
    assert_eq!(b.text("#count").await, "10 sensors match");
    let headers = b.texts("#sensors thead th").await;
    let expected: Vec<String> = picket_proto::CSV_COLUMNS.iter().map(|c| c.to_string()).collect();
    assert_eq!(headers.iter().map(|h| h.trim_end_matches([' ', '▲', '▼']).to_string()).collect::<Vec<_>>(), expected);
    let health = b.texts("#sensors tbody .health").await;
    assert!(health.iter().any(|h| h == "Not healthy (high)") && health.iter().any(|h| h == "Healthy"), "{health:?}");

    // Onboard a sensor, then download its activation file and see the install command.
    b.navigate("#nav-onboard").await;
    b.fill("#name", "dc-new-10-0-9-9").await;
    b.wait("#type").await.select_by_value("domain_controller").await.unwrap();
    b.fill("#domain", "corp.example.com").await;
    b.wait("#zone").await.select_by_value("east").await.unwrap();
    b.fill("#tags", "new, lab").await;
    b.navigate("#onboard-submit").await;
    let command = b.text("#install-command").await;
    assert_eq!(command, "picket-updater install --quiet --activation-file dc-new-10-0-9-9.activation.json");
    let id = b.wait("#onboarded").await.attr("data-sensor").await.unwrap().unwrap();
    b.click("#download-activation").await;
    let file: Value = serde_json::from_str(&b.downloaded(".activation.json").await).unwrap();
    assert_eq!(file["sensor_id"], id.as_str());
    assert_eq!(file["sensor_name"], "dc-new-10-0-9-9");
    assert_eq!(file["activation_token"].as_str().map(str::len), Some(64));
    assert!(file["ca_cert_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    let (_, onboarded) = sensor(&srv, &id).await;
    assert_eq!(
        (onboarded["zone"].as_str(), onboarded["sensor_status"].as_str()),
        (Some("east"), Some("pending_activation"))
    );
    assert_eq!(onboarded["tags"], serde_json::json!(["new", "lab"]));

    // Choose which filters to show, then pick several values of one.
    b.goto("/sensors").await;
    assert!(!b.has("#filter-zone").await, "no filter is shown before it is chosen");
    b.click("#filters summary").await;
    b.click("#show-zone").await;
    b.click("#show-type").await;
    b.navigate("#apply").await;
    let zone_select = b.wait("#filter-zone").await;
    assert!(b.has("#filter-type").await);
    zone_select.select_by_value("east").await.unwrap();
    zone_select.select_by_value("west").await.unwrap();
    b.navigate("#apply").await;
    b.wait("#count").await;
    let url = b.url().await;
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert!(
        pairs.contains(&("zone".into(), "east".into())) && pairs.contains(&("zone".into(), "west".into())),
        "{url}"
    );
    let in_zones = rows.iter().filter(|r| r.zone == "east" || r.zone == "west").count() + 1;
    assert_eq!(b.text("#count").await, format!("{in_zones} sensors match"));
    assert!(zones(&b).await.iter().all(|z| z == "east" || z == "west"));
    // The same URL is the bookmark: reloading it shows the same view.
    let bookmarked = b.path().await;
    b.goto(&bookmarked).await;
    assert_eq!(b.text("#count").await, format!("{in_zones} sensors match"));

    // Sort by clicking a column header; again for the other way. Filters stay.
    let ascending = names(&b).await;
    let mut sorted = ascending.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(ascending, sorted, "by name by default");
    b.navigate("#sensors thead th:nth-of-type(1) a").await;
    b.wait("th[aria-sort=descending]").await;
    let descending = names(&b).await;
    assert_eq!(descending, ascending.iter().rev().cloned().collect::<Vec<_>>());
    assert!(b.path().await.contains("sort=-name") && b.path().await.contains("zone=east"));
    b.navigate("#sensors thead th:nth-of-type(13) a").await;
    b.wait("#sensors thead th:nth-of-type(13)[aria-sort=ascending]").await;
    let health = b.texts("#sensors tbody .health").await;
    assert_eq!(health.first().map(String::as_str), Some("Healthy"), "{health:?}");
    assert_eq!(health.last().map(String::as_str), Some("Not healthy (high)"), "{health:?}");

    // The export link carries the current filters and sort, and downloads their CSV.
    let export = b.wait("#export").await.attr("href").await.unwrap().unwrap();
    assert!(
        export.starts_with("/sensors/export.csv?")
            && export.contains("zone=east")
            && export.contains("sort=health_status"),
        "{export}"
    );
    let csv = b
        .js_async(&format!(
            "const done = arguments[arguments.length - 1]; fetch({export:?}).then(r => r.text()).then(done);"
        ))
        .await;
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("Sensor,Type,Domain,Subscription,Site,Zone,Tags,Mode,"), "{csv}");
    assert_eq!(csv.lines().count(), in_zones + 1, "{csv}");
    assert!(!csv.contains(",default,default,"), "only the filtered zones: {csv}");
    b.screenshot("sensors.png").await;

    // Open the details pane of a row (htmx swaps it in and pushes the URL).
    let target = rows.iter().find(|r| r.name == "dc02-10-0-0-6").unwrap();
    b.click(&format!("tr[data-id='{}'] a.sensor-link", target.id)).await;
    assert_eq!(b.text("#pane-title").await, target.name);
    assert!(b.path().await.contains(&format!("selected={}", target.id)));
    assert_eq!(b.text("#pane-health").await, "Not healthy (low)");
    let fields = b.text("#pane-fields").await;
    assert!(fields.contains("corp.example.com") && fields.contains("2.4.0") && fields.contains("tier0"), "{fields}");
    b.screenshot("details.png").await;

    // Enable delayed update, after a confirmation.
    b.click("#delayed-toggle").await;
    let confirm = b.text("#confirm").await;
    assert!(
        confirm.contains("Enable delayed update for dc02-10-0-0-6?") && confirm.contains("72 hours after"),
        "{confirm}"
    );
    b.click("#confirm-button").await;
    b.wait_text("#notice", "Delayed update enabled.").await;
    assert_eq!(b.text("#delayed-toggle").await, "Disable delayed update");
    assert_eq!(sensor(&srv, &target.id).await.1["delayed_update"], true);

    // Edit the zone.
    b.wait("#edit-zone").await.select_by_value("west").await.unwrap();
    b.click("#edit-save").await;
    b.wait_text("#notice", "Changes saved.").await;
    assert_eq!(sensor(&srv, &target.id).await.1["zone"], "west");

    // Delete, after a confirmation that says what deleting a cloud-connected sensor stops.
    b.click("#delete-link").await;
    let confirm = b.text("#confirm").await;
    assert!(confirm.contains("Delete sensor dc02-10-0-0-6?"), "{confirm}");
    assert!(
        confirm.contains("certificate is revoked") && confirm.contains("no longer receives configuration, updates"),
        "{confirm}"
    );
    b.click("#confirm-button").await;
    b.wait_text("#notice", "Sensor deleted.").await;
    assert_eq!(sensor(&srv, &target.id).await.0, 404);
    assert!(!names(&b).await.contains(&target.name));

    // Sign out ends the session.
    b.navigate("#sign-out").await;
    b.wait("#login").await;
    b.goto("/sensors").await;
    b.wait("#login").await;
    assert!(b.path().await.starts_with("/login?next="));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_sees_no_mutating_controls_and_is_refused() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "viewer").await;
    let id = &rows[0].id;
    b.goto(&format!("/sensors?selected={id}")).await;
    assert_eq!(b.text("#pane-title").await, rows[0].name);
    for control in ["#edit-form", "#delayed-toggle", "#delete-link", "#nav-onboard", "a[href='/sensors/onboard']"] {
        assert!(!b.has(control).await, "a viewer must not see {control}");
    }
    // The pages and forms are refused by the server too, with a valid form token.
    b.goto(&format!("/sensors/{id}/delete")).await;
    assert_eq!(b.wait("#error").await.attr("data-status").await.unwrap().as_deref(), Some("403"));
    b.goto("/sensors/onboard").await;
    assert_eq!(b.wait("#error").await.attr("data-status").await.unwrap().as_deref(), Some("403"));
    b.goto("/sensors").await;
    for (path, body) in [
        (format!("/sensors/{id}/delete"), String::new()),
        (format!("/sensors/{id}/edit"), "&zone=west".to_string()),
        (format!("/sensors/{id}/delayed-update"), "&enable=true".to_string()),
        ("/sensors/onboard".to_string(), "&name=x1&type=adfs".to_string()),
    ] {
        let status = b
            .js_async(&format!(
                "const done = arguments[arguments.length - 1];
                 const csrf = document.querySelector('input[name=csrf]').value;
                 fetch({path:?}, {{method: 'POST', headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
                   body: 'csrf=' + encodeURIComponent(csrf) + {body:?}}}).then(r => done(r.status));"
            ))
            .await;
        assert_eq!(status, 403, "viewer POST {path}");
    }
    let (status, s) = sensor(&srv, id).await;
    assert_eq!(
        (status, s["zone"].as_str(), s["delayed_update"].as_bool()),
        (200, Some(rows[0].zone.as_str()), Some(false))
    );

    // Reading is everything a viewer does: search by name, and page through with a cursor.
    b.goto("/sensors").await;
    b.fill("#q", "plant").await;
    b.navigate("#apply").await;
    b.wait("#count").await;
    assert_eq!(names(&b).await, ["ot-plant-a-10-2-0-10", "ot-plant-b-10-2-1-10"]);
    b.goto("/sensors?limit=4").await;
    let first = names(&b).await;
    assert_eq!(first.len(), 4);
    assert!(!b.has("#first-page").await);
    b.navigate("#next-page").await;
    b.wait("#first-page").await;
    let second = names(&b).await;
    assert_eq!(second.len(), 4);
    assert!(b.path().await.contains("cursor=") && b.path().await.contains("limit=4"));
    assert!(first.last() < second.first(), "keyset pages continue in order: {first:?} {second:?}");
    b.navigate("#next-page").await;
    b.wait("#first-page").await;
    assert_eq!(names(&b).await.len(), 2);
    assert!(!b.has("#next-page").await, "the last page has no next");
    b.close().await;
}
