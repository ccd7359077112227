//! What the sensor listener refuses: a reused activation file, a forged certificate (a new
//! self-signed key never activated), another sensor's certificate without its key (no
//! handshake), and a deleted sensor (401 within 5 s while it runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, SensorProcess, Server, sensor_cmd, sensor_status, wait_for};

/// Always presents the same certificate and signing key, whether they belong together or not.
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A raw mutual-TLS `GET /sensor/v1/config` presenting `cert_pem` signed with `key_pem`;
/// the bytes answered, or the error (a refused handshake).
async fn raw_get_config(port: u16, ca_pem: &str, cert_pem: &str, key_pem: &str) -> std::io::Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let signer = provider.key_provider.load_private_key(key).expect("signing key");
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM")).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Present(Arc::new(CertifiedKey::new(vec![cert], signer)))));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1").expect("server name").to_owned();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"GET /sensor/v1/config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A reqwest client of the sensor listener with a brand-new self-signed identity.
fn forged_client(ca_pem: &str) -> reqwest::Client {
    let id = picket_sensor::identity::generate("forged", picket_sensor::run::now()).expect("identity");
    let pem = format!("{}\n{}", id.cert_pem, id.key_pem);
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA")])
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"))
        .build()
        .expect("client")
}

async fn refusals(backend: Backend) {
    let server = Server::start(backend, "10m").await;
    let id = server.onboard("DC01").await;
    let file = server.activation_file(&id).await;
    let activation: Value = serde_json::from_slice(&std::fs::read(&file).expect("test fixture")).expect("test fixture");
    let ca = activation["ca_cert_pem"].as_str().expect("CA in the activation file").to_string();
    let state = server.dir.path().join("sensor-state");
    let f = file.to_str().expect("utf-8 path");
    let out = sensor_cmd(&["activate", "--activation-file", f, "--state-dir", state.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "activate: {}", String::from_utf8_lossy(&out.stderr));

    // The same activation file again (another host, another key): refused, saying why.
    let other = server.dir.path().join("other-state");
    let out = sensor_cmd(&["activate", "--activation-file", f, "--state-dir", other.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a reused activation file must be refused");
    assert!(err.contains("already used") && err.contains("activation_used"), "clear reuse error: {err}");
    // And the state dir that holds an activation refuses to be activated twice.
    let out = sensor_cmd(&["activate", "--activation-file", f, "--state-dir", state.to_str().expect("utf-8 path")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already holds"));

    // A forged certificate: the handshake works, every call but activate is 401.
    let base = format!("https://127.0.0.1:{}", server.sensor_port);
    let forged = forged_client(&ca);
    let r = forged.get(format!("{base}/sensor/v1/config")).send().await.expect("forged config call");
    assert_eq!(r.status().as_u16(), 401);
    let hb = serde_json::json!({"service_status": "running", "version": "0.1.0"});
    let r = forged.post(format!("{base}/sensor/v1/heartbeat")).json(&hb).send().await.expect("forged heartbeat");
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "unauthorized");
    // A wrong token is refused without saying whether the sensor exists.
    let act = serde_json::json!({"sensor_id": id, "activation_token": "0".repeat(64)});
    let r = forged.post(format!("{base}/sensor/v1/activate")).json(&act).send().await.expect("forged activation");
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "activation_refused");
    // The real token with a forged certificate after activation: already used.
    let act = serde_json::json!({"sensor_id": id, "activation_token": activation["activation_token"]});
    let r = forged.post(format!("{base}/sensor/v1/activate")).json(&act).send().await.expect("forged activation");
    assert_eq!(r.status().as_u16(), 409);
    let unknown = serde_json::json!({"sensor_id": "no-such-sensor", "activation_token": "0".repeat(64)});
    let r = forged.post(format!("{base}/sensor/v1/activate")).json(&unknown).send().await.expect("activation");
    assert_eq!(r.status().as_u16(), 401);

    // The real certificate with its key works over the same raw client...
    let cert = std::fs::read_to_string(state.join("identity/cert.pem")).expect("test fixture");
    let key = std::fs::read_to_string(state.join("identity/key.pem")).expect("test fixture");
    let ok = raw_get_config(server.sensor_port, &ca, &cert, &key).await.expect("pinned identity connects");
    assert!(ok.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&ok));
    // ...but the same certificate with another key cannot complete the handshake.
    let thief = picket_sensor::identity::generate("thief", picket_sensor::run::now()).expect("test fixture");
    match raw_get_config(server.sensor_port, &ca, &cert, &thief.key_pem).await {
        Err(_) => {}
        Ok(bytes) => panic!("a certificate without its key was answered: {}", String::from_utf8_lossy(&bytes)),
    }

    // Deleting the sensor revokes it at once: the running sensor sees 401 within 5 s.
    let sensor = SensorProcess::run(&state, 1);
    wait_for(Duration::from_secs(20), "up_to_date", async || {
        (server.sensor(&id).await["sensor_status"] == "up_to_date").then_some(())
    })
    .await;
    let (status, _) = server.call(reqwest::Method::DELETE, &format!("/api/v1/sensors/{id}"), None).await;
    assert_eq!(status, 204);
    let deleted_at = picket_sensor::run::now();
    let t0 = Instant::now();
    wait_for(Duration::from_secs(5), "401 at the running sensor after delete", async || {
        let s = sensor_status(&state);
        let at = s["last_error_at"].as_str().and_then(picket_proto::time::parse_ts)?;
        (at.0 >= deleted_at.0 && s["last_error"].as_str()?.contains("401")).then_some(())
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    let refused = raw_get_config(server.sensor_port, &ca, &cert, &key).await.expect("handshake still works");
    assert!(refused.starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&refused));
    assert!(sensor.log().contains("401"), "the sensor logs the refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_sqlite() {
    refusals(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_postgres() {
    refusals(Backend::Postgres).await;
}
