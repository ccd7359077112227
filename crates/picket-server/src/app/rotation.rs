//! Two-phase certificate rotation, called by the sensor API: a sensor authenticated with its
//! pinned certificate proposes a new self-signed one (checked: parses, self-signed, currently
//! valid, pinned to or proposed by no sensor), then confirms over a connection presenting the
//! new one, which retires the old. Also records the pinned certificate's expiry at activation
//! and at confirm, and raises / closes the `cert_expiring` health issue from it.

use picket_domain::Timestamp;
use picket_proto::sensor::{CertConfirmResponse, CertProposeRequest, CertProposeResponse};
use picket_store::{RotationError, SensorRow};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use super::{App, AppError};

/// Why a rotation step was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotationRefusal {
    /// The proposed certificate is unusable; the message says why.
    #[error("{0}")]
    BadCertificate(String),
    /// The store refused the step (unknown certificate, certificate in use, not proposed).
    #[error("{0}")]
    Refused(RotationError),
    /// Something else failed.
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<RotationError> for RotationRefusal {
    fn from(e: RotationError) -> RotationRefusal {
        match e {
            RotationError::Store(s) => RotationRefusal::App(s.into()),
            e => RotationRefusal::Refused(e),
        }
    }
}

/// What the control plane knows of a proposed certificate once it passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCert {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// End of validity.
    pub not_after: Timestamp,
}

/// Checks a proposed certificate: one PEM certificate that parses, is valid at `now`, and whose
/// signature verifies with its own public key (self-signed: its holder had the key when making it).
pub fn check_proposed_cert(pem: &str, now: Timestamp) -> Result<CheckedCert, RotationRefusal> {
    let bad = |m: &str| RotationRefusal::BadCertificate(format!("cert_pem: {m}"));
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| bad("not a PEM certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| bad("not an X.509 certificate"))?;
    let validity = cert.validity();
    let (from, to) = (validity.not_before.timestamp() * 1000, validity.not_after.timestamp() * 1000);
    if now.0 < from {
        return Err(bad("not valid yet (check the host's clock)"));
    }
    if now.0 > to {
        return Err(bad("expired"));
    }
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(bad("not self-signed (issuer and subject differ)"));
    }
    let provider = crate::sensor_api::tls::provider();
    let key = cert.public_key().subject_public_key.data.as_ref();
    let tbs = cert.tbs_certificate.as_ref();
    let signature = cert.signature_value.data.as_ref();
    let signed = provider
        .signature_verification_algorithms
        .all
        .iter()
        .any(|alg| alg.verify_signature(key, tbs, signature).is_ok());
    if !signed {
        return Err(bad("not self-signed (its signature does not verify with its own key)"));
    }
    Ok(CheckedCert { fingerprint: hex::encode(Sha256::digest(der.as_ref())), not_after: Timestamp(to) })
}

impl App {
    /// Records the pending certificate of `sensor` (authenticated by `current`, its pinned
    /// fingerprint); a repeat replaces the earlier proposal.
    #[tracing::instrument(skip_all, fields(sensor_id = %sensor.id))]
    pub async fn propose_sensor_certificate(
        &self,
        sensor: &SensorRow,
        current: &str,
        req: &CertProposeRequest,
    ) -> Result<CertProposeResponse, RotationRefusal> {
        let now = self.now();
        let cert = check_proposed_cert(&req.cert_pem, now)?;
        let st = self.store.propose_certificate(current, &cert.fingerprint, cert.not_after, now).await?;
        tracing::info!(pending = %cert.fingerprint, "certificate proposed");
        Ok(CertProposeResponse {
            sensor_id: st.sensor_id,
            pending_fingerprint: cert.fingerprint,
            pending_expires_at: cert.not_after,
        })
    }

