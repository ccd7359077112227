//! One HTTP/1.1 keep-alive connection over mutual TLS, made with one sensor's identity.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use crate::SimError;
use crate::identity::SimIdentity;
use crate::tls::{SessionSlot, Target};

/// A TCP connection to `target`, from one of its source addresses when it has them (falls
/// back to the kernel's choice when binding fails).
async fn connect(target: &Target) -> std::io::Result<TcpStream> {
    if let Some(source) = target.source() {
        let socket = TcpSocket::new_v4()?;
        if socket.bind(source).is_ok() {
            return socket.connect(target.addr).await;
        }
    }
    TcpStream::connect(target.addr).await
}

/// An open connection of one sensor.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    /// Whether the TLS handshake resumed an earlier session.
    pub resumed: bool,
}

impl Conn {
    /// Connects to `target` presenting `identity` (resuming from `sessions` when it can).
    pub async fn open(target: &Target, identity: &SimIdentity, sessions: Arc<SessionSlot>) -> Result<Conn, SimError> {
        let config = target.client_config(identity, sessions)?;
        let tcp = connect(target).await.map_err(|source| SimError::Connect { addr: target.addr, source })?;
        let _ = tcp.set_nodelay(true);
        // Close with a reset, not a FIN: the simulator closes first, and every close would
        // otherwise park a loopback port in TIME_WAIT for a minute; at a thousand reconnects a
        // second the ephemeral ports run out and connect() spins in the kernel.
        let _ = tcp.set_zero_linger();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|e| SimError::Tls(e.to_string()))?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| SimError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender, host: target.host_header.clone(), resumed })
    }

    /// Whether the connection can still carry requests.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer; error statuses are `SimError::Refused`.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, SimError> {
        let fut = async {
            self.sender.ready().await.map_err(|e| SimError::Http(e.to_string()))?;
            let mut req = Request::builder().method(method).uri(path).header(HOST, &self.host);
            if body.is_some() {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| SimError::Http(e.to_string()))?;
            let resp = self.sender.send_request(req).await.map_err(|e| SimError::Http(e.to_string()))?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(|e| SimError::Http(e.to_string()))?.to_bytes();
            if status != StatusCode::OK {
                let body = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                return Err(SimError::Refused { status: status.as_u16(), body });
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| SimError::Timeout(timeout))?
    }
}
