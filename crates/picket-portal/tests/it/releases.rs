//! The Releases page: the published versions (the current one marked) and the rollout of the
//! current release with every sensor's progress, refreshed live; Pause and Resume for
//! operators; a viewer sees no buttons and the server refuses their forms (and forms without
//! the session's token) on both backends.

use std::path::Path;
use std::time::{Duration, Instant};

use picket_domain::{Role, Timestamp};
use picket_package::{BuildOptions, SecretKey};
use picket_server::ServerConfig;
use picket_store::SensorRow;
use picket_testkit::server::TestServer;
use serde_json::{Value, json};

use crate::browser::{Browser, PASSWORD, fixtures};

/// The key the test servers trust.
fn trusted() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

/// Trust `trusted()`.
fn configure(c: &mut ServerConfig) {
    let path = c.data_dir.join("release.pub");
    std::fs::write(&path, format!("{}\n", trusted().public().to_base64())).unwrap();
    c.release_key_pubs = vec![path];
}

/// Publishes a signed package of `version` through the REST API.
async fn publish(srv: &TestServer, dir: &Path, version: &str) {
    let input = dir.join(format!("in-{version}"));
    std::fs::create_dir_all(input.join("bin")).unwrap();
    std::fs::write(input.join("bin/picket-sensor"), b"#!/bin/sh\nexit 0\n").unwrap();
    let now = Timestamp(picket_server::Clock::now(&picket_server::SystemClock).0);
    let opts = BuildOptions {
        version: version.parse().unwrap(),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now,
        expires_at: Timestamp(now.0 + 86_400_000),
        min_updater_version: "0.1.0".parse().unwrap(),
        compression_level: 3,
    };
    let out = dir.join(format!("picket-{version}.pkg"));
    picket_package::build(&input, &opts, &trusted(), &out).unwrap();
    let r = reqwest::Client::new()
        .post(srv.url("/api/v1/releases"))
        .bearer_auth(&srv.admin_token)
        .header("content-type", "application/octet-stream")
        .body(std::fs::read(&out).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

/// A server trusting the release key, with users `operator` and `viewer`, the fixture
/// sensors (on 2.1.0 to 2.4.0), releases 2.4.0 and 2.5.0 published, and the rollout of 2.5.0
/// granting its first update (the rollout job runs every second).
async fn rolling(srv: TestServer) -> (TestServer, Vec<SensorRow>, tempfile::TempDir) {
    srv.create_user("operator", Role::Operator, PASSWORD).await;
    srv.create_user("viewer", Role::Viewer, PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    // 2.4.0 first, while no sensor exists (its rollout has nobody to update).
    publish(&srv, dir.path(), "2.4.0").await;
    let rows = fixtures(&srv).await;
    publish(&srv, dir.path(), "2.5.0").await;
    wait_for(&srv, "a grant of 2.5.0", |r| r.1 > 0).await;
    (srv, rows, dir)
}

/// Polls the store's rollout (paused, grants given) until `done` (deadline 30 s).
async fn wait_for(srv: &TestServer, what: &str, done: impl Fn((bool, usize)) -> bool) -> (bool, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = match srv.store.current_rollout().await.unwrap() {
            Some(r) => {
                let grants = srv.store.rollout_grants(r.version).await.unwrap();
                Some((r.paused, grants.len()))
            }
            None => None,
        };
        if let Some(s) = state
            && done(s)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "waited 30 s for {what}; rollout: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls a JavaScript expression in the page until it returns `expected` (deadline 30 s: a
/// live refresh comes every 5 s).
async fn until(b: &Browser, script: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = b.js(script).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{script} stayed {got}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const ROLLOUT_STATE: &str = "return document.querySelector('#rollout-state').dataset.state;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_follows_the_rollout_and_pauses_and_resumes_it() {
    let (srv, rows, _dir) = rolling(TestServer::start_sqlite_with(configure).await).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;
    b.navigate("#nav-releases").await;
    assert_eq!(b.path().await, "/releases");
    assert_eq!(b.wait("#nav-releases").await.attr("aria-current").await.unwrap().as_deref(), Some("page"));

    // The published versions, newest first, the current one marked.
    assert_eq!(b.texts("#releases tbody th").await, ["2.5.0 Current", "2.4.0"]);
    assert!(b.has("#release-2\\.5\\.0 #current-release").await);
    assert_eq!(b.text("#rollout-version").await, "2.5.0");

    // Every cloud-connected sensor is listed with its ring, state and version; the one
    // holding the grant is updating, with its times.
    let cloud = rows.iter().filter(|r| r.mode == picket_domain::Mode::CloudConnected).count();
    until(&b, "return document.querySelectorAll('#progress tbody tr').length;", json!(cloud)).await;
    until(&b, "return document.querySelectorAll('#progress tr[data-state=updating]').length;", json!(1)).await;
    let delayed = &rows[6];
    let ring = format!(
        "return document.querySelector(\"#progress tr[data-id='{}'] td:nth-of-type(2)\").textContent;",
        delayed.id
    );
    assert_eq!(b.js(&ring).await, "Delayed");
    assert_eq!(b.text("#count-updating .count-n").await, "1");
    assert_eq!(b.text("#rollout-state").await, "Active");

    // The update gets no clearance before its deadline: it fails, with its error, and the
    // failure pauses the rollout; the page follows without a reload.
    b.js("window.__sameDocument = true; return null;").await;
    srv.clock.advance(srv.config.update_deadline + Duration::from_secs(60));
    until(&b, ROLLOUT_STATE, json!("paused")).await;
    until(&b, "return document.querySelectorAll('#progress tr[data-state=failed]').length;", json!(1)).await;
    assert_eq!(b.js("return window.__sameDocument === true;").await, true, "live, no reload");
    let error = b.text("#progress tr[data-state=failed] td.error-cell").await;
    assert!(!error.is_empty(), "the failed sensor's error is shown");
    assert!(b.text("#paused-reason").await.contains("failed update"), "why it paused");
    assert_eq!(b.text("#rollout-state").await, "Paused by failures");
    b.screenshot("releases.png").await;
    b.assert_accessible().await;

    // A state's count narrows the table (in the URL).
    b.navigate("#count-failed").await;
    assert_eq!(b.path().await, "/releases?state=failed");
    assert_eq!(b.texts("#progress tbody tr").await.len(), 1);

    // Resume: the failure count starts again and the rollout is active; the filter is kept.
    b.navigate("#rollout-resume").await;
    assert!(b.text("#notice").await.starts_with("Rollout resumed"));
    assert_eq!(b.path().await, "/releases?state=failed&notice=resumed");
    assert_eq!(b.js(ROLLOUT_STATE).await, "active");
    assert!(!srv.store.current_rollout().await.unwrap().unwrap().paused);
    // Pause: an operator's pause, said so.
    b.navigate("#rollout-pause").await;
    assert!(b.text("#notice").await.starts_with("Rollout paused"));
    assert_eq!(b.js(ROLLOUT_STATE).await, "paused");
    assert_eq!(b.text("#rollout-state").await, "Paused");
    assert!(b.text("#paused-reason").await.contains("paused by an operator"));
    assert!(srv.store.current_rollout().await.unwrap().unwrap().paused);
    b.assert_accessible().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_sees_the_rollout_without_buttons_and_cannot_pause_it() {
    let (srv, _rows, _dir) = rolling(TestServer::start_sqlite_with(configure).await).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "viewer").await;
    b.goto("/releases").await;
    assert_eq!(b.text("#rollout-version").await, "2.5.0");
    b.wait("#progress tbody tr").await;
    assert!(!b.has("#rollout-pause").await && !b.has("#rollout-resume").await, "no buttons for a viewer");
    b.assert_accessible().await;
    // A forged form with the viewer's own valid token is refused, and so is one without it.
    for body in ["'csrf=' + encodeURIComponent(csrf)", "'csrf=forged'"] {
        let status = b
            .js_async(&format!(
                "const done = arguments[arguments.length - 1];
                 const csrf = document.querySelector('input[name=csrf]').value;
                 fetch('/releases/rollout/pause', {{method: 'POST',
                   headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
                   body: {body}}}).then(r => done(r.status));"
            ))
            .await;
        assert_eq!(status, 403, "{body}");
    }
    assert!(!srv.store.current_rollout().await.unwrap().unwrap().paused, "still running");
    b.close().await;
}

/// The session cookie and form token of `user` (signed in over HTTP).
async fn session(srv: &TestServer, http: &reqwest::Client, user: &str) -> (String, String) {
    let r = http.post(srv.url("/login")).form(&[("username", user), ("password", PASSWORD)]).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(srv.url("/releases")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = page[at..].split('"').next().unwrap().to_string();
    (cookie, csrf)
}

async fn rollout_forms_are_checked(srv: TestServer) {
    let (srv, _rows, _dir) = rolling(srv).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |path: &'static str, cookie: String, body: Vec<(&'static str, String)>| {
        let req = http.post(srv.url(path)).header("cookie", cookie).form(&body);
        async move { req.send().await.unwrap() }
    };
    let (op_cookie, op_csrf) = session(&srv, &http, "operator").await;
    let (viewer_cookie, viewer_csrf) = session(&srv, &http, "viewer").await;
    // Without the session's token, or posted by another site: refused.
    let r = post("/releases/rollout/pause", op_cookie.clone(), vec![("csrf", viewer_csrf.clone())]).await;
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(srv.url("/releases/rollout/pause"))
        .header("cookie", &op_cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", op_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A viewer with a valid token: refused.
    let r = post("/releases/rollout/pause", viewer_cookie.clone(), vec![("csrf", viewer_csrf.clone())]).await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(!srv.store.current_rollout().await.unwrap().unwrap().paused);
    // The operator pauses and resumes.
    let r = post("/releases/rollout/pause", op_cookie.clone(), vec![("csrf", op_csrf.clone())]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/releases?notice=paused");
    assert!(srv.store.current_rollout().await.unwrap().unwrap().paused);
    let r = post("/releases/rollout/resume", viewer_cookie, vec![("csrf", viewer_csrf)]).await;
    assert_eq!(r.status().as_u16(), 403, "a viewer cannot resume either");
    assert!(srv.store.current_rollout().await.unwrap().unwrap().paused);
    let r =
        post("/releases/rollout/resume", op_cookie.clone(), vec![("csrf", op_csrf), ("state", "failed".into())]).await;
    assert_eq!(r.headers()["location"], "/releases?state=failed&notice=resumed");
    assert!(!srv.store.current_rollout().await.unwrap().unwrap().paused);
    // The live fragment is the rollout section, with the page's filter.
    let live = http
        .get(srv.url("/releases/live/rollout"))
        .header("cookie", &op_cookie)
        .header("hx-request", "true")
        .header("hx-current-url", srv.url("/releases?state=updating"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(live.starts_with("<section class=\"rollout\" id=\"rollout\""), "{live}");
    assert!(live.contains("id=\"count-updating\" aria-current=\"true\""), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_forms_are_checked_sqlite() {
    rollout_forms_are_checked(TestServer::start_sqlite_with(configure).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_forms_are_checked_postgres() {
    rollout_forms_are_checked(TestServer::start_postgres_with(configure).await).await;
}
