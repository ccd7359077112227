//! The audit log's paging, and the bootstrap token.

use picket_testkit::server::TestServer;
use serde_json::json;

use crate::support::*;

both_backends!(audit_pages_newest_first, bootstrap_token_is_admin_and_idempotent);

async fn audit_pages_newest_first(srv: TestServer) {
    for i in 0..5 {
        post(&srv, "/api/v1/zones", json!({"name": format!("Z{i}")})).await.expect(201);
    }
    let first = get(&srv, "/api/v1/audit?limit=2").await.expect(200);
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "zone.create");
    assert_eq!(items[0]["target_id"], "Z4");
    assert_eq!(items[1]["target_id"], "Z3");
    assert!(items[0]["id"].as_i64() > items[1]["id"].as_i64());
    assert_eq!(items[0]["after"]["name"], "Z4");
    assert!(items[0]["before"].is_null());
    let mut seen: Vec<String> = items.iter().map(|e| e["target_id"].as_str().unwrap().to_string()).collect();
    let mut cursor = first["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let page = get(&srv, &format!("/api/v1/audit?limit=2&cursor={c}")).await.expect(200);
        seen.extend(page["items"].as_array().unwrap().iter().map(|e| e["target_id"].as_str().unwrap().to_string()));
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
    let zones: Vec<&String> = seen.iter().filter(|t| t.starts_with('Z')).collect();
    assert_eq!(zones, ["Z4", "Z3", "Z2", "Z1", "Z0"]);
    assert_eq!(get(&srv, "/api/v1/audit").await.expect(200)["items"].as_array().unwrap().len(), seen.len());
}

async fn bootstrap_token_is_admin_and_idempotent(srv: TestServer) {
    let tokens = get(&srv, "/api/v1/tokens").await.expect(200);
    let boot: Vec<_> = tokens.as_array().unwrap().iter().filter(|t| t["description"] == "bootstrap").collect();
    assert_eq!(boot.len(), 1);
    assert_eq!(boot[0]["role"], "admin");
    assert!(boot[0]["subscriptions"].is_null());
    // Preparing again with the same bootstrap token (a restart) creates nothing new, and the
    // CA stays the cluster's one.
    let ca = std::fs::read_to_string(srv.data_dir.path().join("tls/ca.pem")).unwrap();
    let again = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    assert!(again.generated_bootstrap_token.is_none());
    assert_eq!(again.tls.ca_cert_pem, ca);
    assert_eq!(
        get(&srv, "/api/v1/tokens").await.expect(200).as_array().unwrap().len(),
        tokens.as_array().unwrap().len()
    );
    assert!(!srv.data_dir.path().join("bootstrap-token").exists());
}
