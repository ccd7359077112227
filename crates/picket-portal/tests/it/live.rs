//! Live updates: the Sensors table body, the details pane and the Sites and Sensors page
//! follow changes made elsewhere (here, through the REST API) without a reload, keep the
//! view of the URL (filters, sort, selection), and hold still while a `...` menu is open.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::{Browser, api, fixtures, server};

/// Polls a JavaScript expression until it returns `expected` (deadline 20 s: a refresh comes
/// every 5 s).
async fn until(b: &Browser, script: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = b.js(script).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{script} stayed {got}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_table_and_pane_follow_api_changes_without_reloading() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;
    let watched = &rows[1];
    let view = format!("/sensors?zone=east&sort=-name&selected={}", watched.id);
    b.goto(&view).await;
    b.wait("#pane-live").await;
    b.js("window.__sameDocument = true; return null;").await;
    let east: Vec<&str> = rows.iter().filter(|r| r.zone == "east").map(|r| r.name.as_str()).collect();
    assert_eq!(b.texts("#sensors tbody th").await.len(), east.len());

    // Another operator renames the watched sensor and turns on delayed update; a third sensor
    // leaves the filtered zone.
    let patch = json!({"site": "Moved HQ", "delayed_update": true});
    assert_eq!(api(&srv, Method::PATCH, &format!("/api/v1/sensors/{}", watched.id), Some(patch)).await.0, 200);
    let leaver = rows.iter().find(|r| r.zone == "east" && r.id != watched.id).unwrap();
    let patch = json!({"zone": "west"});
    assert_eq!(api(&srv, Method::PATCH, &format!("/api/v1/sensors/{}", leaver.id), Some(patch)).await.0, 200);

    let site_cell =
        format!("return document.querySelector(\"tr[data-id='{}'] td:nth-of-type(4)\").textContent;", watched.id);
    until(&b, &site_cell, json!("Moved HQ")).await;
    let leaver_row = format!("return document.querySelector(\"tr[data-id='{}']\") === null;", leaver.id);
    until(&b, &leaver_row, json!(true)).await;
    let pane_delayed = "return [...document.querySelectorAll('#pane-fields dt')]
        .find(dt => dt.textContent === 'Delayed update').nextElementSibling.textContent;";
    until(&b, pane_delayed, json!("Yes")).await;
    assert_eq!(b.js("return window.__sameDocument === true;").await, true, "no reload");
    assert_eq!(b.path().await, view, "the URL keeps its filters, sort and selection");
    assert!(b.has(&format!("tr.selected[data-id='{}']", watched.id)).await, "the selection survives a refresh");
    let names = b.texts("#sensors tbody th").await;
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted, "still sorted by name, descending");

    // What the user types in the Manage form is never replaced by a refresh.
    b.fill("#edit-site", "typed, not saved").await;
    let patch = json!({"site": "Changed again"});
    assert_eq!(api(&srv, Method::PATCH, &format!("/api/v1/sensors/{}", watched.id), Some(patch)).await.0, 200);
    until(&b, &site_cell, json!("Changed again")).await;
    assert_eq!(b.wait("#edit-site").await.prop("value").await.unwrap().as_deref(), Some("typed, not saved"));

    // After refreshes, rows still open their pane inside the details aside, again and again.
    for r in rows.iter().filter(|r| r.zone == "east" && r.id != leaver.id) {
        b.click(&format!("#row-{}", r.id)).await;
        until(
            &b,
            "return document.querySelector('aside#details > #pane #pane-title')?.textContent ?? null;",
            json!(r.name),
        )
        .await;
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_counts_and_rows_follow_changes_and_hold_while_a_menu_is_open() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;
    b.goto("/sites").await;
    b.js("window.__sameDocument = true; return null;").await;
    let body = json!({"name": "new-10-9-9-9", "type": "ot_network", "mode": "locally_managed"});
    assert_eq!(api(&srv, Method::POST, "/api/v1/sensors", Some(body)).await.0, 201);
    until(&b, "return document.querySelector('#count-onboarded').textContent;", json!("11")).await;
    until(&b, "return document.querySelector('#count-local').textContent;", json!("2")).await;
    until(&b, "return document.querySelectorAll('#sites tbody tr').length;", json!(11)).await;

    // With a menu open, the table body skips its refreshes (and the menu stays open).
    b.click(&format!("#menu-{} > summary", rows[0].id)).await;
    b.js("window.__polls = [];
          document.addEventListener('htmx:beforeRequest', e => {
            if (e.detail.elt.id === 'sites-body') window.__polls.push(e.defaultPrevented);
          });
          return null;")
        .await;
    let patch = json!({"zone": "west"});
    assert_eq!(api(&srv, Method::PATCH, &format!("/api/v1/sensors/{}", rows[0].id), Some(patch)).await.0, 200);
    until(&b, "return window.__polls.length > 0;", json!(true)).await;
    assert_eq!(b.js("return window.__polls[0];").await, true, "the refresh was held back");
    assert!(b.has(&format!("#menu-{}[open]", rows[0].id)).await);
    let zone =
        format!("return document.querySelector(\"tr[data-id='{}'] td:nth-of-type(2)\").textContent;", rows[0].id);
    assert_eq!(b.js(&zone).await, "east", "not refreshed under the open menu");
    // Closing it lets the next refresh through.
    b.click("#count-onboarded").await;
    until(&b, &zone, json!("west")).await;
    assert_eq!(b.js("return window.__sameDocument === true;").await, true, "no reload");
    b.close().await;
}
