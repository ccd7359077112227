//! The tokio shell: `activate` (make the identity, call the control plane once, record who
//! the sensor is) and `run` (drive `core::Core`, doing the calls it asks for, persisting what
//! happened for `status`, sleeping with jitter, never exiting on a network error; SIGTERM or
//! SIGINT end it cleanly).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use picket_domain::{Mode, ServiceStatus, Timestamp};
use picket_proto::ActivationFile;
use picket_proto::sensor::{ActivateRequest, HeartbeatRequest};

use crate::client::{ClientError, SensorClient};
use crate::core::{Action, Core, Timings, rotation_due};
use crate::identity;
use crate::rotate::{self, Phase};
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

/// Activates this host as the sensor of `file`: makes a new identity in `state` (valid for
/// `validity`; or uses the not yet activated one found there, which `picket-updater install`
/// leaves), presents it to the control plane with the one-time token, and records the
/// activation. A `locally_managed` file sets up the state dir without contacting anyone.
pub async fn activate(
    file: &ActivationFile,
    state: &StateDir,
    validity: Duration,
) -> Result<SensorIdentity, SensorError> {
    if state.is_activated() {
        let existing = state.read_sensor()?;
        return Err(SensorError::Invalid(format!(
            "{} already holds activated sensor {} ({}); use a new state dir, or delete the sensor, onboard it again and run `picket-sensor reactivate`",
            state.root().display(),
            existing.sensor_name,
            existing.sensor_id
        )));
    }
    // An identity already here but not activated was left by `picket-updater install` (which
    // activates it to download the current release) or by an activation that crashed after
    // the control plane pinned it: activating it again with the same token is answered again.
    let (cert_pem, key_pem) = match state.read_identity() {
        Ok((cert, key)) if identity::key_matches(&cert, &key) => (cert, key),
        _ => {
            let id = identity::generate_valid_for(&file.sensor_name, now(), validity)?;
            state.write_identity(&id.cert_pem, &id.key_pem)?;
            (id.cert_pem.clone(), id.key_pem.clone())
        }
    };
    let me = activate_identity(file, &cert_pem, &key_pem).await?;
    state.write_sensor(&me)?;
    let contact = (me.mode == Mode::CloudConnected).then(now);
    let status = RunStatus { format: STATE_FORMAT, last_contact_at: contact, ..RunStatus::default() };
    state.write_status(&status)?;
    Ok(me)
}

/// Who the sensor of `file` is once `cert_pem` is its identity: for a cloud-connected sensor
/// after the control plane accepted the one-time token (the only network call); for a locally
/// managed one at once, from the file alone.
async fn activate_identity(
    file: &ActivationFile,
    cert_pem: &str,
    key_pem: &str,
) -> Result<SensorIdentity, SensorError> {
    let mut me = SensorIdentity {
        format: STATE_FORMAT,
        sensor_id: file.sensor_id.clone(),
        sensor_name: file.sensor_name.clone(),
        mode: file.mode,
        control_plane_urls: file.control_plane_urls.clone(),
        ca_cert_pem: file.ca_cert_pem.clone(),
        package_signing_keys: file.package_signing_keys.clone(),
        activated_at: now(),
    };
    if file.mode == Mode::CloudConnected {
        let client = SensorClient::new(&file.control_plane_urls, &file.ca_cert_pem, cert_pem, key_pem)?;
        let req =
            ActivateRequest { sensor_id: file.sensor_id.clone(), activation_token: file.activation_token.clone() };
        let answer = client.activate(&req).await?;
        me.sensor_id = answer.sensor_id;
        me.sensor_name = answer.sensor_name;
        me.mode = answer.mode;
        me.activated_at = answer.activated_at;
    }
    Ok(me)
}

