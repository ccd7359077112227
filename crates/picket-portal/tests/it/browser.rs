//! The harness: a real server with fixture sensors and users, and a fresh headless Chromium
//! session (own profile and download dir) driven over WebDriver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{ClientBuilder, Locator};
use picket_domain::{HealthStatus, Mode, Role, SensorType, ServiceStatus, Timestamp, UpdateState};
use picket_server::Clock;
use picket_store::SensorRow;
use picket_testkit::server::TestServer;
use serde_json::{Value, json};

/// Password of every test user.
pub const PASSWORD: &str = "correct horse battery staple";

/// The Chrome flags of STACK.md for a quiet, sandbox-free headless run in a container.
const CHROME_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1920,1080",
];

/// A test server with users `operator`, `viewer` (and the admin token).
pub async fn server() -> TestServer {
    let srv = TestServer::start_sqlite().await;
    srv.create_user("operator", Role::Operator, PASSWORD).await;
    srv.create_user("viewer", Role::Viewer, PASSWORD).await;
    srv
}

/// Name, type, zone, site, health, open issues, version, tags of a fixture sensor.
type Spec =
    (&'static str, SensorType, &'static str, &'static str, HealthStatus, i64, &'static str, &'static [&'static str]);

/// Sensors with varied fields, statuses and health, in zones `default`, `east`, `west`.
pub async fn fixtures(srv: &TestServer) -> Vec<SensorRow> {
    for zone in ["east", "west"] {
        api(srv, reqwest::Method::POST, "/api/v1/zones", Some(json!({"name": zone}))).await;
    }
    let now = srv.clock.now();
    let min = 60_000;
    let specs: [Spec; 10] = [
        ("dc01-10-0-0-5", SensorType::DomainController, "east", "HQ", HealthStatus::Healthy, 0, "2.4.0", &["tier0"]),
        (
            "dc02-10-0-0-6",
            SensorType::DomainController,
            "east",
            "HQ",
            HealthStatus::NotHealthyLow,
            1,
            "2.4.0",
            &["tier0"],
        ),
        ("adfs01-10-0-1-5", SensorType::Adfs, "west", "Branch", HealthStatus::Healthy, 0, "2.3.1", &["federation"]),
        (
            "ot-plant-a-10-2-0-10",
            SensorType::OtNetwork,
            "west",
            "Plant A",
            HealthStatus::NotHealthyHigh,
            3,
            "2.1.0",
            &["ot", "line-1"],
        ),
        (
            "ot-plant-b-10-2-1-10",
            SensorType::OtNetwork,
            "default",
            "Plant B",
            HealthStatus::NotHealthyMedium,
            2,
            "2.4.0",
            &["ot"],
        ),
        ("sa01-10-0-3-7", SensorType::Standalone, "default", "Lab", HealthStatus::Healthy, 0, "2.4.0", &[]),
        (
            "dc03-10-1-0-5",
            SensorType::DomainController,
            "default",
            "Branch",
            HealthStatus::Healthy,
            0,
            "2.2.0",
            &["tier0"],
        ),
        ("dc04-10-1-0-6", SensorType::DomainController, "east", "HQ", HealthStatus::Healthy, 0, "2.4.0", &[]),
        ("ot-yard-10-2-2-10", SensorType::OtNetwork, "west", "Yard", HealthStatus::NotHealthyLow, 1, "2.4.0", &["ot"]),
        ("dc05-10-1-0-7", SensorType::DomainController, "default", "HQ", HealthStatus::Healthy, 0, "2.4.0", &[]),
    ];
    let rows: Vec<SensorRow> = specs
        .iter()
        .enumerate()
        .map(|(n, (name, t, zone, site, health, issues, version, tags))| SensorRow {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            name: name.to_string(),
            sensor_type: *t,
            domain: if *t == SensorType::OtNetwork { String::new() } else { "corp.example.com".to_string() },
            subscription: "default".to_string(),
            site: site.to_string(),
            zone: zone.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            mode: if n == 5 { Mode::LocallyManaged } else { Mode::CloudConnected },
            auto_ti_updates: true,
            description: String::new(),
            capture_setting: Some("eth1".to_string()),
            delayed_update: n == 6,
            service_status: if n == 3 { ServiceStatus::Stopped } else { ServiceStatus::Running },
            version: Some(version.parse().unwrap()),
            created_at: Timestamp(now.0 - 40 * 24 * 60 * min + n as i64 * 97 * min),
            last_seen_at: Some(Timestamp(now.0 - (n as i64 % 3) * min / 2)),
            activated_at: Some(Timestamp(now.0 - 30 * 24 * 60 * min)),
            decommissioned_at: None,
            service_started_at: Some(Timestamp(now.0 - 24 * 60 * min)),
            last_config_pull_at: Some(Timestamp(now.0 - 23 * 60 * min)),
            update_state: UpdateState::Idle,
            config_version_applied: 1,
            config_version_desired: 1,
            ti_version: Some(12),
            open_issues: *issues,
            health_status: *health,
            activation_expires_at: None,
            cert_fingerprint: Some(format!("{n:064}")),
        })
        .collect();
    srv.store.import_sensors(&rows).await.expect("import fixture sensors");
    rows
}

