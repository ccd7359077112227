//! Tokens limited to subscriptions see only those sensors: everything else behaves as if it
//! did not exist (404), is never counted, listed or exported.

use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

both_backends!(scoped_tokens_see_only_their_subscriptions, scoped_admins_stay_in_scope);

async fn scoped_tokens_see_only_their_subscriptions(srv: TestServer) {
    subscription(&srv, "blue").await;
    subscription(&srv, "red").await;
    let blue = onboard(&srv, json!({"name": "BLUE1", "type": "adfs", "subscription": "blue"})).await;
    onboard(&srv, json!({"name": "BLUE2", "type": "adfs", "subscription": "blue"})).await;
    let red = onboard(&srv, json!({"name": "RED1", "type": "adfs", "subscription": "red", "tags": ["=cmd"]})).await;
    let viewer = token(&srv, "viewer", Some(&["blue"])).await;
    let operator = token(&srv, "operator", Some(&["blue"])).await;
    let v = Some(viewer.as_str());
    let o = Some(operator.as_str());

    let page = call(&srv, Method::GET, "/api/v1/sensors", v, None).await.expect(200);
    assert_eq!(page["total"], 2);
    assert_eq!(names(&page), ["BLUE1", "BLUE2"]);
    let page = call(&srv, Method::GET, "/api/v1/sensors?subscription=red", v, None).await.expect(200);
    assert_eq!(page["total"], 0);
    let page = call(&srv, Method::GET, "/api/v1/sensors?q=red", v, None).await.expect(200);
    assert_eq!(page["total"], 0);
    let summary = call(&srv, Method::GET, "/api/v1/summary", v, None).await.expect(200);
    assert_eq!(summary["total"], 2);
    assert_eq!(summary["by_sensor_status"]["pending_activation"], 2);
    let csv = call(&srv, Method::GET, "/api/v1/sensors/export.csv", v, None).await;
    assert_eq!(csv.status.as_u16(), 200);
    assert!(csv.text.contains("BLUE1") && !csv.text.contains("RED1"), "{}", csv.text);
    assert_eq!(csv.text.lines().count(), 3);
    let subs = call(&srv, Method::GET, "/api/v1/subscriptions", v, None).await.expect(200);
    let sub_names: Vec<&str> = subs.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(sub_names, ["blue"]);

    let red_path = format!("/api/v1/sensors/{}", red["id"].as_str().unwrap());
    call(&srv, Method::GET, &red_path, v, None).await.error(404, "not_found");
    call(&srv, Method::PATCH, &red_path, o, Some(json!({"site": "x"}))).await.error(404, "not_found");
    call(&srv, Method::DELETE, &red_path, o, None).await.error(404, "not_found");
    call(&srv, Method::POST, &format!("{red_path}/decommission"), o, None).await.error(404, "not_found");
    call(&srv, Method::GET, &format!("{red_path}/activation-file"), o, None).await.error(404, "not_found");
    // The same answers as for an id that does not exist at all.
    let ghost = call(&srv, Method::GET, "/api/v1/sensors/00000000-0000-4000-8000-999999999999", v, None).await;
    let hidden = call(&srv, Method::GET, &red_path, v, None).await;
    assert_eq!(ghost.json()["error"]["message"], hidden.json()["error"]["message"]);
    // The red sensor was not touched.
    let still = get(&srv, &red_path).await.expect(200);
    assert_eq!(still, red);

    // Blue is theirs to operate.
    let blue_path = format!("/api/v1/sensors/{}", blue["id"].as_str().unwrap());
    call(&srv, Method::PATCH, &blue_path, o, Some(json!({"site": "Oslo"}))).await.expect(200);
    // Moving a sensor to another subscription is not an edit the API offers.
    call(&srv, Method::PATCH, &blue_path, o, Some(json!({"subscription": "red"})))
        .await
        .error(422, "validation_failed");

    // Onboarding outside the scope is 403, whether the subscription exists or not.
    let body = |sub: &str| Some(json!({"name": "X1", "type": "adfs", "subscription": sub}));
    let m = call(&srv, Method::POST, "/api/v1/sensors", o, body("red")).await.error(403, "forbidden");
    assert!(m.contains("blue"), "{m}");
    let m2 = call(&srv, Method::POST, "/api/v1/sensors", o, body("nonexistent")).await.error(403, "forbidden");
    assert_eq!(m, m2);
    call(&srv, Method::POST, "/api/v1/sensors", o, body("default")).await.error(403, "forbidden");
    let made = call(&srv, Method::POST, "/api/v1/sensors", o, body("blue")).await.expect(201);
    assert_eq!(made["subscription"], "blue");
    assert_eq!(get(&srv, "/api/v1/sensors").await.expect(200)["total"], 4);
}

async fn scoped_admins_stay_in_scope(srv: TestServer) {
    subscription(&srv, "blue").await;
    subscription(&srv, "red").await;
    let admin = token(&srv, "admin", Some(&["blue"])).await;
    let a = Some(admin.as_str());
    let red_token = post(&srv, "/api/v1/tokens", json!({"role": "viewer", "subscriptions": ["red"]})).await.expect(201);

    // Tokens: only within its own scope.
    let t = call(&srv, Method::POST, "/api/v1/tokens", a, Some(json!({"role": "viewer", "subscriptions": ["blue"]})))
        .await
        .expect(201);
    call(&srv, Method::POST, "/api/v1/tokens", a, Some(json!({"role": "viewer"}))).await.error(403, "forbidden");
    call(&srv, Method::POST, "/api/v1/tokens", a, Some(json!({"role": "viewer", "subscriptions": ["red"]})))
        .await
        .error(403, "forbidden");
    call(&srv, Method::POST, "/api/v1/tokens", a, Some(json!({"role": "viewer", "subscriptions": ["ghost"]})))
        .await
        .error(403, "forbidden");
    let list = call(&srv, Method::GET, "/api/v1/tokens", a, None).await.expect(200);
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&t["id"].as_str().unwrap()));
    assert!(!ids.contains(&red_token["id"].as_str().unwrap()), "{ids:?}");
    assert!(list.as_array().unwrap().iter().all(|t| t["description"] != "bootstrap"));
    let red_path = format!("/api/v1/tokens/{}", red_token["id"].as_str().unwrap());
    call(&srv, Method::DELETE, &red_path, a, None).await.error(404, "not_found");
    // Subscriptions and the audit log are for unscoped admins.
    call(&srv, Method::POST, "/api/v1/subscriptions", a, Some(json!({"name": "green"}))).await.error(403, "forbidden");
    call(&srv, Method::GET, "/api/v1/audit", a, None).await.error(403, "forbidden");
}