    /// Confirms the rotation of the sensor whose pending certificate is `presented`: pinned :=
    /// pending. The only place a pending fingerprint authenticates. Presenting the certificate
    /// already pinned answers the same without a change (a sensor resuming after a crash).
    #[tracing::instrument(skip_all)]
    pub async fn confirm_sensor_certificate(&self, presented: &str) -> Result<CertConfirmResponse, RotationRefusal> {
        let now = self.now();
        match self.store.confirm_certificate(presented, now).await {
            Ok(st) => {
                // The retired certificate may sit in this replica's authentication cache.
                self.sensor_auth.revoke_all();
                tracing::info!(sensor_id = %st.sensor_id, pinned = %presented, "certificate rotated");
                let window_end = now.plus(self.config.cert_rotate_before);
                if st.expires_at.is_none_or(|e| e.0 > window_end.0) {
                    let kind = picket_domain::HealthIssueKind::CertExpiring;
                    if let Err(e) = self.store.resolve_health_issue(&st.sensor_id, kind, now).await {
                        tracing::warn!(error = %e, "closing the cert_expiring issue failed");
                    }
                }
                Ok(CertConfirmResponse {
                    sensor_id: st.sensor_id,
                    cert_fingerprint: presented.to_string(),
                    cert_expires_at: st.expires_at,
                })
            }
            Err(RotationError::NotProposed) => {
                let row = self.store.sensor_by_fingerprint(presented).await.map_err(AppError::from)?;
                let Some(row) = row else {
                    return Err(RotationError::NotProposed.into());
                };
                let st = self.store.cert_state(&row.id).await.map_err(AppError::from)?;
                Ok(CertConfirmResponse {
                    sensor_id: row.id,
                    cert_fingerprint: presented.to_string(),
                    cert_expires_at: st.and_then(|s| s.expires_at),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records when the certificate just pinned at activation expires. Failure is logged, not
    /// fatal: the activation itself has happened, and a rotation records the expiry again.
    /// A certificate already inside the rotation window raises `cert_expiring` at once.
    pub async fn record_activation_cert_expiry(&self, sensor_id: &str, fingerprint: &str, expires_at: Timestamp) {
        if let Err(e) = self.store.record_cert_expiry(sensor_id, fingerprint, expires_at).await {
            tracing::warn!(sensor_id, error = %e, "recording the certificate's expiry failed");
            return;
        }
        let now = self.now();
        if expires_at.0 < now.plus(self.config.cert_rotate_before).0
            && let Err(e) = self.open_cert_expiring(sensor_id, Some(fingerprint), expires_at, now).await
        {
            tracing::warn!(sensor_id, error = %e, "raising cert_expiring failed");
        }
    }

    /// Raises the `cert_expiring` health issue for every activated sensor whose pinned
    /// certificate expires within `cert_rotate_before` (`PICKET_CERT_ROTATE_BEFORE`, 30 days),
    /// at most one open per sensor; a confirmed rotation closes it (`confirm_sensor_certificate`).
    /// Returns how many issues it opened. Idempotent: called periodically and at activation.
    pub async fn sync_cert_expiring_issues(&self) -> Result<usize, AppError> {
        const PAGE: u32 = 10_000;
        let now = self.now();
        let due = self.store.certs_expiring_before(now.plus(self.config.cert_rotate_before), PAGE).await?;
        let mut opened = 0;
        for c in due {
            if let Some(expires) = c.expires_at {
                opened +=
                    usize::from(self.open_cert_expiring(&c.sensor_id, c.fingerprint.as_deref(), expires, now).await?);
            }
        }
        Ok(opened)
    }

    /// Opens the `cert_expiring` issue of a sensor unless one is open; whether it opened one.
    async fn open_cert_expiring(
        &self,
        sensor_id: &str,
        fingerprint: Option<&str>,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<bool, AppError> {
        use picket_domain::issues::{format_utc, human};
        let fp = fingerprint.unwrap_or("unknown");
        let detail = if expires.0 <= now.0 {
            format!(
                "Its pinned client certificate (SHA-256 {fp}) expired at {}; the control plane refuses it.",
                format_utc(expires)
            )
        } else {
            format!(
                "Its pinned client certificate (SHA-256 {fp}) expires at {} (in {}); rotation is due {} before expiry.",
                format_utc(expires),
                human(expires.since(now)),
                human(self.config.cert_rotate_before),
            )
        };
        let kind = picket_domain::HealthIssueKind::CertExpiring;
        let issue = picket_store::NewHealthIssue {
            id: crate::ids::new_uuid(),
            sensor_id: sensor_id.to_string(),
            kind,
            opened_at: now,
            title: kind.title().to_string(),
            detail,
            recommendation: kind.recommendation().to_string(),
        };
        let opened = self.store.open_health_issue(&issue, None).await?.is_some();
        if opened {
            tracing::info!(sensor_id, "certificate expiring: health issue opened");
        }
        Ok(opened)
    }

    /// When the certificate pinned to `sensor_id` expires, if recorded.
    pub async fn sensor_cert_expiry(&self, sensor_id: &str) -> Result<Option<Timestamp>, AppError> {
        Ok(self.store.cert_state(sensor_id).await?.and_then(|s| s.expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(from_days: i64, to_days: i64) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        let t = time::OffsetDateTime::now_utc();
        params.not_before = t + time::Duration::days(from_days);
        params.not_after = t + time::Duration::days(to_days);
        (params.self_signed(&key).expect("self-signed").pem(), key)
    }

    fn now() -> Timestamp {
        Timestamp(time::OffsetDateTime::now_utc().unix_timestamp() * 1000)
    }

    fn refused(pem: &str, needle: &str) {
        match check_proposed_cert(pem, now()) {
            Err(RotationRefusal::BadCertificate(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected a refusal with {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_current_self_signed_certificate() {
        let (pem, _) = cert(-1, 730);
        let c = check_proposed_cert(&pem, now()).expect("accepted");
        assert_eq!(c.fingerprint.len(), 64);
        assert!(c.not_after.0 > now().0 + 729 * 86_400_000);
    }

    #[test]
    fn refuses_garbage_expired_future_and_ca_issued_certificates() {
        refused("hello", "not a PEM certificate");
        refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not an X.509");
        refused(&cert(-10, -1).0, "expired");
        refused(&cert(1, 10).0, "not valid yet");
        // Issued by a CA: the issuer differs and the signature is the CA's.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Some CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        leaf.distinguished_name.push(rcgen::DnType::CommonName, "leaf");
        let issued = leaf.signed_by(&leaf_key, &*ca).expect("issued");
        refused(&issued.pem(), "not self-signed");
        // Same subject as issuer but signed by another key.
        let other = rcgen::KeyPair::generate().expect("key");
        let mut p2 = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p2.distinguished_name.push(rcgen::DnType::CommonName, "Some CA");
        let forged = p2.signed_by(&other, &*ca).expect("forged");
        refused(&forged.pem(), "signature does not verify");
    }
}
