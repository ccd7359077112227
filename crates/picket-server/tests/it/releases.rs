//! Releases through the REST API: publishing signed packages (good, tampered, unknown key,
//! downgrade, same version, too large, wrong role), the list in version order with the
//! current release marked, and sensors downloading a package whole and by byte range from
//! the sensor API's router (fingerprint injected as the mutual-TLS listener does).

use std::path::{Path, PathBuf};

use picket_domain::Timestamp;
use picket_package::{BuildOptions, SecretKey};
use picket_store::SensorRow;
use picket_testkit::server::TestServer;
use reqwest::Method;

use crate::support::*;

both_backends!(
    config = configure;
    publishing_verifies_and_lists_in_version_order,
    bad_packages_are_refused_with_their_code,
    sensors_download_packages_by_range,
    published_releases_make_old_sensors_outdated,
    packages_download_over_mutual_tls,
    activation_names_the_current_release_and_repeats_for_its_certificate
);

/// The key the test servers trust.
fn trusted() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

/// Trust `trusted()`; accept packages up to 256 KiB.
fn configure(c: &mut picket_server::ServerConfig) {
    let path = c.data_dir.join("release.pub");
    std::fs::write(&path, format!("{}\n", trusted().public().to_base64())).unwrap();
    c.release_key_pubs = vec![path];
    c.max_release_bytes = 256 << 10;
}

/// A package of `version` signed by `key`, whose payload holds `extra` bytes of noise.
fn package(dir: &Path, version: &str, key: &SecretKey, extra: usize) -> PathBuf {
    let input = dir.join(format!("in-{version}-{extra}"));
    std::fs::create_dir_all(input.join("bin")).unwrap();
    std::fs::write(input.join("bin/picket-sensor"), b"#!/bin/sh\nexit 0\n").unwrap();
    // Incompressible bytes, so the package is as large as asked.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let noise: Vec<u8> = (0..extra)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(input.join("data.bin"), noise).unwrap();
    let now = Timestamp(picket_server::Clock::now(&picket_server::SystemClock).0);
    let opts = BuildOptions {
        version: version.parse().unwrap(),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now,
        expires_at: Timestamp(now.0 + 86_400_000),
        min_updater_version: "0.1.0".parse().unwrap(),
        compression_level: 3,
    };
    let out = dir.join(format!("picket-{version}-{extra}.pkg"));
    picket_package::build(&input, &opts, key, &out).unwrap();
    out
}