/// Moves an activated state dir to the sensor of `file` (a new control plane, or another
/// mode), after the operator deleted the sensor and onboarded it again: a new identity,
/// activated with the new file; configuration and everything else in the state dir stay.
/// Refuses a file for the sensor that is already active here. Crash-safe: the new identity
/// waits in `identity/next/` until activated; run again with the same file, a token that the
/// control plane already consumed for that very identity is recognised and the switch finished.
pub async fn reactivate(
    file: &ActivationFile,
    state: &StateDir,
    validity: Duration,
) -> Result<SensorIdentity, SensorError> {
    let old = state.read_sensor()?;
    if old.sensor_id == file.sensor_id {
        return Err(SensorError::Invalid(format!(
            "this activation file is for sensor {} ({}), which is already active in {}; to reactivate, delete the \
             sensor in the control plane, onboard it again and download its new activation file",
            old.sensor_name,
            old.sensor_id,
            state.root().display()
        )));
    }
    let Some(_lock) = state.try_lock_identity()? else {
        return Err(SensorError::Invalid(
            "another picket-sensor process is changing this sensor's identity; try again in a moment".to_string(),
        ));
    };
    let (cert_pem, key_pem) = match state.read_next()? {
        Some(p) if identity::key_matches(&p.0, &p.1) => p,
        _ => {
            let id = identity::generate_valid_for(&file.sensor_name, now(), validity)?;
            state.write_next(&id.cert_pem, &id.key_pem)?;
            (id.cert_pem.clone(), id.key_pem.clone())
        }
    };
    let me = match activate_identity(file, &cert_pem, &key_pem).await {
        Ok(me) => me,
        // A crash after the control plane accepted this identity: it answers `activation_used`,
        // and a heartbeat with the identity proves the activation happened.
        Err(SensorError::Client(ClientError::Refused { status: 409, error })) if error.code == "activation_used" => {
            let client = SensorClient::new(&file.control_plane_urls, &file.ca_cert_pem, &cert_pem, &key_pem)?;
            let beat = HeartbeatRequest {
                service_status: ServiceStatus::Starting,
                version: None,
                config_version_applied: 0,
                ti_version: None,
                rss_bytes: None,
                cpu_percent: None,
                uptime_secs: None,
                service_started_at: None,
                update_report: None,
                watchdog_restart_at: None,
            };
            match client.heartbeat(&beat).await {
                Ok(answer) if answer.sensor_id == file.sensor_id => SensorIdentity {
                    format: STATE_FORMAT,
                    sensor_id: answer.sensor_id,
                    sensor_name: answer.sensor_name,
                    mode: file.mode,
                    control_plane_urls: file.control_plane_urls.clone(),
                    ca_cert_pem: file.ca_cert_pem.clone(),
                    package_signing_keys: file.package_signing_keys.clone(),
                    activated_at: now(),
                },
                _ => return Err(SensorError::Client(ClientError::Refused { status: 409, error })),
            }
        }
        Err(e) => return Err(e),
    };
    state.install_next()?;
    state.write_sensor(&me)?;
    let _ = state.discard_pending();
    let contact = (me.mode == Mode::CloudConnected).then(now);
    // The new sensor record starts its configuration versions afresh: pull it again.
    let status = RunStatus { format: STATE_FORMAT, last_contact_at: contact, ..RunStatus::default() };
    state.write_status(&status)?;
    Ok(me)
}

/// Renames a locally managed sensor on the host; a cloud-connected sensor's name is set in the
/// control plane only.
pub fn rename(state: &StateDir, name: &str) -> Result<SensorIdentity, SensorError> {
    let mut me = state.read_sensor()?;
    if me.mode == Mode::CloudConnected {
        let shown = state.read_status()?.sensor_name.unwrap_or(me.sensor_name);
        return Err(SensorError::Invalid(format!(
            "sensor {shown} is cloud connected: its name is set in the control plane (edit the sensor there); \
             only a locally managed sensor can be renamed on the host"
        )));
    }
    let name = name.trim();
    picket_domain::validate::validate_name(name).map_err(|e| SensorError::Invalid(e.to_string()))?;
    me.sensor_name = name.to_string();
    state.write_sensor(&me)?;
    Ok(me)
}

/// Settings of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Heartbeat interval and retry cap.
    pub timings: Timings,
    /// The version reported.
    pub version: String,
    /// Rotate the certificate when it expires within this long (`--cert-rotate-before`).
    pub cert_rotate_before: Duration,
    /// Event sources of the detection engine (`--follow`, `--syslog-listen`).
    pub detect: crate::detect::DetectOptions,
}

/// The identity `run` calls with: rebuilt whenever `identity/cert.pem` changes (a rotation by
/// `rotate-cert` or by `run` itself), so a rotated identity is used without a restart.
struct Current {
    cert_pem: String,
    not_after: Timestamp,
    client: SensorClient,
}

fn load_current(state: &StateDir, me: &SensorIdentity) -> Result<Current, SensorError> {
    let (cert_pem, key_pem) = state.read_identity()?;
    if !identity::key_matches(&cert_pem, &key_pem) {
        return Err(SensorError::Invalid(format!(
            "{} is not the key of {}",
            state.key_path().display(),
            state.cert_path().display()
        )));
    }
    let not_after = identity::cert_info(&cert_pem)?.not_after;
    let client = SensorClient::new(&me.control_plane_urls, &me.ca_cert_pem, &cert_pem, &key_pem)?;
    Ok(Current { cert_pem, not_after, client })
}

