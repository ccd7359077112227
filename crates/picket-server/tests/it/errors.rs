//! Bad input gets a clear JSON error and changes nothing.

use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_backends!(
    validation_failures_name_the_field_and_change_nothing,
    malformed_unknown_and_oversized_bodies,
    duplicates_and_unknown_references,
    unknown_routes_and_methods_are_json,
    patch_refusals_change_nothing,
);

async fn check_refused(srv: &TestServer, body: Value, field: &str) {
    let m = post(srv, "/api/v1/sensors", body.clone()).await.error(422, "validation_failed");
    assert!(m.contains(field), "{body}: {m}");
}

async fn validation_failures_name_the_field_and_change_nothing(srv: TestServer) {
    let base = |k: &str, v: Value| {
        let mut b = json!({"name": "DC01", "type": "domain_controller"});
        b[k] = v;
        b
    };
    check_refused(&srv, base("name", json!("")), "name: must not be empty").await;
    check_refused(&srv, base("name", json!("x".repeat(64))), "at most 63").await;
    check_refused(&srv, base("name", json!("dc 01")), "not host-name-like").await;
    check_refused(&srv, base("name", json!("<script>")), "not host-name-like").await;
    check_refused(&srv, base("domain", json!("corp")), "not a fully qualified domain name").await;
    check_refused(
        &srv,
        base("tags", json!(vec!["t"; 33].iter().enumerate().map(|(i, _)| format!("t{i}")).collect::<Vec<_>>())),
        "at most 32",
    )
    .await;
    check_refused(&srv, base("tags", json!(["x".repeat(65)])), "tags").await;
    check_refused(&srv, base("tags", json!(["a,b"])), "commas").await;
    check_refused(&srv, base("tags", json!(["a", "a"])), "twice").await;
    check_refused(&srv, base("site", json!(" Paris")), "site").await;
    check_refused(&srv, base("zone", json!("")), "zone").await;
    check_refused(&srv, base("description", json!("x".repeat(1025))), "description").await;
    check_refused(&srv, base("description", json!("bell\u{7}")), "description").await;
    check_refused(&srv, base("config", json!({"capture": "eth\u{1}"})), "config.capture").await;
    check_refused(&srv, base("subscription", json!("Not Valid")), "subscription").await;
    check_refused(&srv, base("type", json!("router")), "expected one of: domain_controller").await;
    check_refused(&srv, base("mode", json!("remote")), "cloud_connected").await;
    check_refused(&srv, json!({"type": "adfs"}), "name").await;
    assert_eq!(get(&srv, "/api/v1/sensors").await.expect(200)["total"], 0);
    assert!(
        get(&srv, "/api/v1/audit").await.expect(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "sensor.onboard")
    );
}

async fn malformed_unknown_and_oversized_bodies(srv: TestServer) {
    let raw =
        |body: &str| call_raw(&srv, Method::POST, "/api/v1/sensors", "application/json", body.as_bytes().to_vec());
    raw("{\"name\": ").await.error(400, "invalid_json");
    raw("not json").await.error(400, "invalid_json");
    raw("").await.error(400, "invalid_json");
    let m = raw(r#"{"name": "DC01", "type": "adfs", "colour": "red"}"#).await.error(422, "validation_failed");
    assert!(m.contains("colour"), "{m}");
    let m = patch(&srv, "/api/v1/sensors/x", json!({"owner": "me"})).await.error(422, "validation_failed");
    assert!(m.contains("owner"), "{m}");
    let m = post(&srv, "/api/v1/tokens", json!({"role": "admin", "expires": 1})).await.error(422, "validation_failed");
    assert!(m.contains("expires"), "{m}");
    call_raw(&srv, Method::POST, "/api/v1/sensors", "text/plain", b"{}".to_vec())
        .await
        .error(415, "unsupported_media_type");
    let big = format!(r#"{{"name": "DC01", "type": "adfs", "description": "{}"}}"#, "x".repeat(1 << 20));
    let r = raw(&big).await;
    r.error(413, "payload_too_large");
    assert_eq!(get(&srv, "/api/v1/sensors").await.expect(200)["total"], 0);
}

async fn duplicates_and_unknown_references(srv: TestServer) {
    onboard_named(&srv, "DC01").await;
    let m = post(&srv, "/api/v1/sensors", json!({"name": "dc01", "type": "adfs"})).await.error(409, "conflict");
    assert!(m.contains("dc01"), "{m}");
    let m = post(&srv, "/api/v1/sensors", json!({"name": "DC02", "type": "adfs", "zone": "Mars"}))
        .await
        .error(422, "validation_failed");
    assert!(m.contains("Mars") && m.contains("default"), "{m}");
    let m = post(&srv, "/api/v1/sensors", json!({"name": "DC02", "type": "adfs", "subscription": "nope"}))
        .await
        .error(422, "validation_failed");
    assert!(m.contains("nope"), "{m}");
    assert_eq!(get(&srv, "/api/v1/sensors").await.expect(200)["total"], 1);
}

async fn unknown_routes_and_methods_are_json(srv: TestServer) {
    let m = get(&srv, "/api/v1/nothing-here").await.error(404, "not_found");
    assert!(m.contains("/api/v1/nothing-here"), "{m}");
    get(&srv, "/nothing-here").await.error(404, "not_found");
    call(&srv, Method::PUT, "/api/v1/sensors", Some(&srv.admin_token), None).await.error(405, "method_not_allowed");
    // Bad paging parameters and filters are 400 with the accepted values.
    let m = get(&srv, "/api/v1/sensors?sensor_status=fine").await.error(400, "bad_request");
    assert!(m.contains("up_to_date") && m.contains("sensor_status"), "{m}");
    let m = get(&srv, "/api/v1/sensors?colour=red").await.error(400, "bad_request");
    assert!(m.contains("colour") && m.contains("accepted"), "{m}");
    get(&srv, "/api/v1/sensors?limit=0").await.error(400, "bad_request");
    get(&srv, "/api/v1/sensors?limit=1001").await.error(400, "bad_request");
    get(&srv, "/api/v1/sensors?limit=abc").await.error(400, "bad_request");
    get(&srv, "/api/v1/sensors?sort=colour").await.error(400, "bad_request");
    get(&srv, "/api/v1/sensors?cursor=zzz").await.error(400, "bad_request");
    get(&srv, "/api/v1/audit?cursor=abc").await.error(400, "bad_request");
    get(&srv, "/api/v1/audit?limit=5000").await.error(400, "bad_request");
}

async fn patch_refusals_change_nothing(srv: TestServer) {
    onboard_named(&srv, "DC01").await;
    let s = onboard_named(&srv, "DC02").await;
    let path = format!("/api/v1/sensors/{}", s["id"].as_str().unwrap());
    patch(&srv, &path, json!({"name": "DC01"})).await.error(409, "conflict");
    patch(&srv, &path, json!({"name": "", "site": "x"})).await.error(422, "validation_failed");
    let m = patch(&srv, &path, json!({"zone": "Nowhere", "site": "x"})).await.error(422, "validation_failed");
    assert!(m.contains("Nowhere"), "{m}");
    patch(&srv, &path, json!({"tags": ["ok", " bad"]})).await.error(422, "validation_failed");
    patch(&srv, &path, json!({"delayed_update": "yes"})).await.error(422, "validation_failed");
    let after = get(&srv, &path).await.expect(200);
    assert_eq!(after, s);
    patch(&srv, "/api/v1/sensors/unknown-id", json!({"site": "x"})).await.error(404, "not_found");
}
