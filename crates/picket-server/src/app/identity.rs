//! Sensor-facing use cases, called by the mutual-TLS sensor API: activation (consume the
//! one-time token, pin the certificate), authentication by pinned fingerprint, heartbeats
//! (answered at once, persisted in batches by `HeartbeatBatcher`) and configuration pulls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picket_domain::{ServiceStatus, Version};
use picket_proto::SensorConfig;
use picket_proto::sensor::{
    ActivateRequest, ActivateResponse, CurrentRelease, HeartbeatRequest, HeartbeatResponse, SensorConfigResponse,
};
use picket_store::{ActivationError, Heartbeat, SensorRow, Store};

use super::{App, AppError, AppResult};
use crate::ids::sha256_hex;

/// How often batched heartbeats are written: a crash loses at most this much last-seen time.
pub const HEARTBEAT_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Why a sensor call was refused.
#[derive(Debug, thiserror::Error)]
pub enum SensorAuthError {
    /// No sensor pins this certificate (unknown, never activated, or deleted).
    #[error("this client certificate is not pinned to any sensor (unknown, revoked or deleted)")]
    UnknownCertificate,
    /// Activation refused (never `ActivationError::Store`); the message says why.
    #[error("{0}")]
    Activation(ActivationError),
    /// Something else failed.
    #[error(transparent)]
    App(#[from] AppError),
}

/// Heartbeats waiting to be written, at most one per sensor (the latest wins).
#[derive(Debug, Default, Clone)]
pub struct HeartbeatBatcher {
    pending: Arc<Mutex<HashMap<String, Heartbeat>>>,
}

impl HeartbeatBatcher {
    /// Queues a heartbeat; `flush` writes it.
    pub fn push(&self, h: Heartbeat) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.insert(h.sensor_id.clone(), h);
    }

    /// How many sensors' heartbeats are waiting.
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything queued in one store transaction; on failure the batch is put back
    /// (newer heartbeats that arrived meanwhile win).
    pub async fn flush(&self, store: &dyn Store) -> AppResult<usize> {
        let batch: Vec<Heartbeat> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain().map(|(_, h)| h).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.record_heartbeats(&batch).await {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for h in batch {
                p.entry(h.sensor_id.clone()).or_insert(h);
            }
            return Err(e.into());
        }
        metrics::counter!("picket_heartbeats_written_total").increment(batch.len() as u64);
        Ok(batch.len())
    }
}

/// CPU percent to the stored tenths of a percent (negative or absurd values are dropped).
fn cpu_permille(p: Option<f64>) -> Option<i64> {
    p.filter(|p| p.is_finite() && *p >= 0.0 && *p < 1.0e6).map(|p| (p * 10.0).round() as i64)
}

impl App {
    /// Activates a sensor: consumes its one-time token and pins the presented certificate.
    /// Repeating the activation with the certificate it pinned answers the same again (an
    /// installer resuming after a crash, or after waiting for the first release); any other
    /// certificate gets `Reused`. The answer names the current release, looked up before the
    /// token is consumed so that a failed lookup consumes nothing.
    #[tracing::instrument(skip_all, fields(sensor_id = %req.sensor_id))]
    pub async fn activate_sensor(
        &self,
        fingerprint: &str,
        req: &ActivateRequest,
    ) -> Result<ActivateResponse, SensorAuthError> {
        let current_release = self.current_release().await?.map(|r| CurrentRelease {
            version: r.version.to_string(),
            sha256: r.sha256,
            size: r.size,
        });
        let now = self.now();
        let hash = sha256_hex(req.activation_token.trim());
        let answer = |row: SensorRow, at| ActivateResponse {
            sensor_id: row.id,
            sensor_name: row.name,
            mode: row.mode,
            cert_fingerprint: fingerprint.to_string(),
            activated_at: at,
            current_release: current_release.clone(),
        };
        match self.store.activate_sensor(req.sensor_id.trim(), &hash, fingerprint, now).await {
            Ok(row) => {
                tracing::info!(name = %row.name, "sensor activated");
                Ok(answer(row, now))
            }
            Err(ActivationError::Store(e)) => Err(AppError::from(e).into()),
            Err(ActivationError::Reused) => {
                // `Reused` means the token is right; the same certificate repeats its activation.
                match self.store.sensor_by_fingerprint(fingerprint).await.map_err(AppError::from)? {
                    Some(row) if row.id == req.sensor_id.trim() => {
                        tracing::info!(name = %row.name, "activation repeated with the pinned certificate");
                        let at = row.activated_at.unwrap_or(now);
                        Ok(answer(row, at))
                    }
                    _ => {
                        tracing::warn!(reason = %ActivationError::Reused, "activation refused");
                        Err(SensorAuthError::Activation(ActivationError::Reused))
                    }
                }
            }
            Err(e) => {
                tracing::warn!(reason = %e, "activation refused");
                Err(SensorAuthError::Activation(e))
            }
        }
    }