/// Finishes a rotation another process confirmed but did not install (if no process is at it),
/// then reloads the identity if `identity/cert.pem` changed. Returns whether it reloaded. A
/// half-written pair (key new, certificate old) is left for the next call.
fn refresh(state: &StateDir, me: &SensorIdentity, cur: &mut Current) -> bool {
    // The lock guard lives to the end of the `if` body, so the install runs under it.
    if state.is_confirmed()
        && let Ok(Some(_lock)) = state.try_lock_identity()
        && let Err(e) = state.install_confirmed()
    {
        tracing::warn!(error = %e, "cannot install the confirmed certificate");
    }
    match std::fs::read_to_string(state.cert_path()) {
        Ok(cert) if cert != cur.cert_pem => {}
        _ => return false,
    }
    match load_current(state, me) {
        Ok(new) => {
            tracing::info!(not_after = %picket_proto::time::format_ts(new.not_after), "identity changed; using the new certificate");
            *cur = new;
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "identity being replaced; keeping the current one for now");
            false
        }
    }
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

/// Runs the sensor until `stop` completes: heartbeats, configuration pulls, retries, and
/// certificate rotation when due. A locally managed sensor makes no network call at all.
pub async fn run(state: &StateDir, opts: RunOptions, stop: impl Future<Output = ()>) -> Result<(), SensorError> {
    let me = state.read_sensor()?;
    let engine = crate::engine::Engine::start(state, &me, &opts.detect, opts.timings.max_backoff)
        .map_err(SensorError::Invalid)?;
    if me.mode == picket_domain::Mode::LocallyManaged {
        tracing::info!(sensor_id = %me.sensor_id, "picket-sensor running, locally managed: no control plane to contact");
        stop.await;
        engine.stop().await;
        tracing::info!("picket-sensor stopped");
        return Ok(());
    }
    if let Some(_lock) = state.try_lock_identity()? {
        state.install_confirmed()?;
    }
    let mut cur = load_current(state, &me)?;
    // A rotation a crash interrupted is finished first (the old certificate still works).
    let mut resume_rotation = state.has_pending();
    let mut rotation_failed_at: Option<Timestamp> = None;
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
        refresh(state, &me, &mut cur);
        if resume_rotation || rotation_due(cur.not_after, now(), opts.cert_rotate_before, rotation_failed_at) {
            resume_rotation = false;
            let r = tokio::select! {
                _ = &mut stop => break,
                r = rotate::rotate(state, &me, Phase::All) => r,
            };
            match r {
                Ok(outcome) => {
                    tracing::info!(?outcome, "certificate rotation");
                    rotation_failed_at = None;
                    refresh(state, &me, &mut cur);
                }
                Err(e) => {
                    let message = format!("certificate rotation failed (the current certificate stays in use): {e}");
                    tracing::warn!(error = %message);
                    record_error(&mut status, &message);
                    rotation_failed_at = Some(now());
                    persist(state, &status);
                }
            }
        }
        let client = &cur.client;
        let action = core.next_action();
        let result = match action {
            Action::Heartbeat => {
                let report = crate::updates::pending_report(state.root());
                let req = HeartbeatRequest {
                    service_status: crate::updates::service_status(state.root()).unwrap_or(ServiceStatus::Running),
                    version: Some(opts.version.clone()),
                    config_version_applied: core.config_applied,
                    ti_version: engine.ti_version(),
                    rss_bytes: ProcStats::rss_bytes(),
                    cpu_percent: stats.cpu_percent(),
                    uptime_secs: Some(started.elapsed().as_secs()),
                    service_started_at: Some(started_at),
                    update_report: report.clone(),
                    watchdog_restart_at: crate::updates::watchdog_restart_at(state.root()),
                };
                let call = client.heartbeat(&req);
                let r = tokio::select! {
                    _ = &mut stop => break,
                    r = call => r,
                };
                r.map(|answer| {
                    crate::updates::on_answer(state.root(), answer.update.as_ref(), report.as_ref());
                    engine.offer(answer.ti.as_ref());
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
            Err(e) if e.is_unauthorized() && refresh(state, &me, &mut cur) => {
                tracing::info!("refused with the previous certificate; repeating with the new one");
                core.on_identity_changed();
                continue;
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
    engine.stop().await;
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
