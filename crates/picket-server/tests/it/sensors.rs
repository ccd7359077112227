//! Onboard, get, edit, delete, decommission, summary, and the audit they leave.

use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

both_backends!(
    onboard_then_get_and_list,
    onboard_defaults_and_not_configured_types,
    patch_each_field_and_audit_before_after,
    delete_then_gone,
    decommission_makes_unreachable,
    summary_counts_every_status,
    zones_and_subscriptions,
);

async fn onboard_then_get_and_list(srv: TestServer) {
    let s = onboard(
        &srv,
        json!({
            "name": "DC01-10-0-0-5", "type": "domain_controller", "domain": "corp.example.com",
            "subscription": "default", "site": "Paris", "zone": "default", "tags": ["prod", "tier 1"],
            "mode": "cloud_connected", "auto_ti_updates": false, "description": "first"
        }),
    )
    .await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(s["name"], "DC01-10-0-0-5");
    assert_eq!(s["type"], "domain_controller");
    assert_eq!(s["domain"], "corp.example.com");
    assert_eq!(s["site"], "Paris");
    assert_eq!(s["tags"], json!(["prod", "tier 1"]));
    assert_eq!(s["auto_ti_updates"], false);
    assert_eq!(s["service_status"], "unknown");
    assert_eq!(s["sensor_status"], "pending_activation");
    assert!(s["sensor_status_detail"].as_str().unwrap().contains("download"), "{s}");
    assert_eq!(s["health_status"], "healthy");
    assert_eq!(s["health_issues"], 0);
    assert!(s["last_seen_at"].is_null());
    assert!(s["created_at"].as_str().unwrap().ends_with('Z'));

    let got = get(&srv, &format!("/api/v1/sensors/{id}")).await.expect(200);
    assert_eq!(got, s);
    let page = get(&srv, "/api/v1/sensors").await.expect(200);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0], s);
    assert!(page["next_cursor"].is_null());

    get(&srv, "/api/v1/sensors/00000000-0000-4000-8000-000000000000").await.error(404, "not_found");
}

async fn onboard_defaults_and_not_configured_types(srv: TestServer) {
    let s = onboard(&srv, json!({"name": "ADFS1", "type": "adfs"})).await;
    assert_eq!(s["subscription"], "default");
    assert_eq!(s["zone"], "default");
    assert_eq!(s["mode"], "cloud_connected");
    assert_eq!(s["auto_ti_updates"], true);
    assert_eq!(s["delayed_update"], false);
    assert_eq!(s["domain"], "");
    assert!(s["config"]["capture"].is_null());
    let local = onboard(&srv, json!({"name": "OT1", "type": "ot_network", "mode": "locally_managed"})).await;
    assert_eq!(local["sensor_status"], "not_applicable");
    assert_eq!(local["service_status"], "unknown");
    // An activated adfs sensor without capture is not_configured until it gets one.
    let mut r = row(&srv, 1, "ADFS2");
    r.sensor_type = picket_domain::SensorType::Adfs;
    import(&srv, vec![r]).await;
    let id = "00000000-0000-4000-8000-000000000001";
    assert_eq!(get(&srv, &format!("/api/v1/sensors/{id}")).await.expect(200)["sensor_status"], "not_configured");
    let s = patch(&srv, &format!("/api/v1/sensors/{id}"), json!({"config": {"capture": "eth1"}})).await.expect(200);
    assert_eq!(s["config"]["capture"], "eth1");
    assert_eq!(s["config_version_desired"], 2);
    assert_eq!(s["sensor_status"], "syncing");
}

async fn patch_each_field_and_audit_before_after(srv: TestServer) {
    post(&srv, "/api/v1/zones", json!({"name": "Branch offices"})).await.expect(201);
    let s = onboard_named(&srv, "DC01").await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/api/v1/sensors/{id}");
    let after = patch(
        &srv,
        &path,
        json!({"name": "DC02", "site": "Lyon", "zone": "Branch offices", "tags": ["a", "b"], "delayed_update": true,
               "auto_ti_updates": false, "description": "moved"}),
    )
    .await
    .expect(200);
    assert_eq!(after["name"], "DC02");
    assert_eq!(after["site"], "Lyon");
    assert_eq!(after["zone"], "Branch offices");
    assert_eq!(after["tags"], json!(["a", "b"]));
    assert_eq!(after["delayed_update"], true);
    assert_eq!(after["auto_ti_updates"], false);
    assert_eq!(after["description"], "moved");
    assert_eq!(get(&srv, &path).await.expect(200), after);
    // An empty patch changes nothing.
    assert_eq!(patch(&srv, &path, json!({})).await.expect(200)["name"], "DC02");

    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    let entry = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "sensor.update").unwrap().clone();
    assert_eq!(entry["target_kind"], "sensor");
    assert_eq!(entry["target_id"], id);
    assert!(entry["actor"].as_str().unwrap().starts_with("token:"));
    assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "sensor.onboard"));
    // Newest first: the empty patch is the latest entry; the real edit has before and after.
    let real = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "sensor.update" && e["before"]["name"] == "DC01")
        .expect("edit recorded with the record before")
        .clone();
    assert_eq!(real["after"]["name"], "DC02");
    assert_eq!(real["after"]["zone"], "Branch offices");
}

