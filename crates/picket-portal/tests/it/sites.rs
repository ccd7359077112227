//! Sites and Sensors in a real browser: the counts, the connection table, the keyboard `...`
//! menu with Edit (rename, create a zone), Delete (with what it stops) and Reactivate (the
//! steps, and the prefilled onboarding form); and a viewer, who sees no menu and whose forms
//! the server refuses.

use reqwest::Method;
use serde_json::Value;

use crate::browser::{Browser, api, fixtures, server};

const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

async fn sensor(srv: &picket_testkit::server::TestServer, id: &str) -> (u16, Value) {
    api(srv, Method::GET, &format!("/api/v1/sensors/{id}"), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_edits_deletes_and_reactivates_from_sites_and_sensors() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    // Variety for the screenshot: a decommissioned host and a sensor not yet activated.
    let decommission = format!("/api/v1/sensors/{}/decommission", rows[9].id);
    assert_eq!(api(&srv, Method::POST, &decommission, None).await.0, 200);
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;
    b.navigate("#nav-sites").await;
    assert_eq!(b.path().await, "/sites");
    assert_eq!(
        b.text(&format!("#sites tr[data-id='{}'] .conn", rows[9].id)).await,
        "Unreachable (host decommissioned)"
    );
    assert_eq!(b.wait("#nav-sites").await.attr("aria-current").await.unwrap().as_deref(), Some("page"));
    assert_eq!(
        (b.text("#count-onboarded").await, b.text("#count-cloud").await, b.text("#count-local").await),
        ("10".to_string(), "9".to_string(), "1".to_string())
    );
    let headers: Vec<String> =
        b.texts("#sites thead th").await.iter().map(|h| h.trim_end_matches([' ', '▲', '▼']).to_string()).collect();
    assert_eq!(headers, ["Sensor", "Connection type", "Zone", "Version", "Connection status", "Last seen", "Actions"]);
    let row = |id: &str, col: usize| format!("#sites tr[data-id='{id}'] > :nth-child({col})");
    assert_eq!(b.text(&row(&rows[0].id, 2)).await, "Cloud connected");
    assert_eq!(b.text(&row(&rows[0].id, 5)).await, "Connected");
    assert_eq!(b.text(&row(&rows[5].id, 2)).await, "Locally managed");
    assert_eq!(b.text(&row(&rows[5].id, 5)).await, "Not applicable (locally managed)");
    assert_eq!(b.text(&row(&rows[3].id, 4)).await, "2.1.0");
    b.assert_accessible().await;

    // The `...` menu opens and closes by keyboard, and says whose actions it holds.
    let menu = format!("#menu-{}", rows[0].id);
    let summary = b.wait(&format!("{menu} > summary")).await;
    assert_eq!(summary.attr("aria-label").await.unwrap().as_deref(), Some("Actions for dc01-10-0-0-5"));
    summary.send_keys(ENTER).await.unwrap();
    b.wait(&format!("{menu}[open] .menu-edit")).await;
    b.screenshot("sites.png").await;
    b.js("document.activeElement.blur(); return null;").await;
    let first_item = b.wait(&format!("{menu} .menu-edit")).await;
    first_item.send_keys(ESCAPE).await.unwrap();
    assert!(!b.has(&format!("{menu}[open]")).await, "Escape closes the menu");
    assert_eq!(b.js("return document.activeElement.tagName;").await, "SUMMARY", "focus returns to the button");

    // Edit: rename and move into a zone created on the spot.
    let target = &rows[1];
    b.click(&format!("#menu-{} > summary", target.id)).await;
    b.navigate(&format!("#menu-{} .menu-edit", target.id)).await;
    assert_eq!(b.wait("#edit-name").await.prop("value").await.unwrap().as_deref(), Some(target.name.as_str()));
    b.assert_accessible().await;
    b.fill("#edit-name", "dc02-renamed-10-0-0-6").await;
    b.fill("#new-zone", "north").await;
    b.navigate("#edit-save").await;
    b.wait_text("#notice", "Changes saved.").await;
    let (_, after) = sensor(&srv, &target.id).await;
    assert_eq!((after["name"].as_str(), after["zone"].as_str()), (Some("dc02-renamed-10-0-0-6"), Some("north")));
    assert_eq!(b.text(&row(&target.id, 3)).await, "north");
    // A refused edit keeps what was typed and says why.
    b.click(&format!("#menu-{} > summary", target.id)).await;
    b.navigate(&format!("#menu-{} .menu-edit", target.id)).await;
    b.fill("#edit-name", &rows[0].name).await;
    b.navigate("#edit-save").await;
    assert!(b.text("#edit-error").await.contains(&rows[0].name), "duplicate name refused");
    assert_eq!(b.wait("#edit-name").await.prop("value").await.unwrap().as_deref(), Some(rows[0].name.as_str()));

    // Delete, after a confirmation saying what deleting a cloud-connected sensor stops.
    b.goto("/sites").await;
    b.click(&format!("#menu-{} > summary", target.id)).await;
    b.navigate(&format!("#menu-{} .menu-delete", target.id)).await;
    let confirm = b.text("#confirm").await;
    assert!(
        confirm.contains("certificate is revoked") && confirm.contains("no longer receives configuration, updates")
    );
    b.navigate("#confirm-button").await;
    b.wait_text("#notice", "Sensor deleted.").await;
    assert_eq!(sensor(&srv, &target.id).await.0, 404);
    assert_eq!(b.text("#count-onboarded").await, "9");

    // Reactivate: the steps, then delete and onboard again with the same settings.
    let ot = &rows[3];
    b.click(&format!("#menu-{} > summary", ot.id)).await;
    b.navigate(&format!("#menu-{} .menu-reactivate", ot.id)).await;
    let steps = b.text("#reactivate").await;
    assert!(steps.contains("Delete") && steps.contains("Onboard it again") && steps.contains("new activation file"));
    assert_eq!(
        b.text("#reactivate-command").await,
        format!("picket-sensor reactivate --activation-file {}.activation.json", ot.name)
    );
    b.screenshot("reactivate.png").await;
    b.assert_accessible().await;
    b.navigate("#reactivate-delete").await;
    b.navigate("#confirm-button").await;
    assert_eq!(b.path().await.split('?').next(), Some("/sensors/onboard"));
    assert_eq!(b.wait("#name").await.prop("value").await.unwrap().as_deref(), Some(ot.name.as_str()));
    assert_eq!(b.wait("#zone").await.prop("value").await.unwrap().as_deref(), Some("west"));
    assert_eq!(b.wait("#type").await.prop("value").await.unwrap().as_deref(), Some("ot_network"));
    assert_eq!(sensor(&srv, &ot.id).await.0, 404, "the old identity is gone");
    b.navigate("#onboard-submit").await;
    b.wait("#download-activation").await;

    // Export downloads the CSV of the same sensors.
    b.goto("/sites?q=dc").await;
    let export = b.wait("#export").await.attr("href").await.unwrap().unwrap();
    assert_eq!(export, "/sensors/export.csv?q=dc");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_sees_sites_without_menus_and_is_refused() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "viewer").await;
    b.navigate("#nav-sites").await;
    assert_eq!(b.text("#count-onboarded").await, "10");
    assert_eq!(b.texts("#sites tbody tr").await.len(), 10);
    assert!(!b.has("details.menu").await && !b.has("a[href='/sensors/onboard']").await, "no mutating controls");
    let id = &rows[0].id;
    for page in ["edit", "delete", "reactivate"] {
        b.goto(&format!("/sites/{id}/{page}")).await;
        assert_eq!(b.wait("#error").await.attr("data-status").await.unwrap().as_deref(), Some("403"), "{page}");
    }
    b.goto("/sites").await;
    for (path, body) in [
        (format!("/sites/{id}/edit"), "&name=x&zone=west&new_zone=evil".to_string()),
        (format!("/sites/{id}/delete"), String::new()),
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
    assert_eq!((status, s["name"].as_str()), (200, Some(rows[0].name.as_str())));
    let (_, zones) = api(&srv, Method::GET, "/api/v1/zones", None).await;
    assert!(!zones.to_string().contains("evil"), "no zone created by a viewer");
    b.close().await;
}
