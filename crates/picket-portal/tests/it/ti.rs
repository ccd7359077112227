//! The Threat intelligence page: the empty state before any publish; two TI packages
//! published through the REST API listed newest first with the current one marked, each
//! downloadable (the browser saves `picket-ti-<version>.tipkg` with no confirmation to wait
//! for, byte for byte the published package); the import steps for sensors without auto TI
//! updates. How many sensors run each version, are behind the current one or have no TI yet,
//! counted in the user's subscription scope. A viewer sees and downloads them too; without a
//! session the page and the download send to sign-in; an unknown version is 404 (on SQLite and
//! PostgreSQL).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use picket_domain::{Mode, Role, SensorType, Timestamp};
use picket_package::{SecretKey, TiBuildOptions};
use picket_server::ServerConfig;
use picket_store::NewSensor;
use picket_testkit::server::TestServer;
use serde_json::{Value, json};

use crate::browser::{Browser, PASSWORD, api};

/// The key the test servers trust.
fn trusted() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

/// Trust `trusted()` (TI packages are verified with the release keys).
fn configure(c: &mut ServerConfig) {
    let path = c.data_dir.join("release.pub");
    std::fs::write(&path, format!("{}\n", trusted().public().to_base64())).unwrap();
    c.release_key_pubs = vec![path];
}

/// A TI package of `version` with `n` indicators, signed by the trusted key.
fn ti_package(version: i64, n: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"type": "domain", "value": format!("bad{i}.v{version}.example"), "severity": "high"}))
        .collect();
    let indicators = serde_json::to_vec(&json!({ "indicators": items })).unwrap();
    let now = picket_server::Clock::now(&picket_server::SystemClock);
    let opts = TiBuildOptions { version, indicator_count: n as u64, signed_at: Timestamp(now.0) };
    picket_package::build_ti(&indicators, &opts, &trusted()).unwrap()
}

