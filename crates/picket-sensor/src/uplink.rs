//! What a cloud-connected `run` sends and fetches beside its heartbeats: the alert upload
//! (batches from the alert store, marked uploaded only after the control plane's answer, so a
//! kill between upload and answer only re-sends, with the same ids) and the TI package a
//! heartbeat answer offers (downloaded size-capped, digest-checked, verified, applied).
//! Both use their own client, rebuilt whenever `identity/cert.pem` changes (rotation).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picket_proto::ti::{AlertUpload, MAX_ALERTS_PER_UPLOAD, TiOffer};
use tokio::sync::{Notify, mpsc, watch};

use crate::alerts::AlertStore;
use crate::client::{ClientError, SensorClient};
use crate::state::{SensorIdentity, StateDir};
use crate::ti::{TiError, TiHandle};

/// How long the uploader waits for new alerts before looking again anyway.
const IDLE: Duration = Duration::from_secs(1);

/// A client for the identity in the state dir, rebuilt when the certificate changes.
#[derive(Debug)]
pub struct IdentityClient {
    state: StateDir,
    me: SensorIdentity,
    cert_pem: String,
    client: Option<SensorClient>,
}

impl IdentityClient {
    /// A client for `me`'s identity in `state` (loaded on first use).
    pub fn new(state: StateDir, me: SensorIdentity) -> IdentityClient {
        IdentityClient { state, me, cert_pem: String::new(), client: None }
    }

    /// The client for the current identity.
    pub fn get(&mut self) -> Result<&SensorClient, ClientError> {
        let (cert, key) = self.state.read_identity().map_err(|e| ClientError::Setup(e.to_string()))?;
        if self.client.is_none() || cert != self.cert_pem {
            if !crate::identity::key_matches(&cert, &key) {
                return Err(ClientError::Setup("the identity is being replaced".into()));
            }
            let c = SensorClient::new(&self.me.control_plane_urls, &self.me.ca_cert_pem, &cert, &key)?;
            self.client = Some(c);
            self.cert_pem = cert;
        }
        self.client.as_ref().ok_or_else(|| ClientError::Setup("no client".into()))
    }
}

/// Capped exponential backoff with equal jitter: 1 s doubling up to `cap`.
pub fn backoff(failures: u32, cap: Duration, r: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = Duration::from_secs(1).saturating_mul(1u32 << exp).min(cap);
    raw.mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
}

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Waits `d`, or less if `stop` turns true; returns whether it did.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

fn lock(store: &Mutex<AlertStore>) -> std::sync::MutexGuard<'_, AlertStore> {
    match store.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Uploads the store's alerts until `stop` turns true.
