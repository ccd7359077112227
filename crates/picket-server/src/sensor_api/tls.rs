//! TLS of the sensor listener: rustls with the aws-lc-rs provider passed explicitly, client
//! certificates required, any self-signed client certificate accepted *if* its holder proves
//! possession of the key (signature checks delegate to rustls), and an `Accept` wrapper that
//! puts the leaf certificate's SHA-256 fingerprint into every request's extensions.
//!
//! Authorisation is not decided here: the fingerprint is looked up after the handshake
//! (`super::auth`), so a deleted sensor is refused on its next request, not its next handshake.

use std::io;
use std::sync::Arc;

use axum::Extension;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tower_layer::Layer;

use crate::ServerError;
use crate::tls::SensorTls;

/// The SHA-256 (lower-case hex) of the client certificate the connection was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFingerprint(pub String);

/// When the client certificate the connection was made with expires (ms since the epoch),
/// if it parsed; recorded at activation for the `cert_expiring` health issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCertExpiry(pub Option<picket_domain::Timestamp>);

/// The end of validity of a DER certificate, if it parses.
pub fn cert_not_after(der: &[u8]) -> Option<picket_domain::Timestamp> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(picket_domain::Timestamp(cert.validity().not_after.timestamp().saturating_mul(1000)))
}

/// The SHA-256 fingerprint (hex) of a DER certificate, the form pinned in the store.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The one crypto provider of the sensor listener (aws-lc-rs), never the process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any client certificate that parses and is within its validity period, and checks
/// handshake signatures against it with the provider's algorithms (proof of key possession:
/// presenting someone else's certificate without its key fails here).
#[derive(Debug)]
pub struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: &CryptoProvider) -> AnyClientCert {
        AnyClientCert { algorithms: provider.signature_verification_algorithms }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = cert.validity();
        if now < validity.not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet));
        }
        if now > validity.not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{what}: {e}"))
}

/// The rustls server configuration of the sensor listener: its certificate (chained to the
/// sensor CA), mandatory client certificates checked by `AnyClientCert`, HTTP/1.1.
pub fn server_config(tls: &SensorTls) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    // AES-128-GCM with SHA-256 first, chosen over the client's order: TLS 1.3's key schedule
    // and transcript run on the suite's hash, and SHA-256 has instructions on current x86 CPUs
    // while SHA-384 runs in software (5-8% of the CPU on both sides of a fleet that reconnects
    // a thousand times a second). Both suites are TLS 1.3's standard ones.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(tls.server_cert_pem.as_bytes()) {
        chain.push(c.map_err(|e| tls_err("reading the listener certificate", e))?);
    }
    chain.push(CertificateDer::from_pem_slice(tls.ca_cert_pem.as_bytes()).map_err(|e| tls_err("reading the CA", e))?);
    let key = PrivateKeyDer::from_pem_slice(tls.server_key_pem.as_bytes())
        .map_err(|e| tls_err("reading the listener key", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS versions", e))?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(&provider)))
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("the listener certificate", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    // Stateless TLS 1.3 session tickets (keys rotate every 6 hours, kept in memory only): a
    // sensor that reconnects resumes without a certificate signature and verification on
    // either side, which is what makes a fleet of reconnecting sensors cheap. A resumed
    // session carries the client certificate it was made with, so the fingerprint check below
    // (and revocation) applies to it exactly as to a full handshake.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| tls_err("TLS session tickets", e))?;
    // One ticket per handshake (rustls sends two by default): a sensor resumes with one
    // ticket per connection and every resumed handshake hands it the next, so a second ticket
    // is only encrypted, sent and stored for nothing on each of thousands of reconnects.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// axum-server's rustls acceptor, then the peer's fingerprint into the request extensions.
#[derive(Clone)]
pub struct FingerprintAcceptor {
    inner: RustlsAcceptor,
}

impl FingerprintAcceptor {
    /// Terminates TLS with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> FingerprintAcceptor {
        FingerprintAcceptor { inner: RustlsAcceptor::new(RustlsConfig::from_config(config)) }
    }
}

impl<I, S> Accept<I, S> for FingerprintAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<axum::middleware::AddExtension<S, PeerFingerprint>, PeerCertExpiry>;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let (stream, service) = inner.accept(stream, service).await?;
            let (_, conn) = stream.get_ref();
            let leaf = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate"))?;
            let (fp, expiry) = (fingerprint(leaf.as_ref()), cert_not_after(leaf.as_ref()));
            let service = Extension(PeerFingerprint(fp)).layer(service);
            Ok((stream, Extension(PeerCertExpiry(expiry)).layer(service)))
        })
    }
}
