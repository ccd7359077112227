//! One identity per simulated sensor: an ECDSA P-256 key and a self-signed client certificate
//! (valid from an hour ago for two years), kept as DER to keep 100,000 of them small.

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};

use crate::SimError;

/// A simulated sensor's certificate and key.
#[derive(Clone)]
pub struct SimIdentity {
    /// The self-signed certificate (DER).
    pub cert_der: Vec<u8>,
    /// The private key (PKCS#8 DER, secret).
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for SimIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimIdentity").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl SimIdentity {
    /// Makes a new key and certificate for `common_name`.
    pub fn generate(common_name: &str) -> Result<SimIdentity, SimError> {
        let err = |e: rcgen::Error| SimError::Setup(format!("making a certificate: {e}"));
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Picket simulated sensor");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(730);
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(SimIdentity { cert_der: cert.der().to_vec(), key_der: key.serialize_der() })
    }

    /// SHA-256 of the certificate, lower-case hex (what the control plane pins).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_is_new() {
        let a = SimIdentity::generate("SIM1").unwrap();
        let b = SimIdentity::generate("SIM1").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        assert!(!format!("{a:?}").contains(&hex::encode(&a.key_der)));
    }
}