/// Publishes `pkg` through the REST API as the admin token.
async fn publish(srv: &TestServer, pkg: &[u8]) {
    let r = reqwest::Client::new()
        .post(srv.url("/api/v1/ti-packages"))
        .bearer_auth(&srv.admin_token)
        .header("content-type", "application/octet-stream")
        .body(pkg.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

/// A server trusting the key, with users `operator` and `viewer`.
async fn users(srv: &TestServer) {
    srv.create_user("operator", Role::Operator, PASSWORD).await;
    srv.create_user("viewer", Role::Viewer, PASSWORD).await;
}

/// Waits (deadline 30 s) for the browser to have saved the whole download under `name` (a
/// `.pkg` would instead wait as `Unconfirmed <n>.crdownload` for a Keep that a headless
/// browser has no button for: Chromium takes it for a macOS installer); its bytes.
async fn saved(b: &Browser, name: &str, size: usize) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut listing = Vec::new();
        for entry in std::fs::read_dir(b.downloads.path()).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file == name
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.len() == size
            {
                return bytes;
            }
            listing.push(file);
        }
        assert!(Instant::now() < deadline, "no complete {name} downloaded within 30 s; download dir: {listing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetches `href` in the page (with the session cookie): status, content disposition and the
/// body as hex.
async fn fetch_in_page(b: &Browser, href: &str) -> Value {
    b.js_async(&format!(
        "const done = arguments[arguments.length - 1];
         fetch({href:?}).then(async r => {{
           const bytes = new Uint8Array(await r.arrayBuffer());
           const hex = Array.from(bytes, x => x.toString(16).padStart(2, '0')).join('');
           done({{status: r.status, disposition: r.headers.get('content-disposition'), hex}});
         }});"
    ))
    .await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_lists_and_downloads_ti_packages() {
    let srv = TestServer::start_sqlite_with(configure).await;
    users(&srv).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;

    // Before any publish: the empty state and the generic import steps.
    b.navigate("#nav-ti").await;
    assert_eq!(b.path().await, "/threat-intel");
    assert_eq!(b.wait("#nav-ti").await.attr("aria-current").await.unwrap().as_deref(), Some("page"));
    assert_eq!(b.text("h1").await, "Threat intelligence");
    assert!(b.text("#no-ti").await.contains("picket ti publish"));
    assert!(!b.has("#ti-packages").await);
    assert_eq!(b.text("#import-command").await, "picket-sensor ti import PKG --state-dir D");
    b.assert_accessible().await;

    // Two packages: both listed, newest first, the newer one current.
    let older = ti_package(41, 3);
    let newer = ti_package(42, 5);
    publish(&srv, &older).await;
    publish(&srv, &newer).await;
    #[rustfmt::skip]
    let fleet = [
        ("dc1", "default", Some(42)), ("dc2", "default", Some(42)), ("dc3", "default", Some(42)),
        ("dc4", "default", Some(41)), ("dc5", "default", Some(41)), ("dc6", "default", None),
    ];
    sensors(&srv, &fleet).await;
    b.goto("/threat-intel").await;
    assert_eq!(b.texts("#ti-packages tbody th").await, ["42 Current", "41"]);
    assert!(b.has("#ti-42 #current-ti").await && !b.has("#ti-41 #current-ti").await);
    let cells = b.texts("#ti-42 td").await;
    assert_eq!(cells[0], "3", "sensors running it: {cells:?}");
    assert_eq!(cells[1], "5", "indicator count: {cells:?}");
    assert_eq!(cells[3], trusted().public().key_id(), "signing key: {cells:?}");
    assert!(cells[4].starts_with("token:"), "published by the admin token: {cells:?}");
    assert_eq!(b.texts("#ti-41 td").await[..2], ["2", "3"], "the older package's sensors and indicators");
    assert_eq!(
        b.text("#download-command").await,
        "picket ti download 42 --out picket-ti-42.tipkg --server URL --token T"
    );
    assert_eq!(b.text("#import-command").await, "picket-sensor ti import picket-ti-42.tipkg --state-dir D");
    let cards =
        [b.text("#sensors-current").await, b.text("#sensors-behind").await, b.text("#sensors-without-ti").await];
    assert_eq!(cards, ["3", "2", "1"], "on the current version, behind it, without TI");
    b.screenshot("threat-intel.png").await;
    b.assert_accessible().await;

    // The Download link is reachable from the keyboard and named for its version.
    let link = b.wait("#download-41").await;
    assert_eq!(link.attr("href").await.unwrap().as_deref(), Some("/threat-intel/41/download"));
    let name = b.js("return document.querySelector('#download-41').textContent.trim();").await;
    assert_eq!(name, "Download TI version 41");

    // Clicking it downloads the signed package, byte for byte as published, and stays on
    // the page.
    b.click("#download-41").await;
    assert_eq!(saved(&b, "picket-ti-41.tipkg", older.len()).await, older);
    assert_eq!(b.path().await, "/threat-intel");
    // The same link fetched with the session: an attachment with the API's file name.
    let got = fetch_in_page(&b, "/threat-intel/42/download").await;
    assert_eq!(got["status"], 200);
    assert_eq!(got["disposition"], "attachment; filename=\"picket-ti-42.tipkg\"");
    assert_eq!(got["hex"], hex(&newer));
    // An unknown version is 404 with the portal's error page.
    let got = fetch_in_page(&b, "/threat-intel/43/download").await;
    assert_eq!(got["status"], 404);
    b.close().await;
}

/// Imports cloud-connected, activated sensors: `(id, subscription, reported TI version)`;
/// ids starting with `local` are locally managed, with `gone` decommissioned, with `pending`
/// never activated.
async fn sensors(srv: &TestServer, specs: &[(&str, &str, Option<i64>)]) {
    let now = picket_server::Clock::now(&picket_server::SystemClock);
    let rows: Vec<_> = specs
        .iter()
        .map(|(id, subscription, ti)| {
            let mut row = picket_store::sql::new_sensor_row(&NewSensor {
                id: format!("sensor-{id}"),
                name: format!("DC-{id}"),
                sensor_type: SensorType::DomainController,
                domain: "corp.example.com".into(),
                subscription: subscription.to_string(),
                site: String::new(),
                zone: "default".into(),
                tags: Vec::new(),
                mode: if id.starts_with("local") { Mode::LocallyManaged } else { Mode::CloudConnected },
                auto_ti_updates: true,
                description: String::new(),
                capture_setting: None,
                delayed_update: false,
                created_at: Timestamp(now.0 - 3_600_000),
            });
            row.activated_at = (!id.starts_with("pending")).then_some(Timestamp(now.0 - 3_000_000));
            row.decommissioned_at = id.starts_with("gone").then_some(Timestamp(now.0 - 1_000));
            row.last_seen_at = Some(Timestamp(now.0 - 1_000));
            row.ti_version = *ti;
            row
        })
        .collect();
    srv.store.import_sensors(&rows).await.expect("import sensors");
}

/// The sensor counts of a Threat intelligence page: the three cards, then each version's cell.
fn sensor_counts(page: &str, versions: &[i64]) -> Vec<String> {
    let after = |marker: &str| {
        let at = page.find(marker).unwrap_or_else(|| panic!("{marker} not on the page: {page}")) + marker.len();
        let rest = &page[at..];
        let start = rest.find('>').unwrap() + 1;
        rest[start..start + rest[start..].find('<').unwrap()].to_string()
    };
    let mut out: Vec<String> =
        ["id=\"sensors-current\"", "id=\"sensors-behind\"", "id=\"sensors-without-ti\""].map(after).to_vec();
    out.extend(versions.iter().map(|v| after(&format!("title=\"Sensors reporting TI version {v}\""))));
    out
}

/// The session cookie of `user` (signed in over HTTP).
async fn session(srv: &TestServer, http: &reqwest::Client, user: &str) -> String {
    let r = http.post(srv.url("/login")).form(&[("username", user), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "signing in as {user}");
    r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

async fn viewers_download_and_strangers_sign_in(srv: TestServer) {
    users(&srv).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str, cookie: Option<&str>| {
        let mut req = http.get(srv.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        async move { req.send().await.unwrap() }
    };
    let viewer = session(&srv, &http, "viewer").await;
    // Empty state.
    let page = get("/threat-intel", Some(&viewer)).await.text().await.unwrap();
    assert!(page.contains("id=\"no-ti\""), "{page}");

    let first = ti_package(7, 2);
    let second = ti_package(9, 4);
    publish(&srv, &first).await;
    publish(&srv, &second).await;

    // A viewer sees both rows and downloads each, byte for byte.
    let page = get("/threat-intel", Some(&viewer)).await.text().await.unwrap();
    let (at9, at7) = (page.find("id=\"ti-9\"").unwrap(), page.find("id=\"ti-7\"").unwrap());
    assert!(at9 < at7, "newest first");
    assert!(page.contains("id=\"current-ti\""));
    assert!(page.contains("href=\"/threat-intel/7/download\""));
    for (version, bytes) in [(7, &first), (9, &second)] {
        let r = get(&format!("/threat-intel/{version}/download"), Some(&viewer)).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()["content-disposition"].to_str().unwrap(),
            format!("attachment; filename=\"picket-ti-{version}.tipkg\"")
        );
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.headers()["content-length"].to_str().unwrap(), bytes.len().to_string());
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "TI version {version}");
    }

    // How many sensors run each version, in the user's scope: in `default` two at 9 (the
    // current one), one at 7, one with no TI yet; in `plant` one at 7 and one without TI.
    // Locally managed, decommissioned and never activated sensors are not counted.
    let (status, _) = api(&srv, reqwest::Method::POST, "/api/v1/subscriptions", Some(json!({"name": "plant"}))).await;
    assert_eq!(status, 201);
    let body = json!({"username": "plantview", "password": PASSWORD, "role": "viewer", "subscriptions": ["plant"]});
    assert_eq!(api(&srv, reqwest::Method::POST, "/api/v1/users", Some(body)).await.0, 201);
    #[rustfmt::skip]
    let fleet = [
        ("a", "default", Some(9)), ("b", "default", Some(9)), ("c", "default", Some(7)), ("d", "default", None),
        ("p1", "plant", Some(7)), ("p2", "plant", None),
        ("local1", "default", Some(9)), ("gone1", "default", Some(7)), ("pending1", "default", None),
    ];
    sensors(&srv, &fleet).await;
    let page = get("/threat-intel", Some(&viewer)).await.text().await.unwrap();
    assert_eq!(sensor_counts(&page, &[9, 7]), ["2", "2", "2", "2", "2"], "current, behind, no TI, at 9, at 7");
    let plant = session(&srv, &http, "plantview").await;
    let page = get("/threat-intel", Some(&plant)).await.text().await.unwrap();
    assert_eq!(sensor_counts(&page, &[9, 7]), ["0", "1", "1", "0", "1"], "the plant viewer's sensors only");

    // Unknown and malformed versions: 404.
    for path in ["/threat-intel/8/download", "/threat-intel/10/download", "/threat-intel/nine/download"] {
        let r = get(path, Some(&viewer)).await;
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("TI package not found"), "{path}");
    }

    // Without a session (or with a dead one): to sign-in, and back here afterwards.
    for cookie in [None, Some("picket_session=forged")] {
        let r = get("/threat-intel", cookie).await;
        assert_eq!(r.status().as_u16(), 303, "{cookie:?}");
        assert_eq!(r.headers()["location"], "/login?next=%2Fthreat-intel");
        let r = get("/threat-intel/9/download", cookie).await;
        assert_eq!(r.status().as_u16(), 303, "{cookie:?}");
        assert_eq!(r.headers()["location"], "/login?next=%2Fthreat-intel%2F9%2Fdownload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_download_and_strangers_sign_in_sqlite() {
    viewers_download_and_strangers_sign_in(TestServer::start_sqlite_with(configure).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_download_and_strangers_sign_in_postgres() {
    viewers_download_and_strangers_sign_in(TestServer::start_postgres_with(configure).await).await;
}