pub async fn upload_loop(
    mut client: IdentityClient,
    store: Arc<Mutex<AlertStore>>,
    stored: Arc<Notify>,
    max_backoff: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut batch_max = MAX_ALERTS_PER_UPLOAD;
    while !*stop.borrow() {
        let pending = lock(&store).pending(batch_max);
        let batch = match pending {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the alert store");
                if pause(IDLE, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let Some(&(last_seq, _)) = batch.last() else {
            tokio::select! {
                _ = stored.notified() => {}
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        };
        let req = AlertUpload { alerts: batch.iter().map(|(_, a)| a.clone()).collect() };
        let result = match client.get() {
            Ok(c) => tokio::select! {
                r = c.upload_alerts(&req) => r,
                _ = stop.wait_for(|s| *s) => break,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(answer) => {
                if let Err(e) = lock(&store).mark_uploaded(last_seq) {
                    tracing::warn!(error = %e, "cannot record the upload (the alerts will be sent again)");
                }
                tracing::info!(
                    alerts = req.alerts.len(),
                    accepted = answer.accepted,
                    duplicates = answer.duplicates,
                    "alerts uploaded"
                );
                failures = 0;
                batch_max = MAX_ALERTS_PER_UPLOAD;
            }
            Err(ClientError::Refused { status: 413, .. }) if batch.len() > 1 => {
                batch_max = (batch.len() / 2).max(1);
            }
            Err(ClientError::Refused { status: 400 | 422, .. }) if batch.len() > 1 => {
                // Find the alert the control plane refuses by halving the batch.
                batch_max = (batch.len() / 2).max(1);
            }
            Err(ClientError::Refused { status: status @ (400 | 413 | 422), error }) => {
                tracing::error!(
                    status,
                    code = %error.code,
                    message = %error.message,
                    alert = %req.alerts[0].id,
                    "the control plane refuses this alert; it stays on the host only"
                );
                if let Err(e) = lock(&store).mark_uploaded(last_seq) {
                    tracing::warn!(error = %e, "cannot record the refusal");
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures, max_backoff, random_unit());
                tracing::warn!(error = %e, failures, retry_in = ?wait, "alert upload failed");
                if pause(wait, &mut stop).await {
                    break;
                }
            }
        }
    }
}

/// Applies the TI packages heartbeat answers offer, one at a time, until the channel closes.
pub async fn ti_loop(
    mut client: IdentityClient,
    state: StateDir,
    keys: Vec<String>,
    ti: Arc<TiHandle>,
    mut offers: mpsc::Receiver<TiOffer>,
) {
    // Packages refused for what they are (bad signature, digest, not newer): not fetched
    // again by this process; the old TI stays in effect.
    let mut refused: HashSet<String> = HashSet::new();
    while let Some(offer) = offers.recv().await {
        if ti.version().is_some_and(|v| v >= offer.version) || refused.contains(&offer.sha256) {
            continue;
        }
        let limit = picket_package::TiLimits::default().max_package_bytes;
        if offer.size > limit {
            tracing::error!(
                ti_version = offer.version,
                size = offer.size,
                limit,
                "offered TI package is too large; refused"
            );
            refused.insert(offer.sha256.clone());
            continue;
        }
        tracing::info!(ti_version = offer.version, sha256 = %offer.sha256, size = offer.size, "downloading the offered TI package");
        let bytes = match client.get() {
            Ok(c) => c.download_package(&offer.sha256, offer.size).await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(ti_version = offer.version, error = %e, "cannot download the offered TI package; retrying on a later heartbeat");
                continue;
            }
        };
        let digest = picket_package::sha256_hex(&bytes);
        if bytes.len() as u64 != offer.size || digest != offer.sha256 {
            tracing::error!(
                ti_version = offer.version,
                expected = %offer.sha256,
                got = %digest,
                "the downloaded TI package does not match the offer's size and SHA-256 (altered in storage or in transit); refused, not fetched again by this process, the current TI stays in effect"
            );
            refused.insert(offer.sha256.clone());
            continue;
        }
        let (st, ks) = (state.clone(), keys.clone());
        let applied = tokio::task::spawn_blocking(move || {
            let keys = crate::ti::trusted_keys(&ks)?;
            crate::ti::apply_package(&st, &bytes, &keys, crate::run::now())
        })
        .await;
        match applied {
            Ok(Ok(info)) => {
                tracing::info!(
                    ti_version = info.version,
                    indicators = info.indicator_count,
                    key_id = %info.key_id,
                    "TI package from the control plane applied"
                );
                if let Err(e) = ti.reload(&state) {
                    tracing::error!(error = %e, "cannot load the TI just applied; the previous TI stays in effect");
                }
            }
            Ok(Err(TiError::NotNewer { .. })) => {
                let _ = ti.reload(&state);
            }
            Ok(Err(e)) => {
                tracing::error!(ti_version = offer.version, error = %e, "offered TI package refused; not fetched again by this process, the current TI stays in effect");
                refused.insert(offer.sha256.clone());
            }
            Err(e) => tracing::error!(error = %e, "applying the TI package failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_equal_jitter() {
        let cap = Duration::from_secs(60);
        let upper: Vec<u64> = (1..=9).map(|n| backoff(n, cap, 1.0).as_secs()).collect();
        assert_eq!(upper, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(3, cap, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(u32::MAX, cap, 1.0), cap);
    }
}