async fn upload(srv: &TestServer, token: &str, bytes: Vec<u8>) -> Resp {
    let r = reqwest::Client::new()
        .post(srv.url("/api/v1/releases"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    Resp { status, headers, text: r.text().await.unwrap_or_default() }
}

async fn publishing_verifies_and_lists_in_version_order(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let list = get(&srv, "/api/v1/releases").await.expect(200);
    assert_eq!(list, serde_json::json!({"items": [], "current": null}));
    let p1 = package(dir.path(), "1.0.0", &trusted(), 0);
    let bytes = std::fs::read(&p1).unwrap();
    let v = upload(&srv, &srv.admin_token, bytes.clone()).await.expect(201);
    assert_eq!((v["version"].as_str(), v["current"].as_bool()), (Some("1.0.0"), Some(true)));
    assert_eq!(v["sha256"].as_str(), Some(picket_package::sha256_hex(&bytes).as_str()));
    assert_eq!(v["size"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(v["signing_key_id"].as_str(), Some(trusted().public().key_id().as_str()));
    assert_eq!((v["entrypoint"].as_str(), v["files"].as_u64()), (Some("bin/picket-sensor"), Some(2)));
    // An operator may publish too; the list is by version (1.10.0 after 1.9.0).
    let operator = token(&srv, "operator", None).await;
    for version in ["1.9.0", "1.10.0"] {
        upload(&srv, &operator, std::fs::read(package(dir.path(), version, &trusted(), 0)).unwrap()).await.expect(201);
    }
    let list = get(&srv, "/api/v1/releases").await.expect(200);
    let rows: Vec<(String, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_str().unwrap().to_string(), r["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(rows, [("1.0.0".into(), false), ("1.9.0".into(), false), ("1.10.0".into(), true)]);
    assert_eq!(list["current"], "1.10.0");
    assert!(list["items"][2]["published_by"].as_str().unwrap().starts_with("token:"));
    let audit = get(&srv, "/api/v1/audit").await.expect(200);
    let published = audit["items"].as_array().unwrap().iter().filter(|a| a["action"] == "release.publish").count();
    assert_eq!(published, 3, "{audit}");
    // A viewer sees the list but cannot publish.
    let viewer = token(&srv, "viewer", None).await;
    call(&srv, Method::GET, "/api/v1/releases", Some(&viewer), None).await.expect(200);
    upload(&srv, &viewer, bytes).await.error(403, "forbidden");
}

async fn bad_packages_are_refused_with_their_code(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(package(dir.path(), "2.0.0", &trusted(), 0)).unwrap();
    // A tampered manifest: same length, another version.
    let mut forged = good.clone();
    let at = forged.windows(7).position(|w| w == b"\"2.0.0\"").unwrap();
    forged[at + 1] = b'3';
    let m = upload(&srv, &srv.admin_token, forged).await.error(422, "bad_signature");
    assert!(m.contains("tampered"), "{m}");
    // Signed by a key the server does not trust.
    let stranger = std::fs::read(package(dir.path(), "2.0.0", &SecretKey::from_seed([7; 32]), 1)).unwrap();
    let m = upload(&srv, &srv.admin_token, stranger).await.error(422, "unknown_key");
    assert!(m.contains("not one of the trusted release keys"), "{m}");
    // A tampered payload (a byte inside the compressed files, before the end blocks).
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 1024 - 600] ^= 0x20;
    let e = upload(&srv, &srv.admin_token, tampered).await;
    assert_eq!(e.status.as_u16(), 422, "{}", e.text);
    upload(&srv, &srv.admin_token, b"not a package".to_vec()).await.error(422, "invalid_package");
    upload(&srv, &srv.admin_token, Vec::new()).await.error(400, "bad_request");
    // Too large for --max-release-size (256 KiB here).
    let big = std::fs::read(package(dir.path(), "2.0.0", &trusted(), 300 << 10)).unwrap();
    let m = upload(&srv, &srv.admin_token, big).await.error(413, "payload_too_large");
    assert!(m.contains("--max-release-size"), "{m}");
    // The good one, then the same version and a lower one.
    upload(&srv, &srv.admin_token, good.clone()).await.expect(201);
    let m = upload(&srv, &srv.admin_token, good).await.error(409, "version_not_newer");
    assert!(m.contains("not above the current release 2.0.0"), "{m}");
    let lower = std::fs::read(package(dir.path(), "1.5.0", &trusted(), 0)).unwrap();
    upload(&srv, &srv.admin_token, lower).await.error(409, "version_not_newer");
    let list = get(&srv, "/api/v1/releases").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "refusals store nothing: {list}");
}

/// Serves the sensor API's router on plain TCP, every request carrying `fingerprint` as the
/// mutual-TLS acceptor would put it there.
async fn sensor_router(srv: &TestServer, fingerprint: String) -> String {
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let state = picket_server::sensor_api::SensorState {
        app: prepared.app().clone(),
        batcher: picket_server::app::HeartbeatBatcher::default(),
    };
    let router = picket_server::sensor_api::router(state).layer(axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| {
            req.extensions_mut().insert(picket_server::sensor_api::tls::PeerFingerprint(fingerprint.clone()));
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn sensors_download_packages_by_range(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(package(dir.path(), "3.0.0", &trusted(), 200 << 10)).unwrap();
    let view = upload(&srv, &srv.admin_token, bytes.clone()).await.expect(201);
    let sha = view["sha256"].as_str().unwrap().to_string();
    let sensor = row(&srv, 1, "DC01");
    let fingerprint = sensor.cert_fingerprint.clone().unwrap();
    srv.store.import_sensors(&[sensor]).await.unwrap();
    let base = sensor_router(&srv, fingerprint).await;
    let http = reqwest::Client::new();
    let fetch = |range: Option<&str>, path: String| {
        let mut req = http.get(format!("{base}{path}"));
        if let Some(r) = range {
            req = req.header("range", r);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.bytes().await.unwrap().to_vec())
        }
    };
    let path = format!("/sensor/v1/packages/{sha}");
    let (status, headers, body) = fetch(None, path.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body, bytes, "the whole package");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
    let n = bytes.len();
    // Resume from the middle, as an interrupted download does.
    let (status, headers, body) = fetch(Some(&format!("bytes={}-", n / 2)), path.clone()).await;
    assert_eq!(status, 206);
    assert_eq!(body, bytes[n / 2..]);
    assert_eq!(headers["content-range"], format!("bytes {}-{}/{n}", n / 2, n - 1).as_str());
    let (status, _, body) = fetch(Some("bytes=10-19"), path.clone()).await;
    assert_eq!((status, body.as_slice()), (206, &bytes[10..20]));
    let (status, _, body) = fetch(Some("bytes=-5"), path.clone()).await;
    assert_eq!((status, body.as_slice()), (206, &bytes[n - 5..]));
    let (status, headers, _) = fetch(Some(&format!("bytes={n}-")), path.clone()).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], format!("bytes */{n}").as_str());
    let (status, _, _) = fetch(None, format!("/sensor/v1/packages/{}", "0".repeat(64))).await;
    assert_eq!(status, 404, "an unpublished digest");
    let (status, _, _) = fetch(None, "/sensor/v1/packages/not-a-digest".into()).await;
    assert_eq!(status, 400);
    // An unknown certificate gets nothing.
    let stranger = sensor_router(&srv, "f".repeat(64)).await;
    let r = http.get(format!("{stranger}{path}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

async fn published_releases_make_old_sensors_outdated(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    // Runs 1.0.0, in the delayed ring so that the rollout job (72 h before that ring starts)
    // does not grant it an update while the status is read: "updating" would win.
    let sensor = SensorRow { delayed_update: true, ..row(&srv, 1, "DC01") };
    let id = sensor.id.clone();
    srv.store.import_sensors(&[sensor]).await.unwrap();
    let status = |v: serde_json::Value| v["sensor_status"].as_str().unwrap().to_string();
    for (version, expected) in [("1.1.0", "up_to_date"), ("1.2.0", "up_to_date"), ("1.3.0", "outdated")] {
        upload(&srv, &srv.admin_token, std::fs::read(package(dir.path(), version, &trusted(), 0)).unwrap())
            .await
            .expect(201);
        let view = get(&srv, &format!("/api/v1/sensors/{id}")).await.expect(200);
        assert_eq!(status(view), expected, "after publishing {version}");
    }
}

/// The real sensor listener: mutual TLS with a self-signed client certificate pinned to a
/// sensor, a resumed download, and a certificate pinned to nobody refused.
async fn packages_download_over_mutual_tls(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(package(dir.path(), "4.0.0", &trusted(), 100 << 10)).unwrap();
    let sha = upload(&srv, &srv.admin_token, bytes.clone()).await.expect(201)["sha256"].as_str().unwrap().to_string();
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let ca = reqwest::Certificate::from_pem(prepared.tls.ca_cert_pem.as_bytes()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(picket_server::serve_sensors(
        listener,
        prepared.app().clone(),
        prepared.tls.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = |pin: bool| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["sensor".to_string()]).unwrap();
        let t = time::OffsetDateTime::now_utc();
        params.not_before = t - time::Duration::hours(1);
        params.not_after = t + time::Duration::days(730);
        let cert = params.self_signed(&key).unwrap();
        let identity =
            reqwest::Identity::from_pem(format!("{}\n{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_only([ca.clone()]).identity(identity).build().unwrap();
        (http, pin.then(|| picket_package::sha256_hex(cert.der())))
    };
    let (http, fingerprint) = client(true);
    let mut sensor = row(&srv, 7, "DC07");
    sensor.cert_fingerprint = fingerprint;
    srv.store.import_sensors(&[sensor]).await.unwrap();
    let url = format!("https://127.0.0.1:{port}/sensor/v1/packages/{sha}");
    let n = bytes.len();
    let first = http.get(&url).header("range", format!("bytes=0-{}", n / 3)).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 206);
    let mut got = first.bytes().await.unwrap().to_vec();
    let rest = http.get(&url).header("range", format!("bytes={}-", got.len())).send().await.unwrap();
    assert_eq!(rest.status().as_u16(), 206);
    got.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(got, bytes, "a download resumed over mutual TLS is the package");
    let (stranger, _) = client(false);
    assert_eq!(stranger.get(&url).send().await.unwrap().status().as_u16(), 401);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// The sensor API's router on plain TCP, every request carrying `fingerprint` (and no
/// certificate expiry) as the mutual-TLS acceptor would.
async fn activation_router(srv: &TestServer, fingerprint: String) -> String {
    let prepared = picket_server::prepare(srv.config.clone(), srv.store.clone()).await.unwrap();
    let state = picket_server::sensor_api::SensorState {
        app: prepared.app().clone(),
        batcher: picket_server::app::HeartbeatBatcher::default(),
    };
    let router = picket_server::sensor_api::router(state).layer(axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| {
            req.extensions_mut().insert(picket_server::sensor_api::tls::PeerFingerprint(fingerprint.clone()));
            req.extensions_mut().insert(picket_server::sensor_api::tls::PeerCertExpiry(None));
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The activation answer names the current release once one is published (what `picket-updater
/// install` without `--package` downloads), and the certificate that consumed the token may
/// repeat the activation (an install resuming); any other certificate is still refused.
async fn activation_names_the_current_release_and_repeats_for_its_certificate(srv: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let id = onboard_named(&srv, "DC01").await["id"].as_str().unwrap().to_string();
    let file = get(&srv, &format!("/api/v1/sensors/{id}/activation-file")).await.expect(200);
    let body = serde_json::json!({"sensor_id": id, "activation_token": file["activation_token"]});
    let http = reqwest::Client::new();
    let activate = |base: String| {
        let req = http.post(format!("{base}/sensor/v1/activate")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let pinned = activation_router(&srv, "a".repeat(64)).await;
    let (status, first) = activate(pinned.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["sensor_id"], id.as_str());
    assert!(first.get("current_release").is_none(), "no release yet: the field is absent: {first}");
    let (status, again) = activate(pinned.clone()).await;
    assert_eq!(status, 200, "the pinned certificate repeats its activation: {again}");
    assert_eq!((&again["sensor_id"], &again["cert_fingerprint"]), (&first["sensor_id"], &first["cert_fingerprint"]));
    assert_eq!(again["activated_at"], first["activated_at"], "the activation time is the first one");
    let (status, other) = activate(activation_router(&srv, "b".repeat(64)).await).await;
    assert_eq!((status, &other["error"]["code"]), (409, &serde_json::json!("activation_used")), "{other}");
    let view = upload(&srv, &srv.admin_token, std::fs::read(package(dir.path(), "5.0.0", &trusted(), 0)).unwrap())
        .await
        .expect(201);
    let (status, answer) = activate(pinned).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["current_release"],
        serde_json::json!({"version": "5.0.0", "sha256": view["sha256"], "size": view["size"]}),
        "{answer}"
    );
}
