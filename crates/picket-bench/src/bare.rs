//! The limit the heartbeat benchmark compares against: a bare hyper + rustls mutual-TLS
//! server with no database, answering `POST /sensor/v1/heartbeat` with the same JSON Picket
//! sends. It uses Picket's own TLS configuration (`sensor_api::tls::server_config`: the same
//! certificate chain, the same client-certificate verifier with its key-possession check),
//! fingerprints the client certificate per connection as Picket does, and parses the request
//! body as Picket does; everything else Picket does per request (routing, metrics, the
//! fingerprint lookup, queueing the heartbeat) is what the comparison measures.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use picket_domain::Timestamp;
use picket_proto::sensor::{HeartbeatRequest, HeartbeatResponse};
use picket_server::sensor_api::tls::{fingerprint, server_config};
use picket_server::tls::SensorTls;

/// The listener TLS of a `picket serve` data dir (`<data-dir>/tls/`).
pub fn sensor_tls(data_dir: &Path) -> Result<SensorTls> {
    let dir = data_dir.join("tls");
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()));
    Ok(SensorTls {
        ca_cert_pem: read("ca.pem")?,
        ca_key_pem: read("ca.key")?,
        server_cert_pem: read("server.pem")?,
        server_key_pem: read("server.key")?,
        dir,
    })
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
    )
}

async fn answer(req: Request<Incoming>, fp: Arc<str>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        Ok(r)
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/sensor/v1/heartbeat" {
        return reply(StatusCode::NOT_FOUND, br#"{"error":{"code":"not_found","message":"no route"}}"#.to_vec());
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, Vec::new());
    };
    let Ok(hb) = serde_json::from_slice::<HeartbeatRequest>(&body) else {
        return reply(StatusCode::BAD_REQUEST, br#"{"error":{"code":"invalid","message":"bad body"}}"#.to_vec());
    };
    let resp = HeartbeatResponse {
        sensor_id: fp[..26].to_string(),
        sensor_name: "SIM-BARE".to_string(),
        config_version_desired: hb.config_version_applied,
        desired_version: None,
        server_time: now(),
        update: None,
        ti: None,
    };
    reply(StatusCode::OK, serde_json::to_vec(&resp).unwrap_or_default())
}

/// Serves until killed; prints `listening on ADDR` once bound.
pub async fn serve(data_dir: &Path, listen: &str) -> Result<()> {
    let config = server_config(&sensor_tls(data_dir)?)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let Some(fp) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| fingerprint(c.as_ref()))
            else {
                return;
            };
            let fp: Arc<str> = fp.into();
            let service = hyper::service::service_fn(move |req| answer(req, fp.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
