//! The sensor's own client certificate: an ECDSA P-256 key and a self-signed certificate
//! valid for two years (explicit `not_before`/`not_after`, backdated an hour for clock skew),
//! and what `status` shows about it (SHA-256 fingerprint, expiry).

use std::time::Duration;

use picket_domain::Timestamp;
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// How long a sensor certificate is valid.
pub const CERT_VALIDITY: Duration = Duration::from_secs(730 * 86400);
/// How far back a new certificate's validity starts, for hosts whose clock runs ahead.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// rcgen failed.
    #[error("making the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The PEM or DER is not a certificate.
    #[error("reading the certificate: {0}")]
    Parse(String),
}

/// A freshly made identity, as PEM.
pub struct NewIdentity {
    /// The self-signed certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8, secret).
    pub key_pem: String,
}

impl std::fmt::Debug for NewIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewIdentity").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

fn odt(t: Timestamp) -> Result<OffsetDateTime, IdentityError> {
    OffsetDateTime::from_unix_timestamp(t.0.div_euclid(1000)).map_err(|e| IdentityError::Parse(e.to_string()))
}

/// Makes a new key and a self-signed client certificate for `common_name`, valid from an hour
/// before `now` for `CERT_VALIDITY`.
pub fn generate(common_name: &str, now: Timestamp) -> Result<NewIdentity, IdentityError> {
    generate_valid_for(common_name, now, CERT_VALIDITY)
}

/// `generate` with another validity (tests of rotation before expiry use a short one).
pub fn generate_valid_for(common_name: &str, now: Timestamp, validity: Duration) -> Result<NewIdentity, IdentityError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Picket sensor");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = odt(now.minus(BACKDATE))?;
    params.not_after = odt(now.plus(validity))?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| IdentityError::Parse(format!("OS random numbers: {e}")))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    let cert = params.self_signed(&key)?;
    Ok(NewIdentity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// What `status` shows about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER, lower-case hex (the form the control plane pins).
    pub fingerprint: String,
    /// End of validity.
    pub not_after: Timestamp,
}

/// Reads the first certificate of a PEM text.
pub fn cert_info(cert_pem: &str) -> Result<CertInfo, IdentityError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&pem.contents).map_err(|e| IdentityError::Parse(e.to_string()))?;
    Ok(CertInfo {
        fingerprint: hex::encode(Sha256::digest(&pem.contents)),
        not_after: Timestamp(cert.validity().not_after.timestamp().saturating_mul(1000)),
    })
}

/// Whether `key_pem` is the private key of `cert_pem` (a half-written identity is not).
pub fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let Ok(key) = KeyPair::from_pem(key_pem) else { return false };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else { return false };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&pem.contents) else { return false };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_two_year_self_signed_p256_certificate() {
        let now = Timestamp(1_800_000_000_000);
        let id = generate("DC01", now).unwrap();
        assert!(id.key_pem.contains("PRIVATE KEY"));
        let info = cert_info(&id.cert_pem).unwrap();
        assert_eq!(info.not_after, now.plus(CERT_VALIDITY));
        assert_eq!(info.fingerprint.len(), 64);
        let other = generate("DC01", now).unwrap();
        assert_ne!(cert_info(&other.cert_pem).unwrap().fingerprint, info.fingerprint);
        assert!(cert_info("not a certificate").is_err());
        assert!(key_matches(&id.cert_pem, &id.key_pem));
        assert!(!key_matches(&id.cert_pem, &other.key_pem), "another key");
        assert!(!key_matches(&id.cert_pem, "garbage"));
        let short = generate_valid_for("DC01", now, Duration::from_secs(86400)).unwrap();
        assert_eq!(cert_info(&short.cert_pem).unwrap().not_after, now.plus(Duration::from_secs(86400)));
    }
}
