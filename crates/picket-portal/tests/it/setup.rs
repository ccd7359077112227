//! The first run: with no portal user, `/` and `/login` lead to `/setup`, where the holder of
//! the bootstrap token creates the first admin; the bootstrap token is then revoked and
//! replaced by a new one shown once, and the page is gone for good. Two racing submissions
//! make one admin; wrong tokens are limited per client. And the session cookie's attributes,
//! plain and behind TLS.

use std::sync::Arc;

use picket_domain::Role;
use picket_server::ServerConfig;
use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::Value;

use crate::browser::{Browser, PASSWORD, api};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn setup_post(srv: &TestServer, token: &str, username: &str) -> reqwest::Response {
    no_redirects()
        .post(srv.url("/setup"))
        .form(&[("token", token), ("username", username), ("password", PASSWORD), ("password2", PASSWORD)])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_creates_the_admin_once_and_replaces_the_bootstrap_token() {
    let srv = TestServer::start_sqlite().await;
    let b = Browser::open(&srv).await;
    b.goto("/").await;
    b.wait("#setup-form").await;
    assert_eq!(b.path().await, "/setup");
    b.goto("/login").await;
    b.wait("#setup-form").await;
    assert_eq!(b.path().await, "/setup", "no sign-in before the first user exists");
    b.goto("/sensors").await;
    b.wait("#setup-form").await;

    // Refusals keep the username and say what is wrong.
    for (token, password2, expected) in [
        ("pkt_not_the_token_0000000000000000", PASSWORD, "not the bootstrap token"),
        (srv.admin_token.as_str(), "another password!", "two passwords differ"),
        (srv.admin_token.as_str(), "short", "at least 12 characters"),
    ] {
        let password = if password2 == "short" { "short" } else { PASSWORD };
        b.fill("#token", token).await;
        b.fill("#username", "root").await;
        b.fill("#password", password).await;
        b.fill("#password2", password2).await;
        b.js("document.querySelectorAll('[minlength]').forEach(e => e.removeAttribute('minlength')); return null;")
            .await;
        b.navigate("#setup-submit").await;
        let error = b.text("#setup-error").await;
        assert!(error.contains(expected), "{error}");
        assert_eq!(b.wait("#username").await.prop("value").await.unwrap().as_deref(), Some("root"));
    }
    b.screenshot("setup.png").await;
    b.assert_accessible().await;

    b.fill("#token", &srv.admin_token).await;
    b.fill("#password", PASSWORD).await;
    b.fill("#password2", PASSWORD).await;
    b.navigate("#setup-submit").await;
    assert_eq!(b.text("#setup-user").await, "root");
    assert_eq!(b.text("#who").await, "root admin", "signed in at once");
    let new_token = b.text("#new-token").await;
    assert!(new_token.starts_with("pkt_") && new_token.len() == 68, "{new_token}");

    // The bootstrap token is revoked, its replacement works, and both are in the audit log.
    assert_eq!(api(&srv, Method::GET, "/api/v1/sensors", None).await.0, 401, "bootstrap token revoked");
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(srv.url(path)).bearer_auth(&new_token).send();
    assert_eq!(get("/api/v1/sensors").await.unwrap().status().as_u16(), 200);
    let audit: Value = get("/api/v1/audit").await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|a| a["action"].as_str()).collect();
    for action in ["user.first_run", "token.revoke", "token.create"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }

    // The page is gone for good, for browsers and for forms.
    b.navigate("#setup-continue").await;
    b.wait("#sensors").await;
    b.goto("/setup").await;
    assert_eq!(b.wait("#error").await.attr("data-status").await.unwrap().as_deref(), Some("404"));
    assert_eq!(setup_post(&srv, &new_token, "intruder").await.status().as_u16(), 404);
    assert!(srv.store.get_user("intruder").await.unwrap().is_none());
    b.goto("/sensors").await;
    b.navigate("#sign-out").await;
    b.wait("#login").await;
    assert_eq!(b.path().await, "/login", "sign-in is back once a user exists");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_with_another_admin_token_keeps_it() {
    let srv = TestServer::start_sqlite().await;
    let (status, created) = api(
        &srv,
        Method::POST,
        "/api/v1/tokens",
        Some(serde_json::json!({"role": "admin", "description": "automation"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let resp = setup_post(&srv, token, "root").await;
    assert_eq!(resp.status().as_u16(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("id=\"token-kept\"") && !page.contains("id=\"new-token\""), "{page}");
    assert_eq!(api(&srv, Method::GET, "/api/v1/sensors", None).await.0, 200, "bootstrap token untouched");
    // A viewer token does not prove anything.
    let srv = TestServer::start_sqlite().await;
    let (_, viewer) = api(&srv, Method::POST, "/api/v1/tokens", Some(serde_json::json!({"role": "viewer"}))).await;
    let resp = setup_post(&srv, viewer["token"].as_str().unwrap(), "root").await;
    assert_eq!(resp.status().as_u16(), 403);
    assert!(srv.store.list_users().await.unwrap().is_empty());
}

async fn racing_submissions_make_one_admin(srv: TestServer) {
    let names: Vec<String> = (0..6).map(|n| format!("admin{n}")).collect();
    let posts = names.iter().map(|n| setup_post(&srv, &srv.admin_token, n));
    let statuses: Vec<u16> = futures_util::future::join_all(posts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    // The others are refused: 404 (the page is gone), or 403 when they arrive after the winner
    // revoked the bootstrap token they present.
    assert!(statuses.iter().all(|s| [200, 403, 404].contains(s)), "{statuses:?}");
    let users = srv.store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].role, Role::Admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_runs_make_one_admin_sqlite() {
    racing_submissions_make_one_admin(TestServer::start_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_runs_make_one_admin_postgres() {
    racing_submissions_make_one_admin(TestServer::start_postgres().await).await;
}

/// A portal served with `--secure-cookies` (what `picket serve` mounts with the flag).
async fn secure_portal() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn picket_store::Store> =
        Arc::new(picket_store_sqlite::SqliteStore::open(&dir.path().join("picket.db")).await.unwrap());
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.bootstrap_token = Some(picket_testkit::server::ADMIN_TOKEN.to_string());
    let prepared = picket_server::prepare(config, store.clone())
        .await
        .unwrap()
        .mount(|app| picket_portal::router(app, picket_portal::PortalOptions { secure_cookies: true }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(picket_server::serve(listener, prepared, std::future::pending()));
    let base = format!("http://{addr}");
    let created = reqwest::Client::new()
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(picket_testkit::server::ADMIN_TOKEN)
        .json(&serde_json::json!({"username": "viewer", "password": PASSWORD, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    (base, dir)
}

fn set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()["set-cookie"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_attributes_plain_behind_a_tls_proxy_and_with_secure_cookies() {
    let srv = TestServer::start_sqlite().await;
    srv.create_user("viewer", Role::Viewer, PASSWORD).await;
    let http = no_redirects();
    let login = |base: &str, forwarded: bool| {
        let mut req = http.post(format!("{base}/login")).form(&[("username", "viewer"), ("password", PASSWORD)]);
        if forwarded {
            req = req.header("x-forwarded-proto", "https");
        }
        req.send()
    };
    let plain = set_cookie(&login(&srv.base_url, false).await.unwrap());
    assert!(plain.starts_with("picket_session="), "{plain}");
    assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict") && plain.contains("Path=/"), "{plain}");
    assert!(!plain.contains("Secure"), "no Secure over plain HTTP, or the browser would drop it: {plain}");
    let proxied = set_cookie(&login(&srv.base_url, true).await.unwrap());
    assert!(proxied.starts_with("__Host-picket_session=") && proxied.contains("Secure"), "{proxied}");
    assert!(proxied.contains("HttpOnly") && proxied.contains("SameSite=Strict"), "{proxied}");

    let (base, _dir) = secure_portal().await;
    let secure = set_cookie(&login(&base, false).await.unwrap());
    assert!(secure.starts_with("__Host-picket_session="), "{secure}");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(secure.contains(attr), "{attr} in {secure}");
    }
    assert!(!secure.contains("Domain="), "__Host- cookies are host-only: {secure}");
    // Sign-out clears it with the same name.
    let session = secure.split(';').next().unwrap().to_string();
    let page = http.get(format!("{base}/sensors")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "the secure cookie signs in");
}

/// A wrong-token submission from `from` (a loopback address the client binds to).
async fn setup_post_from(srv: &TestServer, from: &str, token: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let resp = client
        .post(srv.url("/setup"))
        .form(&[("token", token), ("username", "root"), ("password", PASSWORD), ("password2", PASSWORD)])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn wrong_tokens_are_limited_per_client(srv: TestServer) {
    const WRONG: &str = "pkt_guess_000000000000000000000000000000";
    for n in 0..picket_domain::user::SIGN_IN_FAILURE_LIMIT {
        let (status, page) = setup_post_from(&srv, "127.0.0.1", WRONG).await;
        assert_eq!(status, 403, "wrong token {n}: {page}");
        assert!(page.contains("not the bootstrap token"), "{page}");
    }
    let (status, page) = setup_post_from(&srv, "127.0.0.1", WRONG).await;
    assert_eq!(status, 429, "{page}");
    assert!(page.contains("id=\"setup-error\"") && page.contains("too many wrong tokens"), "{page}");
    assert!(page.contains("value=\"root\""), "the form keeps the username: {page}");
    // Even the right token is not checked while the client is locked out.
    let (status, _) = setup_post_from(&srv, "127.0.0.1", &srv.admin_token).await;
    assert_eq!(status, 429);
    assert!(srv.store.list_users().await.unwrap().is_empty());
    // Another client has its own count.
    let (status, page) = setup_post_from(&srv, "127.0.0.2", WRONG).await;
    assert_eq!(status, 403, "{page}");
    // The window passes: the first client may try again, and the right token works.
    srv.clock.advance(std::time::Duration::from_millis(picket_domain::user::SIGN_IN_WINDOW_MS as u64 + 1000));
    let (status, page) = setup_post_from(&srv, "127.0.0.1", &srv.admin_token).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(srv.store.list_users().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_first_run_tokens_are_limited_per_client_sqlite() {
    wrong_tokens_are_limited_per_client(TestServer::start_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_first_run_tokens_are_limited_per_client_postgres() {
    wrong_tokens_are_limited_per_client(TestServer::start_postgres().await).await;
}
