//! The sensor CA and the sensor listener's certificate.
//!
//! The CA (ECDSA P-256) is made once per cluster and kept in the store as the secrets
//! `sensor_ca_key` and `sensor_ca_cert`, so every replica signs with the same one and
//! activation files pin it. Each start mirrors it into `<data_dir>/tls/` (keys 0600) and
//! issues a fresh listener certificate for `127.0.0.1`, `localhost`, the sensor-listen IP
//! and `sensor_hostnames`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use picket_domain::Timestamp;
use picket_store::Store;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::{ServerConfig, ServerError};

/// Store secret holding the CA private key (PEM).
pub const CA_KEY_SECRET: &str = "sensor_ca_key";
/// Store secret holding the CA certificate (PEM).
pub const CA_CERT_SECRET: &str = "sensor_ca_cert";
/// How long the CA is valid: sensors pin it, so it outlives many releases.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 86400);
/// How long a listener certificate is valid; a new one is issued at every start.
pub const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(397 * 86400);
/// Clock skew tolerated on hosts: certificates are valid from a little before now.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The CA and the sensor listener's key material, as PEM.
#[derive(Clone)]
pub struct SensorTls {
    /// The CA certificate, pinned by sensors.
    pub ca_cert_pem: String,
    /// The CA private key (secret), for signing listener certificates.
    pub ca_key_pem: String,
    /// The listener certificate for this start.
    pub server_cert_pem: String,
    /// The listener private key (secret).
    pub server_key_pem: String,
    /// Where the PEM files were written (`<data_dir>/tls`).
    pub dir: PathBuf,
}

impl std::fmt::Debug for SensorTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorTls").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn tls_err(what: &str, e: rcgen::Error) -> ServerError {
    ServerError::Tls(format!("{what}: {e}"))
}

fn odt(t: Timestamp) -> Result<OffsetDateTime, ServerError> {
    OffsetDateTime::from_unix_timestamp(t.0.div_euclid(1000))
        .map_err(|e| ServerError::Tls(format!("time out of range: {e}")))
}

/// Makes the CA certificate for `key`, valid from shortly before `now`.
fn ca_cert_pem(key: &KeyPair, now: Timestamp) -> Result<String, ServerError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Picket sensor CA");
    dn.push(DnType::OrganizationName, "Picket");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = odt(now.minus(BACKDATE))?;
    params.not_after = odt(now.plus(CA_VALIDITY))?;
    params.serial_number = Some(crate::ids::random_bytes::<16>().to_vec().into());
    Ok(params.self_signed(key).map_err(|e| tls_err("self-signing the CA", e))?.pem())
}

/// The names the listener certificate is valid for.
fn server_names(config: &ServerConfig) -> Vec<String> {
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let ip = config.sensor_listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.extend(config.sensor_hostnames.iter().cloned());
    let mut seen = Vec::new();
    names.retain(|n| {
        let new = !seen.contains(n);
        seen.push(n.clone());
        new
    });
    names
}

/// Issues a listener certificate for `names`, signed by the CA.
fn server_cert(
    names: Vec<String>,
    ca_cert_pem: &str,
    ca_key: &KeyPair,
    now: Timestamp,
) -> Result<(String, String), ServerError> {
    let key = KeyPair::generate().map_err(|e| tls_err("generating the listener key", e))?;
    let mut params = CertificateParams::new(names).map_err(|e| tls_err("listener certificate names", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Picket sensor listener");
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = odt(now.minus(BACKDATE))?;
    params.not_after = odt(now.plus(SERVER_CERT_VALIDITY))?;
    params.serial_number = Some(crate::ids::random_bytes::<16>().to_vec().into());
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(|e| tls_err("reading the CA", e))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| tls_err("signing the listener certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `contents` to `path` atomically, with mode 0600 when `secret`.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), ServerError> {
    let io = |source| ServerError::Io { path: path.to_path_buf(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes a secret file (0600) atomically; used for keys and the bootstrap token.
pub(crate) fn write_secret_file(path: &Path, contents: &str) -> Result<(), ServerError> {
    write_file(path, contents, true)
}

/// Gets or makes the cluster's CA, issues this start's listener certificate, and mirrors
/// both into `<data_dir>/tls/`.
#[tracing::instrument(skip_all)]
pub async fn prepare(config: &ServerConfig, store: &dyn Store, now: Timestamp) -> Result<SensorTls, ServerError> {
    // Key first, then a certificate made from whichever key won: replicas racing here end
    // up with one key and a certificate that matches it.
    let candidate = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
    let ca_key_pem = store.get_or_init_secret(CA_KEY_SECRET, &candidate.serialize_pem()).await?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| tls_err("reading the stored CA key", e))?;
    let ca_cert_pem = store.get_or_init_secret(CA_CERT_SECRET, &ca_cert_pem(&ca_key, now)?).await?;
    let (server_cert_pem, server_key_pem) = server_cert(server_names(config), &ca_cert_pem, &ca_key, now)?;

    let dir = config.data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| ServerError::Io { path: dir.clone(), source })?;
    write_file(&dir.join("ca.pem"), &ca_cert_pem, false)?;
    write_file(&dir.join("ca.key"), &ca_key_pem, true)?;
    write_file(&dir.join("server.pem"), &server_cert_pem, false)?;
    write_file(&dir.join("server.key"), &server_key_pem, true)?;
    Ok(SensorTls { ca_cert_pem, ca_key_pem, server_cert_pem, server_key_pem, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_certificate_chains_to_the_ca_and_names_its_hosts() {
        let now = Timestamp(1_795_333_607_000);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_cert_pem(&ca_key, now).unwrap();
        let mut config = ServerConfig::new(PathBuf::from("/nonexistent"));
        config.sensor_hostnames = vec!["sensors.example.com".into(), "localhost".into()];
        let names = server_names(&config);
        assert_eq!(names, ["127.0.0.1", "localhost", "sensors.example.com"]);
        let (cert, key) = server_cert(names, &ca, &ca_key, now).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        // The CA round-trips through PEM as an issuer.
        assert!(Issuer::from_ca_cert_pem(&ca, &ca_key).is_ok());
    }
}