/// A REST call as the admin; the JSON answer (or `null`).
pub async fn api(srv: &TestServer, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, srv.url(path)).bearer_auth(&srv.admin_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A Chromium session on `srv`.
pub struct Browser {
    /// The WebDriver client.
    pub c: fantoccini::Client,
    base: String,
    /// Where downloads land.
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

fn webdriver_url() -> String {
    std::env::var("PICKET_TEST_WEBDRIVER").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| {
        panic!(
            "browser tests need PICKET_TEST_WEBDRIVER, the URL of a running chromedriver: run ./scripts/test.sh, \
             which installs the Debian packages chromium and chromium-driver when missing and starts one \
             (or start `chromedriver --port=9515` yourself and set PICKET_TEST_WEBDRIVER=http://127.0.0.1:9515)"
        )
    })
}

impl Browser {
    /// A new headless Chromium with a fresh profile.
    pub async fn open(srv: &TestServer) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut options = json!({
            "args": args,
            "prefs": {
                "download.default_directory": downloads.path().display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        });
        if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&webdriver_url())
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium through {}: {e}", webdriver_url()));
        Browser { c, base: srv.base_url.clone(), downloads, _profile: profile }
    }

    /// Opens `path` of the server.
    pub async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The current path and query.
    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// The current URL.
    pub async fn url(&self) -> url::Url {
        self.c.current_url().await.unwrap()
    }

    /// Waits for an element (htmx swaps and navigations take a moment).
    pub async fn wait(&self, css: &str) -> Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on {}: {e}", self.path_now()))
    }

    fn path_now(&self) -> String {
        "the page".to_string()
    }

    /// Whether an element is on the page now.
    pub async fn has(&self, css: &str) -> bool {
        !self.c.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    /// Clicks an element.
    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Clicks an element that loads a new page, and waits until the new page has replaced the
    /// old one, so that later reads never see (or go stale on) the page being left.
    pub async fn navigate(&self, css: &str) {
        self.js("window.__picketLeaving = true;").await;
        self.click(css).await;
        for _ in 0..200 {
            let loaded = self
                .c
                .execute("return window.__picketLeaving === undefined && document.readyState === 'complete';", vec![])
                .await;
            if matches!(loaded, Ok(Value::Bool(true))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {css} did not load a new page within 10 s");
    }

    /// Replaces the text of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// The visible text of an element; an htmx swap that replaces it between finding and
    /// reading is retried on the new element.
    pub async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            match self.wait(css).await.text().await {
                Ok(t) => return t,
                Err(fantoccini::error::CmdError::Standard(w))
                    if w.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("reading {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced while read");
    }

    /// Waits (10 s at most) until an element's text is `expected`: a notice swapped in by htmx
    /// after a click replaces the previous one only once the server has answered.
    pub async fn wait_text(&self, css: &str, expected: &str) {
        let mut seen = String::new();
        for _ in 0..100 {
            if self.has(css).await {
                seen = self.text(css).await;
                if seen == expected {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never read {expected:?} within 10 s; last seen {seen:?}");
    }

    /// Texts of all matching elements.
    /// An htmx swap may replace the elements between finding and reading them; that read is
    /// retried on the new elements.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        'retry: for _ in 0..20 {
            let mut out = Vec::new();
            for e in self.c.find_all(Locator::Css(css)).await.unwrap() {
                match e.text().await {
                    Ok(t) => out.push(t),
                    Err(fantoccini::error::CmdError::Standard(w))
                        if w.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue 'retry;
                    }
                    Err(e) => panic!("reading {css}: {e}"),
                }
            }
            return out;
        }
        panic!("{css} kept being replaced while read");
    }

    /// Signs in through the form at `/login?next=...` (or `/login`).
    pub async fn sign_in(&self, login_path: &str, user: &str) {
        self.goto(login_path).await;
        self.fill("#username", user).await;
        self.fill("#password", PASSWORD).await;
        self.navigate("#login button[type=submit]").await;
        self.wait("#sign-out").await;
    }

    /// Runs JavaScript in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.c.execute(script, Vec::new()).await.unwrap()
    }

    /// Runs asynchronous JavaScript (the last argument is the callback).
    pub async fn js_async(&self, script: &str) -> Value {
        self.c.execute_async(script, Vec::new()).await.unwrap()
    }

    /// Saves a screenshot of the window to `docs/screenshots/<name>`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.c.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits for a downloaded file whose name ends with `suffix`; its contents.
    pub async fn downloaded(&self, suffix: &str) -> String {
        for _ in 0..100 {
            for entry in std::fs::read_dir(self.downloads.path()).unwrap() {
                let p = entry.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name.ends_with(suffix) {
                    return std::fs::read_to_string(&p).unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no *{suffix} downloaded into {}", self.downloads.path().display());
    }

    /// Checks basic accessibility of the current page: every form control has a label, every
    /// link, button and menu button a name, ids are unique, the page has a language and one
    /// `h1`. Panics naming what is wrong.
    pub async fn assert_accessible(&self) {
        let problems = self
            .js(
                "const p = [];
                 if (!document.documentElement.lang) p.push('no lang on <html>');
                 if (document.querySelectorAll('h1').length !== 1) p.push('not exactly one h1');
                 for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
                   if (!e.labels.length && !e.getAttribute('aria-label')) p.push('unlabelled ' + e.outerHTML.slice(0, 80));
                 }
                 for (const e of document.querySelectorAll('a, button, summary')) {
                   const name = (e.getAttribute('aria-label') || e.textContent || '').trim();
                   if (!name) p.push('nameless ' + e.outerHTML.slice(0, 80));
                 }
                 const ids = {};
                 for (const e of document.querySelectorAll('[id]')) {
                   if (ids[e.id]) p.push('duplicate id ' + e.id);
                   ids[e.id] = true;
                 }
                 return p;",
            )
            .await;
        assert_eq!(problems, serde_json::json!([]), "accessibility problems on {}", self.path().await);
    }

    /// Ends the browser session.
    pub async fn close(self) {
        let _ = self.c.close().await;
    }
}
