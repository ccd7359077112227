//! Two-phase certificate rotation on the sensor side, crash-safe at every step:
//!
//! 1. make a new key and certificate (same generator as activation) into
//!    `identity/pending/` — or reuse the one a crashed run left there;
//! 2. **propose** it with the current certificate (the old one keeps working);
//! 3. **confirm** over a connection presenting the new one (the control plane pins it and
//!    refuses the old from then on), then write `identity/pending/confirmed`;
//! 4. copy the pending identity over `identity/{cert,key}.pem` (each file atomically) and
//!    remove `identity/pending/`.
//!
//! Killed before 3, the old identity still works and the next rotation repeats 2 (a repeat
//! propose replaces the pending one) and 3. Killed between the control plane's confirm and the
//! marker, the old certificate gets 401 at the next propose: the rotation then goes straight to
//! the confirm, which the control plane answers again for the certificate it already pins.
//! Killed in 4, the marker makes the next call finish the copy. A lock file keeps `rotate-cert`
//! and `run` from rotating at the same time.

use picket_proto::sensor::CertProposeRequest;

use crate::client::{ClientError, SensorClient};
use crate::identity;
use crate::run::{SensorError, now};
use crate::state::{SensorIdentity, StateDir};

/// Which part of a rotation to run (`rotate-cert --phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Make (or reuse) the new certificate and propose it; stop there.
    Propose,
    /// Confirm the certificate proposed earlier and make it current.
    Confirm,
    /// Both.
    All,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new certificate is proposed (pending); the old one still works.
    Proposed {
        /// SHA-256 of the pending certificate.
        pending_fingerprint: String,
    },
    /// The new certificate is current; the old one is retired.
    Rotated {
        /// SHA-256 of the certificate now in use.
        fingerprint: String,
    },
}

/// Rotates the certificate of the sensor `me` whose state dir is `state` (see the module doc).
/// Locally managed sensors have no control plane to tell: their identity is replaced at once.
pub async fn rotate(state: &StateDir, me: &SensorIdentity, phase: Phase) -> Result<Outcome, SensorError> {
    let Some(_lock) = state.try_lock_identity()? else {
        return Err(SensorError::Invalid(
            "another picket-sensor process is rotating this sensor's certificate; try again in a moment".to_string(),
        ));
    };
    if state.install_confirmed()? {
        let (cert, _) = state.read_identity()?;
        let fingerprint = identity::cert_info(&cert)?.fingerprint;
        tracing::info!(%fingerprint, "finished a rotation confirmed earlier");
        if phase != Phase::Propose {
            return Ok(Outcome::Rotated { fingerprint });
        }
    }
    if me.mode == picket_domain::Mode::LocallyManaged {
        let id = identity::generate(&me.sensor_name, now())?;
        state.write_identity(&id.cert_pem, &id.key_pem)?;
        return Ok(Outcome::Rotated { fingerprint: identity::cert_info(&id.cert_pem)?.fingerprint });
    }
    let mut old_refused = false;
    if phase != Phase::Confirm {
        let (cert_pem, _) = match state.read_pending()? {
            Some(p) if identity::key_matches(&p.0, &p.1) => p,
            _ => {
                let id = identity::generate(&me.sensor_name, now())?;
                state.write_pending(&id.cert_pem, &id.key_pem)?;
                (id.cert_pem.clone(), id.key_pem.clone())
            }
        };
        let (cur_cert, cur_key) = state.read_identity()?;
        let client = SensorClient::new(&me.control_plane_urls, &me.ca_cert_pem, &cur_cert, &cur_key)?;
        match client.propose_cert(&CertProposeRequest { cert_pem: cert_pem.clone() }).await {
            Ok(answer) => {
                tracing::info!(pending = %answer.pending_fingerprint, "new certificate proposed");
                if phase == Phase::Propose {
                    return Ok(Outcome::Proposed { pending_fingerprint: answer.pending_fingerprint });
                }
            }
            // The control plane may already pin the pending certificate (a crash right after
            // an earlier confirm): the confirm below tells.
            Err(e) if e.is_unauthorized() && phase == Phase::All => {
                tracing::warn!(error = %e, "the current certificate was refused; trying to confirm the pending one");
                old_refused = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let Some((cert_pem, key_pem)) = state.read_pending()? else {
        return Err(SensorError::Invalid(format!(
            "no certificate was proposed in {}; run `picket-sensor rotate-cert --phase propose` first",
            state.root().display()
        )));
    };
    let client = SensorClient::new(&me.control_plane_urls, &me.ca_cert_pem, &cert_pem, &key_pem)?;
    let answer = match client.confirm_cert().await {
        Ok(a) => a,
        Err(e) if e.is_unauthorized() && old_refused => {
            return Err(SensorError::Client(ClientError::Refused {
                status: 401,
                error: picket_proto::ErrorDetail {
                    code: "unauthorized".to_string(),
                    message: "neither the current nor the new certificate is accepted: the sensor was deleted or \
                              its certificate revoked; reactivate it"
                        .to_string(),
                },
            }));
        }
        Err(e) => return Err(e.into()),
    };
    state.mark_confirmed()?;
    state.install_confirmed()?;
    tracing::info!(fingerprint = %answer.cert_fingerprint, "certificate rotated");
    Ok(Outcome::Rotated { fingerprint: answer.cert_fingerprint })
}
