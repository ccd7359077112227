//! Tokens and roles: 401 without a valid token, 403 for a role too low, revocation at once.

use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

both_backends!(
    no_token_unknown_and_malformed_are_401,
    roles_are_enforced,
    tokens_lifecycle_and_revocation_is_immediate
);

async fn no_token_unknown_and_malformed_are_401(srv: TestServer) {
    for path in [
        "/api/v1/sensors",
        "/api/v1/summary",
        "/api/v1/zones",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/sensors/export.csv",
    ] {
        call(&srv, Method::GET, path, None, None).await.error(401, "unauthorized");
        call(&srv, Method::GET, path, Some("pkt_0000"), None).await.error(401, "unauthorized");
    }
    let r = reqwest::Client::new()
        .get(srv.url("/api/v1/sensors"))
        .header("authorization", format!("Basic {}", srv.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    call(&srv, Method::POST, "/api/v1/sensors", None, Some(json!({"name": "DC01", "type": "adfs"})))
        .await
        .error(401, "unauthorized");
    assert_eq!(get(&srv, "/api/v1/sensors").await.expect(200)["total"], 0);
}

async fn roles_are_enforced(srv: TestServer) {
    let viewer = token(&srv, "viewer", None).await;
    let operator = token(&srv, "operator", None).await;
    assert!(viewer.starts_with("pkt_") && viewer.len() == 68);
    let s = onboard_named(&srv, "DC01").await;
    let id = s["id"].as_str().unwrap();
    let sensor = format!("/api/v1/sensors/{id}");

    // Viewer: reads everything sensor-related, changes nothing.
    for path in [
        "/api/v1/sensors",
        "/api/v1/summary",
        "/api/v1/zones",
        "/api/v1/subscriptions",
        sensor.as_str(),
        "/api/v1/sensors/export.csv",
    ] {
        assert_eq!(call(&srv, Method::GET, path, Some(&viewer), None).await.status.as_u16(), 200, "{path}");
    }
    let v = Some(viewer.as_str());
    call(&srv, Method::POST, "/api/v1/sensors", v, Some(json!({"name": "DC02", "type": "adfs"})))
        .await
        .error(403, "forbidden");
    call(&srv, Method::PATCH, &sensor, v, Some(json!({"site": "x"}))).await.error(403, "forbidden");
    call(&srv, Method::DELETE, &sensor, v, None).await.error(403, "forbidden");
    call(&srv, Method::POST, &format!("{sensor}/decommission"), v, None).await.error(403, "forbidden");
    call(&srv, Method::GET, &format!("{sensor}/activation-file"), v, None).await.error(403, "forbidden");
    call(&srv, Method::POST, "/api/v1/zones", v, Some(json!({"name": "z"}))).await.error(403, "forbidden");
    call(&srv, Method::GET, "/api/v1/audit", v, None).await.error(403, "forbidden");
    call(&srv, Method::GET, "/api/v1/tokens", v, None).await.error(403, "forbidden");

    // Operator: sensors and zones, not tokens, subscriptions or audit.
    let o = Some(operator.as_str());
    call(&srv, Method::POST, "/api/v1/sensors", o, Some(json!({"name": "DC02", "type": "adfs"}))).await.expect(201);
    call(&srv, Method::PATCH, &sensor, o, Some(json!({"site": "x"}))).await.expect(200);
    call(&srv, Method::GET, &format!("{sensor}/activation-file"), o, None).await.expect(200);
    call(&srv, Method::POST, "/api/v1/zones", o, Some(json!({"name": "z"}))).await.expect(201);
    call(&srv, Method::POST, &format!("{sensor}/decommission"), o, None).await.expect(200);
    call(&srv, Method::POST, "/api/v1/tokens", o, Some(json!({"role": "viewer"}))).await.error(403, "forbidden");
    call(&srv, Method::GET, "/api/v1/tokens", o, None).await.error(403, "forbidden");
    call(&srv, Method::POST, "/api/v1/subscriptions", o, Some(json!({"name": "s"}))).await.error(403, "forbidden");
    call(&srv, Method::GET, "/api/v1/audit", o, None).await.error(403, "forbidden");
    let r = call(&srv, Method::DELETE, &sensor, o, None).await;
    assert_eq!(r.status.as_u16(), 204);
    // A forbidden request with a bad body is still 403 (the permission is checked first).
    call(&srv, Method::POST, "/api/v1/sensors", v, Some(json!({"bogus": 1}))).await.error(403, "forbidden");
}

async fn tokens_lifecycle_and_revocation_is_immediate(srv: TestServer) {
    let created = post(&srv, "/api/v1/tokens", json!({"role": "operator", "description": "ci"})).await.expect(201);
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["role"], "operator");
    assert!(created["subscriptions"].is_null());

    let list = get(&srv, "/api/v1/tokens").await.expect(200);
    let listed = list.as_array().unwrap();
    assert!(listed.iter().any(|t| t["description"] == "bootstrap" && t["role"] == "admin"));
    let mine = listed.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(mine["description"], "ci");
    assert!(mine["revoked_at"].is_null());
    assert!(!list.to_string().contains(&secret), "secrets are never listed");
    assert!(!list.to_string().contains("secret_hash"));

    call(&srv, Method::GET, "/api/v1/sensors", Some(&secret), None).await.expect(200);
    let r = call(&srv, Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&srv.admin_token), None).await;
    assert_eq!(r.status.as_u16(), 204);
    call(&srv, Method::GET, "/api/v1/sensors", Some(&secret), None).await.error(401, "unauthorized");
    let list = get(&srv, "/api/v1/tokens").await.expect(200);
    assert!(list.as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap()["revoked_at"].is_string());
    call(&srv, Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&srv.admin_token), None)
        .await
        .error(404, "not_found");
    call(&srv, Method::DELETE, "/api/v1/tokens/nope", Some(&srv.admin_token), None).await.error(404, "not_found");

    // Refusals: unknown role, unknown subscription.
    post(&srv, "/api/v1/tokens", json!({"role": "root"})).await.error(422, "validation_failed");
    let m = post(&srv, "/api/v1/tokens", json!({"role": "viewer", "subscriptions": ["ghost"]}))
        .await
        .error(422, "validation_failed");
    assert!(m.contains("ghost"), "{m}");

    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"token.create") && actions.contains(&"token.revoke"), "{actions:?}");
    assert!(!audit.to_string().contains(&secret), "the audit log never holds a secret");
}