    /// The sensor that pins this certificate fingerprint, or `UnknownCertificate`. Answers
    /// from `auth_cache` for up to `SENSOR_AUTH_TTL` after a store lookup; concurrent misses
    /// are looked up together in one query.
    pub async fn authenticate_sensor(&self, fingerprint: &str) -> Result<SensorRow, SensorAuthError> {
        let store = self.store.clone();
        let fetch = move |fps| super::auth_cache::fetch_sensors(store.clone(), fps);
        match self.sensor_auth.lookup(fingerprint, fetch).await {
            Ok(Some(row)) => Ok(SensorRow::clone(&row)),
            Ok(None) => Err(SensorAuthError::UnknownCertificate),
            Err(e) => Err(AppError::Internal(e).into()),
        }
    }

    /// Queues a heartbeat of `sensor` and answers what it should run.
    pub fn sensor_heartbeat(
        &self,
        sensor: &SensorRow,
        req: &HeartbeatRequest,
        batcher: &HeartbeatBatcher,
    ) -> AppResult<HeartbeatResponse> {
        let now = self.now();
        let version = match req.version.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<Version>().map_err(|e| AppError::Validation(format!("version: {e}")))?),
            None => None,
        };
        if req.service_status == ServiceStatus::Unknown {
            return Err(AppError::Validation(
                "service_status: report running, starting, disabled or stopped".to_string(),
            ));
        }
        batcher.push(Heartbeat {
            sensor_id: sensor.id.clone(),
            at: now,
            service_status: req.service_status,
            version,
            config_version_applied: req.config_version_applied.max(0),
            ti_version: req.ti_version,
            service_started_at: req.service_started_at,
            rss_bytes: req.rss_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            cpu_permille: cpu_permille(req.cpu_percent),
        });
        metrics::counter!("picket_heartbeats_received_total").increment(1);
        Ok(HeartbeatResponse {
            sensor_id: sensor.id.clone(),
            sensor_name: sensor.name.clone(),
            config_version_desired: sensor.config_version_desired,
            desired_version: None,
            server_time: now,
            update: None,
            ti: None,
        })
    }

    /// The configuration of `sensor`; the pull is recorded (it clears `start_failed`).
    pub async fn sensor_config(&self, sensor: &SensorRow) -> AppResult<SensorConfigResponse> {
        self.store.record_config_pull(&sensor.id, self.now()).await?;
        Ok(SensorConfigResponse {
            sensor_id: sensor.id.clone(),
            config_version: sensor.config_version_desired,
            config: SensorConfig { capture: sensor.capture_setting.clone() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::{Mode, SensorType, Timestamp};
    use picket_store::{Audit, NewSensor, Scope, SensorIdentityStore};

    fn beat(id: &str, at: i64, applied: i64) -> Heartbeat {
        Heartbeat {
            sensor_id: id.to_string(),
            at: Timestamp(at),
            service_status: ServiceStatus::Running,
            version: None,
            config_version_applied: applied,
            ti_version: None,
            service_started_at: None,
            rss_bytes: None,
            cpu_permille: cpu_permille(Some(12.34)),
        }
    }

    #[tokio::test]
    async fn the_batcher_keeps_the_latest_heartbeat_per_sensor_and_writes_them_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = picket_store_sqlite::SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        let audit = Audit { actor: "test".into(), action: "sensor.onboard".into(), at: Timestamp(1) };
        for id in ["a", "b"] {
            let s = NewSensor {
                id: id.into(),
                name: format!("S{id}"),
                sensor_type: SensorType::DomainController,
                domain: String::new(),
                subscription: "default".into(),
                site: String::new(),
                zone: "default".into(),
                tags: Vec::new(),
                mode: Mode::CloudConnected,
                auto_ti_updates: false,
                description: String::new(),
                capture_setting: None,
                delayed_update: false,
                created_at: Timestamp(1),
            };
            store.create_sensor(&s, &audit).await.unwrap();
            store.set_activation_token(id, &Scope::All, &format!("h{id}"), Timestamp(10_000), &audit).await.unwrap();
            store.activate_sensor(id, &format!("h{id}"), &format!("fp{id}"), Timestamp(2)).await.unwrap();
        }
        let batcher = HeartbeatBatcher::default();
        assert_eq!(batcher.flush(&store).await.unwrap(), 0);
        batcher.push(beat("a", 100, 0));
        batcher.push(beat("b", 100, 0));
        batcher.push(beat("a", 200, 1));
        assert_eq!(batcher.len(), 2);
        assert_eq!(batcher.flush(&store).await.unwrap(), 2);
        assert!(batcher.is_empty());
        let a = store.get_sensor("a", &Scope::All).await.unwrap().unwrap();
        assert_eq!((a.last_seen_at, a.config_version_applied), (Some(Timestamp(200)), 1));
        let b = store.get_sensor("b", &Scope::All).await.unwrap().unwrap();
        assert_eq!(b.last_seen_at, Some(Timestamp(100)));
        assert_eq!(cpu_permille(Some(-1.0)), None);
        assert_eq!(cpu_permille(Some(f64::NAN)), None);
    }
}
