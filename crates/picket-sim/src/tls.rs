//! Where the simulated sensors connect and how: the sensor listener's address, the control
//! plane CA (the only one trusted), and a rustls client configuration per sensor presenting
//! its own certificate. The CA verifier and crypto provider (aws-lc-rs, passed explicitly)
//! are shared; each sensor keeps its own tiny TLS session store, so a reconnect can resume
//! its own session (never another sensor's: the session carries the identity).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::{
    ClientSessionStore, ResolvesClientCert, Tls12ClientSessionValue, Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, NamedGroup, RootCertStore, SignatureScheme};

use crate::SimError;
use crate::identity::SimIdentity;

/// The sensor listener the fleet talks to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given (`https://host:port`).
    pub url: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// The name the listener's certificate is checked against.
    pub server_name: ServerName<'static>,
    /// The `Host` header.
    pub host_header: String,
    /// The CA certificate (PEM).
    pub ca_cert_pem: String,
    verifier: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    next_source: Arc<AtomicUsize>,
}

/// Loopback source addresses the simulator spreads its connections over (see `Target::source`).
pub const LOOPBACK_SOURCES: usize = 64;

impl Target {
    /// Resolves `url` (`https://host:port`) and trusts only `ca_cert_pem` for it.
    pub async fn new(url: &str, ca_cert_pem: &str) -> Result<Target, SimError> {
        let bad = |why: &str| SimError::Setup(format!("sensor listener URL {url:?}: {why}"));
        let rest = url.trim().strip_prefix("https://").ok_or_else(|| bad("use https://HOST:PORT"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("it has no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| bad(&format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| bad(&format!("{host} has no address")))?;
        let server_name = ServerName::try_from(host.clone()).map_err(|e| bad(&e.to_string()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| SimError::Setup(format!("the control plane CA certificate: {e}")))?;
        roots.add(ca).map_err(|e| SimError::Setup(format!("the control plane CA certificate: {e}")))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| SimError::Setup(format!("the CA verifier: {e}")))?;
        Ok(Target {
            url: url.trim().trim_end_matches('/').to_string(),
            addr,
            server_name,
            host_header: authority.to_string(),
            ca_cert_pem: ca_cert_pem.to_string(),
            verifier,
            provider,
            next_source: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The local address the next connection binds to, for a loopback listener: one of
    /// `LOOPBACK_SOURCES` addresses in 127.77.0.0/16, in turn, as real sensors come from many
    /// hosts. From a single source address, every connect() would search a port range that the
    /// kept connections fill (28,000 ports; the kernel scans them linearly), which cost the
    /// simulator two thirds of its CPU at 100,000 sensors; per address the range is nearly free.
    /// `None` (let the kernel choose) for other listeners.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {
                let k = self.next_source.fetch_add(1, Ordering::Relaxed) % LOOPBACK_SOURCES;
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 77, 0, 1 + k as u8)), 0))
            }
            _ => None,
        }
    }

    /// A client configuration presenting `identity`, resuming sessions from `sessions`.
    ///
    /// rustls resumes a session only under the same verifier and the same client-certificate
    /// resolver (by pointer), so the resolver is made once per sensor and kept in its slot.
    pub fn client_config(
        &self,
        identity: &SimIdentity,
        sessions: Arc<SessionSlot>,
    ) -> Result<Arc<ClientConfig>, SimError> {
        let resolver = match sessions.resolver.get() {
            Some(r) => r.clone(),
            None => {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone()));
                let key = self
                    .provider
                    .key_provider
                    .load_private_key(key)
                    .map_err(|e| SimError::Setup(format!("the sensor key: {e}")))?;
                let certified = CertifiedKey::new(vec![CertificateDer::from(identity.cert_der.clone())], key);
                let made: Arc<dyn ResolvesClientCert> = Arc::new(OneCert(Arc::new(certified)));
                sessions.resolver.get_or_init(|| made).clone()
            }
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError::Setup(format!("TLS versions: {e}")))?
            .with_webpki_verifier(self.verifier.clone())
            .with_client_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::store(sessions);
        Ok(Arc::new(config))
    }
}

/// A sensor's one certificate, always presented.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(&self, _: &[&[u8]], sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.key.choose_scheme(sigschemes).map(|_| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// One sensor's TLS session memory: the key-exchange hint and at most two TLS 1.3 tickets
/// (the server sends two per handshake), a few hundred bytes instead of rustls' default
/// 256-entry cache per configuration.
#[derive(Debug, Default)]
pub struct SessionSlot {
    inner: Mutex<SlotInner>,
    /// The sensor's certificate resolver, shared by all its connections (see `client_config`).
    resolver: OnceLock<Arc<dyn ResolvesClientCert>>,
}

#[derive(Debug, Default)]
struct SlotInner {
    kx: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tickets: Vec<Tls13ClientSessionValue>,
}

impl SessionSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientSessionStore for SessionSlot {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.lock().kx = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().kx
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.lock().tls12 = Some(value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.lock().tls12.clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.lock().tls12 = None;
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut s = self.lock();
        if s.tickets.len() >= 2 {
            s.tickets.remove(0);
        }
        s.tickets.push(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.lock().tickets.pop()
    }
}
