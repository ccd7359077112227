//! Attacks refused, each in a real browser where a browser is what an attacker would use:
//! script in a sensor's tag and description renders as text, a forged session cookie gets the
//! sign-in page, a form posted without this session's token is refused, `next=` never leads
//! to another site, and repeated wrong passwords lock the username for a while.

use reqwest::Method;
use serde_json::json;

use crate::browser::{Browser, PASSWORD, api, fixtures, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xss_payloads_in_tags_and_description_render_escaped() {
    let srv = server().await;
    let tag = "<img src=x onerror=\"window.__xss='tag'\">";
    let description = "<script>window.__xss='description'</script>\"'><b>bold?</b>";
    let body = json!({"name": "xss-10-0-0-1", "type": "standalone", "tags": [tag], "description": description});
    let (status, s) = api(&srv, Method::POST, "/api/v1/sensors", Some(body)).await;
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let b = Browser::open(&srv).await;
    b.sign_in(&format!("/login?next=%2Fsensors%3Fselected%3D{id}"), "operator").await;
    b.wait("#pane").await;
    assert_eq!(b.js("return window.__xss === undefined;").await, true, "no payload ran");
    assert!(!b.has("#pane b").await && !b.has("#sensors img").await, "no payload became markup");
    assert_eq!(b.text("#sensors td.tags").await, tag, "shown as the text it is");
    let fields = b.text("#pane-fields").await;
    assert!(fields.contains(description), "{fields}");
    let source = b.c.source().await.unwrap();
    assert!(source.contains("&lt;script&gt;") || source.contains("&#60;script&#62;"), "escaped in the HTML");
    // The edit form round-trips it as text too.
    b.click("#edit-save").await;
    b.wait_text("#notice", "Changes saved.").await;
    let (_, after) = api(&srv, Method::GET, &format!("/api/v1/sensors/{id}"), None).await;
    assert_eq!((after["tags"][0].as_str(), after["description"].as_str()), (Some(tag), Some(description)));
    assert_eq!(b.js("return window.__xss === undefined;").await, true);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_session_cookie_is_refused() {
    let srv = server().await;
    let b = Browser::open(&srv).await;
    b.goto("/login").await;
    for forged in ["0".repeat(64), "f00d".repeat(16), "not-a-session".to_string()] {
        b.c.delete_all_cookies().await.unwrap();
        b.js(&format!("document.cookie = 'picket_session={forged}; path=/'; return null;")).await;
        b.goto("/sensors").await;
        b.wait("#login").await;
        assert!(b.path().await.starts_with("/login?next="), "forged cookie {forged:?}");
    }
    // A real session works in the same browser, and its cookie is HttpOnly and SameSite=Strict.
    b.c.delete_all_cookies().await.unwrap();
    b.sign_in("/login", "viewer").await;
    let cookie = b.c.get_named_cookie("picket_session").await.unwrap();
    assert_eq!((cookie.http_only(), format!("{:?}", cookie.same_site())), (Some(true), "Some(Strict)".to_string()));
    assert_eq!(b.js("return document.cookie;").await, "", "scripts cannot read the session");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_posted_without_the_session_token_is_refused() {
    let srv = server().await;
    let rows = fixtures(&srv).await;
    let b = Browser::open(&srv).await;
    b.sign_in("/login", "operator").await;
    let id = &rows[0].id;
    b.goto(&format!("/sensors?selected={id}")).await;
    // A form like the real one, from the same page, but without the token (what another
    // site's form would look like) and with a wrong one.
    for token in [None, Some("0".repeat(64))] {
        let field = match &token {
            Some(t) => format!(
                "const i = document.createElement('input'); i.name = 'csrf'; i.value = '{t}'; f.appendChild(i);"
            ),
            None => String::new(),
        };
        b.js(&format!(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/sensors/{id}/delete'; {field}
             document.body.appendChild(f); f.submit(); return null;"
        ))
        .await;
        let error = b.wait("#error").await;
        assert_eq!(error.attr("data-status").await.unwrap().as_deref(), Some("403"));
        assert!(b.text("#error").await.contains("not from this portal"));
        b.goto(&format!("/sensors?selected={id}")).await;
    }
    assert_eq!(api(&srv, Method::GET, &format!("/api/v1/sensors/{id}"), None).await.0, 200, "not deleted");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_pointing_at_another_site_is_not_followed() {
    let srv = server().await;
    let b = Browser::open(&srv).await;
    for next in ["https%3A%2F%2Fevil.example", "%2F%2Fevil.example%2Fx", "%2F%5Cevil.example"] {
        b.c.delete_all_cookies().await.unwrap();
        b.sign_in(&format!("/login?next={next}"), "viewer").await;
        let url = b.url().await;
        assert_eq!(url.host_str(), Some("127.0.0.1"), "next={next} led to {url}");
        assert_eq!(url.path(), "/sensors", "next={next}");
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_lock_the_username() {
    let srv = server().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |password: &'static str| {
        http.post(srv.url("/login"))
            .form(&[("username", "operator"), ("password", password), ("next", "/sensors")])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(post("wrong password!!").await.unwrap().status().as_u16(), 401);
    }
    let locked = post(PASSWORD).await.unwrap();
    assert_eq!(locked.status().as_u16(), 429, "the right password is not even checked now");
    assert!(locked.text().await.unwrap().contains("too many failed sign-ins"));
    // Another user is not affected; an unknown user fails like a wrong password.
    let ok = http.post(srv.url("/login")).form(&[("username", "viewer"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"),
        "{cookie}"
    );
    let unknown =
        http.post(srv.url("/login")).form(&[("username", "nobody"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 401);
    // Behind a TLS proxy the cookie is Secure and __Host- prefixed.
    let tls = http
        .post(srv.url("/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("username", "viewer"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = tls.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("__Host-picket_session=") && cookie.contains("Secure"), "{cookie}");
    // A sign-in posted from another site is refused before the password is looked at.
    let cross = http
        .post(srv.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "viewer"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
}
