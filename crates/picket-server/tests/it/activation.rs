//! Activation files: contents, a new one-time token per download stored only as its hash,
//! expiry shown in the status detail, refused once activated.

use std::time::Duration;

use picket_testkit::server::TestServer;
use sha2::{Digest, Sha256};

use crate::support::*;

both_backends!(config = configure; activation_file_contents_and_token_handling, activated_sensors_refuse_new_files);

/// A public sensor URL and a release key file.
fn configure(c: &mut picket_server::ServerConfig) {
    c.sensor_urls = vec!["https://sensors.example.com:8443".to_string()];
    let key = c.data_dir.join("release.pub");
    std::fs::write(&key, "test-release-key-base64\n").unwrap();
    c.release_key_pubs = vec![key];
}

async fn activation_file_contents_and_token_handling(srv: TestServer) {
    let s = onboard_named(&srv, "DC01").await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/api/v1/sensors/{id}/activation-file");
    let r = get(&srv, &path).await;
    let file = r.expect(200);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers["content-disposition"].to_str().unwrap().contains("DC01.activation.json"));
    assert_eq!(file["format"], 1);
    assert_eq!(file["sensor_id"], id);
    assert_eq!(file["sensor_name"], "DC01");
    assert_eq!(file["mode"], "cloud_connected");
    assert_eq!(file["control_plane_urls"], serde_json::json!(["https://sensors.example.com:8443"]));
    let ca_on_disk = std::fs::read_to_string(srv.data_dir.path().join("tls/ca.pem")).unwrap();
    assert_eq!(file["ca_cert_pem"], ca_on_disk.as_str());
    assert!(ca_on_disk.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(file["package_signing_keys"], serde_json::json!(["test-release-key-base64"]));
    let token = file["activation_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let expires = picket_proto::time::parse_ts(file["expires_at"].as_str().unwrap()).unwrap();
    use picket_server::Clock;
    assert_eq!(expires.0 - srv.clock.now().0, 7 * 86_400_000);

    // Only the SHA-256 is stored, never the token itself.
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    assert_eq!(stored_activation_hash(&srv, id).await.as_deref(), Some(hash.as_str()));
    assert!(!all_stored_text(&srv).await.contains(&token));
    assert!(!get(&srv, "/api/v1/audit").await.text.contains(&token));

    // Each download mints a new token and the earlier one stops being the stored one.
    let second = get(&srv, &path).await.expect(200);
    let token2 = second["activation_token"].as_str().unwrap();
    assert_ne!(token2, token);
    let hash2 = hex::encode(Sha256::digest(token2.as_bytes()));
    assert_eq!(stored_activation_hash(&srv, id).await.as_deref(), Some(hash2.as_str()));

    let view = get(&srv, &format!("/api/v1/sensors/{id}")).await.expect(200);
    assert_eq!(view["sensor_status"], "pending_activation");
    assert!(view["sensor_status_detail"].as_str().unwrap().contains("expires at"), "{view}");
    srv.clock.advance(Duration::from_secs(7 * 86400 + 1));
    let view = get(&srv, &format!("/api/v1/sensors/{id}")).await.expect(200);
    assert_eq!(view["sensor_status"], "pending_activation");
    let detail = view["sensor_status_detail"].as_str().unwrap();
    assert!(
        detail.starts_with("activation token expired at ") && detail.contains("download a new activation file"),
        "{detail}"
    );

    get(&srv, "/api/v1/sensors/unknown/activation-file").await.error(404, "not_found");
    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    assert_eq!(audit["items"][0]["action"], "sensor.activation_file");
}

async fn activated_sensors_refuse_new_files(srv: TestServer) {
    import(&srv, vec![row(&srv, 1, "DC01")]).await;
    let m =
        get(&srv, "/api/v1/sensors/00000000-0000-4000-8000-000000000001/activation-file").await.error(409, "conflict");
    assert!(m.contains("already activated"), "{m}");
}
