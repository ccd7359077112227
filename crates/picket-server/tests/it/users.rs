//! Portal users over the REST API: create, list, change password, remove; admins only;
//! passwords stored only as Argon2id hashes; every change audited.

use picket_testkit::server::TestServer;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

both_backends!(users_lifecycle_is_admin_only_and_audited);

async fn users_lifecycle_is_admin_only_and_audited(srv: TestServer) {
    let pw = "correct horse battery staple";
    let made = post(&srv, "/api/v1/users", json!({"username": "alice", "password": pw, "role": "operator"})).await;
    let made = made.expect(201);
    assert_eq!(
        made,
        json!({"username": "alice", "role": "operator", "subscriptions": null, "created_at": made["created_at"]})
    );
    let dup = post(&srv, "/api/v1/users", json!({"username": "alice", "password": pw, "role": "viewer"})).await;
    assert_eq!(dup.expect(409)["error"]["code"], "conflict");
    let short = post(&srv, "/api/v1/users", json!({"username": "bob", "password": "short", "role": "viewer"})).await;
    assert!(short.expect(422)["error"]["message"].as_str().unwrap().contains("at least 12"));
    let bad = post(&srv, "/api/v1/users", json!({"username": "Bob", "password": pw, "role": "viewer"})).await;
    assert!(bad.expect(422)["error"]["message"].as_str().unwrap().starts_with("username:"));
    let unknown_sub = json!({"username": "bob", "password": pw, "role": "viewer", "subscriptions": ["nope"]});
    post(&srv, "/api/v1/users", unknown_sub).await.expect(422);

    let viewer = token(&srv, "viewer", None).await;
    let operator = token(&srv, "operator", None).await;
    for t in [&viewer, &operator] {
        call(&srv, Method::GET, "/api/v1/users", Some(t), None).await.expect(403);
        let body = json!({"username": "mallory", "password": pw, "role": "admin"});
        call(&srv, Method::POST, "/api/v1/users", Some(t), Some(body)).await.expect(403);
        call(&srv, Method::DELETE, "/api/v1/users/alice", Some(t), None).await.expect(403);
    }

    let listed = get(&srv, "/api/v1/users").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["username"], "alice");
    let stored = srv.store.get_user("alice").await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"), "only an Argon2id hash is stored");
    assert!(!stored.password_hash.contains(pw));

    let new_pw = json!({"password": "another long passphrase"});
    call(&srv, Method::PUT, "/api/v1/users/alice/password", Some(&srv.admin_token), Some(new_pw.clone()))
        .await
        .expect(204);
    call(&srv, Method::PUT, "/api/v1/users/nobody/password", Some(&srv.admin_token), Some(new_pw)).await.expect(404);
    call(&srv, Method::DELETE, "/api/v1/users/alice", Some(&srv.admin_token), None).await.expect(204);
    call(&srv, Method::DELETE, "/api/v1/users/alice", Some(&srv.admin_token), None).await.expect(404);
    assert_eq!(get(&srv, "/api/v1/users").await.expect(200), json!([]));

    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_kind"] == "user")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.delete", "user.passwd", "user.create"]);
}