async fn delete_then_gone(srv: TestServer) {
    let s = onboard_named(&srv, "DC01").await;
    let path = format!("/api/v1/sensors/{}", s["id"].as_str().unwrap());
    let r = call(&srv, Method::DELETE, &path, Some(&srv.admin_token), None).await;
    assert_eq!(r.status.as_u16(), 204);
    assert!(r.text.is_empty());
    get(&srv, &path).await.error(404, "not_found");
    call(&srv, Method::DELETE, &path, Some(&srv.admin_token), None).await.error(404, "not_found");
    assert_eq!(get(&srv, "/api/v1/sensors").await.expect(200)["total"], 0);
    let audit = get(&srv, "/api/v1/audit?limit=1").await.expect(200);
    assert_eq!(audit["items"][0]["action"], "sensor.delete");
    assert_eq!(audit["items"][0]["before"]["name"], "DC01");
    assert!(audit["items"][0]["after"].is_null());
    // The name is free again.
    onboard_named(&srv, "DC01").await;
}

async fn decommission_makes_unreachable(srv: TestServer) {
    import(&srv, vec![row(&srv, 1, "DC01")]).await;
    let path = "/api/v1/sensors/00000000-0000-4000-8000-000000000001";
    assert_eq!(get(&srv, path).await.expect(200)["sensor_status"], "up_to_date");
    let s = post(&srv, &format!("{path}/decommission"), json!(null)).await.expect(200);
    assert_eq!(s["sensor_status"], "unreachable");
    assert!(s["decommissioned_at"].is_string());
    assert!(s["sensor_status_detail"].as_str().unwrap().contains("safe to delete"));
    post(&srv, "/api/v1/sensors/nope/decommission", json!(null)).await.error(404, "not_found");
}

async fn summary_counts_every_status(srv: TestServer) {
    let mut rows = vec![row(&srv, 1, "A1"), row(&srv, 2, "A2"), row(&srv, 3, "A3")];
    rows[1].mode = picket_domain::Mode::LocallyManaged;
    rows[2].open_issues = 2;
    rows[2].health_status = picket_domain::HealthStatus::NotHealthyHigh;
    import(&srv, rows).await;
    onboard_named(&srv, "P1").await;
    let s = get(&srv, "/api/v1/summary").await.expect(200);
    assert_eq!(s["total"], 4);
    assert_eq!(s["cloud_connected"], 3);
    assert_eq!(s["locally_managed"], 1);
    assert_eq!(s["by_sensor_status"]["up_to_date"], 2);
    assert_eq!(s["by_sensor_status"]["not_applicable"], 1);
    assert_eq!(s["by_sensor_status"]["pending_activation"], 1);
    assert_eq!(s["by_sensor_status"]["disconnected"], 0);
    assert_eq!(s["by_sensor_status"].as_object().unwrap().len(), 11);
    assert_eq!(s["by_health_status"]["healthy"], 3);
    assert_eq!(s["by_health_status"]["not_healthy_high"], 1);
    assert_eq!(s["by_health_status"].as_object().unwrap().len(), 4);
}

async fn zones_and_subscriptions(srv: TestServer) {
    let z = post(&srv, "/api/v1/zones", json!({"name": "DMZ", "description": "edge"})).await.expect(201);
    assert_eq!(z["name"], "DMZ");
    assert_eq!(z["description"], "edge");
    let zones = get(&srv, "/api/v1/zones").await.expect(200);
    let names: Vec<&str> = zones.as_array().unwrap().iter().map(|z| z["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"DMZ") && names.contains(&"default"), "{names:?}");
    post(&srv, "/api/v1/zones", json!({"name": "DMZ"})).await.error(409, "conflict");
    post(&srv, "/api/v1/zones", json!({"name": " bad"})).await.error(422, "validation_failed");

    let s = post(&srv, "/api/v1/subscriptions", json!({"name": "emea"})).await.expect(201);
    assert_eq!(s["name"], "emea");
    let subs = get(&srv, "/api/v1/subscriptions").await.expect(200);
    assert_eq!(subs.as_array().unwrap().len(), 2);
    post(&srv, "/api/v1/subscriptions", json!({"name": "emea"})).await.error(409, "conflict");
    let m = post(&srv, "/api/v1/subscriptions", json!({"name": "EMEA"})).await.error(422, "validation_failed");
    assert!(m.contains("subscription"), "{m}");
    let s = onboard(&srv, json!({"name": "X1", "type": "adfs", "subscription": "emea", "zone": "DMZ"})).await;
    assert_eq!(s["subscription"], "emea");
    assert_eq!(s["zone"], "DMZ");
}
