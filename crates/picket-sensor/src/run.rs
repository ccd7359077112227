//! The tokio shell: `activate` (make the identity, call the control plane once, record who
//! the sensor is) and `run` (drive `core::Core`, doing the calls it asks for, persisting what
//! happened for `status`, sleeping with jitter, never exiting on a network error; SIGTERM or
//! SIGINT end it cleanly).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use picket_domain::{ServiceStatus, Timestamp};
use picket_proto::ActivationFile;
use picket_proto::sensor::{ActivateRequest, HeartbeatRequest};

use crate::client::{ClientError, SensorClient};
use crate::core::{Action, Core, Timings};
use crate::identity;
use crate::state::{RunStatus, STATE_FORMAT, SensorIdentity, StateDir, StateError};

/// Why a command failed (network errors in `run` never get here: they are retried).
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// The state dir.
    #[error(transparent)]
    State(#[from] StateError),
    /// The certificate.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The control plane could not be reached or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The activation file or the state is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The wall clock as a `Timestamp`.
pub fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A uniform random number in `[0, 1)` from the OS.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads and checks an activation file.
pub fn read_activation_file(path: &std::path::Path) -> Result<ActivationFile, SensorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SensorError::Invalid(format!("cannot read the activation file {}: {e}", path.display())))?;
    let file: ActivationFile = serde_json::from_str(&text)
        .map_err(|e| SensorError::Invalid(format!("{} is not an activation file: {e}", path.display())))?;
    if file.format != picket_proto::activation::ACTIVATION_FORMAT {
        return Err(SensorError::Invalid(format!(
            "{} has format {}, which this picket-sensor does not know; upgrade it",
            path.display(),
            file.format
        )));
    }
    Ok(file)
}

/// Activates this host as the sensor of `file`: makes a new identity in `state`, presents
/// it to the control plane with the one-time token, and records the activation.
pub async fn activate(file: &ActivationFile, state: &StateDir) -> Result<SensorIdentity, SensorError> {
    if state.is_activated() {
        let existing = state.read_sensor()?;
        return Err(SensorError::Invalid(format!(
            "{} already holds activated sensor {} ({}); use a new state dir, or delete the sensor and reactivate",
            state.root().display(),
            existing.sensor_name,
            existing.sensor_id
        )));
    }
    let id = identity::generate(&file.sensor_name, now())?;
    state.write_identity(&id.cert_pem, &id.key_pem)?;
    let client = SensorClient::new(&file.control_plane_urls, &file.ca_cert_pem, &id.cert_pem, &id.key_pem)?;
    let req = ActivateRequest { sensor_id: file.sensor_id.clone(), activation_token: file.activation_token.clone() };
    let answer = client.activate(&req).await?;
    let me = SensorIdentity {
        format: STATE_FORMAT,
        sensor_id: answer.sensor_id,
        sensor_name: answer.sensor_name,
        mode: answer.mode,
        control_plane_urls: file.control_plane_urls.clone(),
        ca_cert_pem: file.ca_cert_pem.clone(),
        package_signing_keys: file.package_signing_keys.clone(),
        activated_at: answer.activated_at,
    };
    state.write_sensor(&me)?;
    let status = RunStatus { format: STATE_FORMAT, last_contact_at: Some(now()), ..RunStatus::default() };
    state.write_status(&status)?;
    Ok(me)
}

/// Settings of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Heartbeat interval and retry cap.
    pub timings: Timings,
    /// The version reported.
    pub version: String,
}

/// The process's resident memory and CPU time, read from `/proc/self` (Linux).
struct ProcStats {
    last_cpu: Option<(Duration, Instant)>,
}

impl ProcStats {
    /// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on Linux).
    const TICKS: f64 = 100.0;

    fn rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    fn cpu_time() -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some(Duration::from_secs_f64((utime + stime) / Self::TICKS))
    }

    /// CPU percent of one core since the last call.
    fn cpu_percent(&mut self) -> Option<f64> {
        let t = Self::cpu_time()?;
        let now = Instant::now();
        let pct = self.last_cpu.and_then(|(prev, at)| {
            let wall = now.duration_since(at).as_secs_f64();
            (wall > 0.0).then(|| (t.saturating_sub(prev).as_secs_f64() / wall) * 100.0)
        });
        self.last_cpu = Some((t, now));
        pct
    }
}

/// Runs the sensor until `stop` completes: heartbeats, configuration pulls, retries.
pub async fn run(state: &StateDir, opts: RunOptions, stop: impl Future<Output = ()>) -> Result<(), SensorError> {
    let me = state.read_sensor()?;
    let (cert_pem, key_pem) = state.read_identity()?;
    let client = SensorClient::new(&me.control_plane_urls, &me.ca_cert_pem, &cert_pem, &key_pem)?;
    let mut status = state.read_status()?;
    status.format = STATE_FORMAT;
    let started_at = now();
    let started = Instant::now();
    let mut stats = ProcStats { last_cpu: None };
    let mut core = Core::new(opts.timings, status.config_version_applied);
    tracing::info!(sensor_id = %me.sensor_id, urls = ?me.control_plane_urls, "picket-sensor running");
    tokio::pin!(stop);
    loop {
        let delay = core.delay(random_unit());
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(delay) => {}
        }
        let action = core.next_action();
        let result = match action {
            Action::Heartbeat => {
                let req = HeartbeatRequest {
                    service_status: ServiceStatus::Running,
                    version: Some(opts.version.clone()),
                    config_version_applied: core.config_applied,
                    ti_version: None,
                    rss_bytes: ProcStats::rss_bytes(),
                    cpu_percent: stats.cpu_percent(),
                    uptime_secs: Some(started.elapsed().as_secs()),
                    service_started_at: Some(started_at),
                };
                let call = client.heartbeat(&req);
                let r = tokio::select! {
                    _ = &mut stop => break,
                    r = call => r,
                };
                r.map(|answer| {
                    core.on_heartbeat(&answer);
                    status.sensor_name = Some(answer.sensor_name);
                })
            }
            Action::PullConfig => {
                let call = client.config();
                let r = tokio::select! {
                    _ = &mut stop => break,
                    r = call => r,
                };
                match r {
                    Ok(cfg) => match state.write_config(&cfg.config) {
                        Ok(()) => {
                            tracing::info!(version = cfg.config_version, "configuration applied");
                            core.on_config(&cfg);
                            status.config_version_applied = core.config_applied;
                            Ok(())
                        }
                        Err(e) => {
                            record_error(&mut status, &e.to_string());
                            core.on_error();
                            persist(state, &status);
                            continue;
                        }
                    },
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => {
                status.last_contact_at = Some(now());
            }
            Err(e) => {
                let message = if e.is_unauthorized() {
                    format!("{e} (the sensor was deleted or its certificate revoked; reactivate it)")
                } else {
                    e.to_string()
                };
                tracing::warn!(error = %message, failures = core.failures + 1, "call to the control plane failed");
                record_error(&mut status, &message);
                core.on_error();
            }
        }
        persist(state, &status);
    }
    persist(state, &status);
    tracing::info!("picket-sensor stopped");
    Ok(())
}

fn record_error(status: &mut RunStatus, message: &str) {
    status.last_error = Some(message.to_string());
    status.last_error_at = Some(now());
}

/// Writes `status.json`; a full disk must not stop the sensor, so failures are only logged.
fn persist(state: &StateDir, status: &RunStatus) {
    if let Err(e) = state.write_status(status) {
        tracing::warn!(error = %e, "cannot record the status");
    }
}
