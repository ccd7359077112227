//! `picket-updater run`: the supervision loop. It recovers from the journal, stops a sensor a
//! killed updater left behind, starts `current/<entrypoint> run`, restarts it with capped
//! exponential backoff when it dies, keeps `update/service.json` current, applies grants
//! from `update/grant.json` (download, verify, extract, switch, clearance or switch back,
//! `update/report.json`), runs the watchdog, and stops the sensor cleanly on SIGTERM.

use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use picket_domain::{ServiceStatus, Timestamp, Version};
use picket_package::{Limits, PublicKey, Trust};
use picket_proto::updates::{
    ServiceStatusFile, UpdateAction, UpdateGrant, UpdateOutcome, UpdateReport, WatchdogRestart,
};

use crate::journal::{Journal, Step};
use crate::layout::{Layout, SensorInfo, SensorStatus, Shared, UpdaterConfig, now, read_json, write_json};
use crate::watchdog::{self, Watchdog};

/// How `run` behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Passed to `picket-sensor run --heartbeat-interval`.
    pub heartbeat_interval: Option<String>,
    /// How long a new version has to make a successful contact.
    pub clearance_timeout: Duration,
    /// Longest wait between restarts of a sensor that keeps dying.
    pub max_backoff: Duration,
    /// Watchdog limits.
    pub watchdog: watchdog::Limits,
    /// Largest package downloaded.
    pub max_package_bytes: u64,
    /// How often grants, the watchdog and the service status are looked at.
    pub poll: Duration,
}

struct Sensor {
    child: tokio::process::Child,
    pid: u32,
    started_at: Timestamp,
    started: Instant,
    running_reported: bool,
}

/// The supervisor of one install dir.
struct Supervisor {
    layout: Layout,
    shared: Shared,
    keys: Vec<String>,
    ids: Option<(u32, u32)>,
    opts: RunOptions,
    journal: Journal,
    sensor: Option<Sensor>,
    failures: u32,
    next_start: Instant,
    watchdog: Watchdog,
    retry_grant_at: Instant,
}

/// Why a grant was not carried out: a refusal is reported, a transient error retried.
enum GrantError {
    Refused(String),
    Transient(String),
}

/// Runs until `stop` completes.
pub async fn run(install_dir: PathBuf, opts: RunOptions, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let layout = Layout { root: install_dir };
    let cfg: UpdaterConfig = layout.read_config()?;
    // Held until `run` returns: one supervisor per install dir.
    let _lock = layout.lock()?;
    let ids = match &cfg.service_user {
        Some(name) if crate::user::is_root() => {
            Some(crate::user::lookup(name).with_context(|| format!("the service user {name} does not exist"))?)
        }
        _ => None,
    };
    let journal = Journal::load(&layout)?;
    let mut sup = Supervisor {
        shared: Shared { state_dir: cfg.state_dir.clone() },
        keys: cfg.package_signing_keys.clone(),
        ids,
        watchdog: Watchdog::new(opts.watchdog),
        opts,
        journal,
        sensor: None,
        failures: 0,
        next_start: Instant::now(),
        retry_grant_at: Instant::now(),
        layout,
    };
    sup.stop_leftover();
    sup.recover().await?;
    tokio::pin!(stop);
    loop {
        if sup.sensor.is_none() && Instant::now() >= sup.next_start {
            let v = sup.journal.current.clone();
            if let Err(e) = sup.start(&v) {
                tracing::error!(error = format!("{e:#}"), "cannot start the sensor");
                sup.schedule_restart();
            }
        }
        let exited = tokio::select! {
            _ = &mut stop => break,
            r = async {
                match sup.sensor.as_mut() {
                    Some(s) => Some(s.child.wait().await),
                    None => { std::future::pending::<()>().await; None }
                }
            } => r,
            _ = tokio::time::sleep(sup.opts.poll) => None,
        };
        if let Some(status) = exited {
            sup.on_exit(status.ok());
            continue;
        }
        sup.tick().await;
    }
    sup.stop_sensor().await;
    sup.write_service(ServiceStatus::Stopped);
    tracing::info!("picket-updater stopped");
    Ok(())
}

impl Supervisor {
    fn write_service(&self, s: ServiceStatus) {
        if let Err(e) = write_json(&self.shared.service(), &ServiceStatusFile { service_status: s }) {
            tracing::warn!(error = format!("{e:#}"), "cannot write service.json");
        }
    }

    fn report(&mut self, grant_id: &str, version: &str, outcome: UpdateOutcome, error: Option<String>) {
        match &error {
            Some(e) => tracing::warn!(update_id = grant_id, version, outcome = outcome.as_str(), error = %e, "update"),
            None => tracing::info!(update_id = grant_id, version, outcome = outcome.as_str(), "update"),
        }
        let r =
            UpdateReport { update_id: grant_id.to_string(), outcome, version: version.to_string(), error, at: now() };
        if let Err(e) = write_json(&self.shared.report(), &r) {
            tracing::error!(error = format!("{e:#}"), "cannot write report.json");
        }
        self.journal.mark_handled(grant_id);
        self.journal.step = Step::Idle;
        self.save_journal();
    }

    fn save_journal(&self) {
        if let Err(e) = self.journal.save(&self.layout) {
            tracing::error!(error = format!("{e:#}"), "cannot write the journal");
        }
    }

    /// Stops every sensor that a killed updater left running, and waits until they are gone
    /// (a leftover still holds the state dir's locks, so a sensor started beside it would
    /// exit at once). Leftovers are found two ways: `sensor.pid` (pid and start time, so a
    /// reused pid is never touched), and a scan of `/proc` for processes started the way
    /// `start` starts them (`<install-dir>/current/<entrypoint> run --state-dir <state-dir>`),
    /// which also finds a sensor spawned just before the kill, before its pid was recorded.
    fn stop_leftover(&self) {
        let mut found: Vec<(u32, u64)> = Vec::new();
        if let Ok(text) = std::fs::read_to_string(self.layout.pidfile()) {
            let mut parts = text.split_whitespace();
            if let (Some(Ok(pid)), Some(Ok(start))) =
                (parts.next().map(str::parse::<u32>), parts.next().map(str::parse::<u64>))
            {
                found.push((pid, start));
            }
        }
        for pid in started_sensors(&self.layout.current(), &self.shared.state_dir) {
            if let Some((start, _)) = watchdog::start_time(pid)
                && !found.contains(&(pid, start))
            {
                found.push((pid, start));
            }
        }
        let alive = |(pid, start): (u32, u64)| matches!(watchdog::start_time(pid), Some((s, false)) if s == start);
        found.retain(|p| alive(*p));
        for (signal, wait) in [("-TERM", Duration::from_secs(10)), ("-KILL", Duration::from_secs(10))] {
            if found.is_empty() {
                break;
            }
            for (pid, _) in &found {
                tracing::info!(pid, signal, "stopping a sensor left running by a previous updater");
                let _ = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status();
            }
            let deadline = Instant::now() + wait;
            while found.iter().any(|p| alive(*p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            found.retain(|p| alive(*p));
        }
        for (pid, _) in &found {
            tracing::error!(pid, "a sensor left by a previous updater is still running after SIGKILL");
        }
        let _ = std::fs::remove_file(self.layout.pidfile());
    }

    /// Finishes or undoes the step a crash interrupted.
    async fn recover(&mut self) -> anyhow::Result<()> {
        self.layout.clean_partials();
        match self.journal.step.clone() {
            Step::Idle => {
                if self.layout.current_version().as_deref() != Some(self.journal.current.as_str()) {
                    self.layout.switch_current(&self.journal.current)?;
                }
            }
            Step::Downloading { version, .. } | Step::Extracting { version, .. } => {
                tracing::info!(version, "an interrupted update is started again");
                if version != self.journal.current && self.journal.previous.as_deref() != Some(version.as_str()) {
                    let _ = std::fs::remove_dir_all(self.layout.version_dir(&version));
                    self.journal.entrypoints.remove(&version);
                }
                self.journal.step = Step::Idle;
                self.journal.save(&self.layout)?;
                if self.layout.current_version().as_deref() != Some(self.journal.current.as_str()) {
                    self.layout.switch_current(&self.journal.current)?;
                }
            }
            Step::Switched { update_id, action, from, to } => {
                tracing::info!(from, to, "an interrupted switch is finished: the new version must earn clearance");
                self.finish_switch(&update_id, action, &from, &to).await;
            }
        }
        Ok(())
    }

    fn start(&mut self, version: &str) -> anyhow::Result<()> {
        let entry = self.journal.entrypoint(version)?.to_string();
        let program = self.layout.current().join(&entry);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg("run").arg("--state-dir").arg(&self.shared.state_dir).arg("--version").arg(version);
        if let Some(hb) = &self.opts.heartbeat_interval {
            cmd.arg("--heartbeat-interval").arg(hb);
        }
        cmd.stdin(std::process::Stdio::null());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        self.write_service(ServiceStatus::Starting);
        let started_at = now();
        let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("the sensor has a pid")?;
        if let Some((start, _)) = watchdog::start_time(pid)
            && let Err(e) = crate::layout::write_atomic(&self.layout.pidfile(), format!("{pid} {start}\n").as_bytes())
        {
            tracing::warn!(error = format!("{e:#}"), "cannot write sensor.pid");
        }
        tracing::info!(pid, version, "sensor started");
        self.watchdog.reset();
        self.sensor = Some(Sensor { child, pid, started_at, started: Instant::now(), running_reported: false });
        Ok(())
    }

    fn schedule_restart(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let backoff = Duration::from_secs(1u64 << self.failures.min(16).saturating_sub(1)).min(self.opts.max_backoff);
        self.next_start = Instant::now() + backoff;
        tracing::info!(?backoff, failures = self.failures, "sensor restarts after a backoff");
    }

    fn on_exit(&mut self, status: Option<std::process::ExitStatus>) {
        if let Some(s) = self.sensor.take() {
            tracing::warn!(pid = s.pid, ?status, "the sensor exited");
            if s.started.elapsed() > Duration::from_secs(60) {
                self.failures = 0;
            }
        }
        let _ = std::fs::remove_file(self.layout.pidfile());
        self.write_service(ServiceStatus::Stopped);
        self.schedule_restart();
    }

    async fn stop_sensor(&mut self) {
        let Some(mut s) = self.sensor.take() else { return };
        let _ = tokio::process::Command::new("kill").arg("-TERM").arg(s.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await.is_err() {
            tracing::warn!(pid = s.pid, "the sensor did not stop within 10 s of SIGTERM: killed");
            let _ = s.child.kill().await;
        }
        let _ = std::fs::remove_file(self.layout.pidfile());
    }

    async fn restart(&mut self, version: &str) -> anyhow::Result<()> {
        self.stop_sensor().await;
        self.failures = 0;
        self.start(version)
    }

    fn contacted_since(&self, t: Timestamp) -> bool {
        let st: Option<SensorStatus> = read_json(&self.shared.status()).ok().flatten();
        st.and_then(|s| s.last_contact_at).is_some_and(|c| c >= t)
    }

    async fn tick(&mut self) {
        if let Some(s) = &self.sensor
            && !s.running_reported
            && (self.contacted_since(s.started_at) || s.started.elapsed() > Duration::from_secs(5))
        {
            self.write_service(ServiceStatus::Running);
            if let Some(s) = self.sensor.as_mut() {
                s.running_reported = true;
            }
        }
        if let Some(s) = self.sensor.as_mut()
            && s.started.elapsed() > Duration::from_secs(60)
        {
            self.failures = 0;
        }
        if let Some(pid) = self.sensor.as_ref().map(|s| s.pid)
            && let Some(reason) = self.watchdog.sample(pid)
        {
            tracing::warn!(reason, "watchdog: restarting the sensor");
            let w = WatchdogRestart { at: now(), reason };
            if let Err(e) = write_json(&self.shared.watchdog(), &w) {
                tracing::error!(error = format!("{e:#}"), "cannot write watchdog.json");
            }
            let v = self.journal.current.clone();
            if let Err(e) = self.restart(&v).await {
                tracing::error!(error = format!("{e:#}"), "cannot start the sensor");
                self.schedule_restart();
            }
        }
        self.check_grant().await;
    }

    async fn check_grant(&mut self) {
        if Instant::now() < self.retry_grant_at {
            return;
        }
        let grant: UpdateGrant = match read_json(&self.shared.grant()) {
            Ok(Some(g)) => g,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "ignoring an unreadable grant.json");
                self.retry_grant_at = Instant::now() + Duration::from_secs(10);
                return;
            }
        };
        if self.journal.was_handled(&grant.update_id) {
            return;
        }
        let reported: Option<UpdateReport> = read_json(&self.shared.report()).ok().flatten();
        if reported.is_some_and(|r| r.update_id == grant.update_id) {
            return;
        }
        tracing::info!(update_id = grant.update_id, version = grant.version, action = grant.action.as_str(), "grant");
        let r = match grant.action {
            UpdateAction::Update => self.prepare_update(&grant).await,
            UpdateAction::Rollback => self.prepare_rollback(&grant),
        };
        match r {
            Ok(to) => {
                let from = self.journal.current.clone();
                self.journal.step = Step::Switched {
                    update_id: grant.update_id.clone(),
                    action: grant.action,
                    from: from.clone(),
                    to: to.clone(),
                };
                self.save_journal();
                self.finish_switch(&grant.update_id, grant.action, &from, &to).await;
            }
            Err(GrantError::Refused(msg)) => {
                self.cleanup_failed(&grant);
                self.report(&grant.update_id, &grant.version, UpdateOutcome::Failed, Some(msg));
            }
            Err(GrantError::Transient(msg)) => {
                tracing::warn!(error = msg, "update postponed; retrying in 10 s");
                self.journal.step = Step::Idle;
                self.save_journal();
                self.retry_grant_at = Instant::now() + Duration::from_secs(10);
            }
        }
    }

    fn cleanup_failed(&mut self, grant: &UpdateGrant) {
        if is_sha256(&grant.sha256) {
            let _ = std::fs::remove_file(self.layout.downloads().join(format!("{}.part", grant.sha256)));
            let _ = std::fs::remove_file(self.layout.downloads().join(format!("{}.pkg", grant.sha256)));
        }
    }

    fn prepare_rollback(&mut self, grant: &UpdateGrant) -> Result<String, GrantError> {
        let prev = self.journal.previous.clone();
        match prev {
            Some(p) if p == grant.version && self.layout.version_dir(&p).is_dir() => Ok(p),
            Some(p) => Err(GrantError::Refused(format!(
                "cannot roll back to {}: the previous version kept on this host is {p}",
                grant.version
            ))),
            None => Err(GrantError::Refused(format!(
                "cannot roll back to {}: no previous version is kept on this host",
                grant.version
            ))),
        }
    }

    async fn prepare_update(&mut self, grant: &UpdateGrant) -> Result<String, GrantError> {
        let want: Version = grant
            .version
            .parse()
            .map_err(|e| GrantError::Refused(format!("the grant names an invalid version: {e}")))?;
        let running: Version = self
            .journal
            .current
            .parse()
            .map_err(|e| GrantError::Refused(format!("the running version is unreadable: {e}")))?;
        if want <= running {
            return Err(GrantError::Refused(format!(
                "refusing version {want}: it is not above the running version {running} (going down is only possible \
                 as an operator's rollback to the previous version)"
            )));
        }
        if !is_sha256(&grant.sha256) {
            return Err(GrantError::Refused("the grant's sha256 is not 64 hex digits".into()));
        }
        if grant.size > self.opts.max_package_bytes {
            return Err(GrantError::Refused(format!(
                "the package has {} bytes, over the limit of {} bytes",
                grant.size, self.opts.max_package_bytes
            )));
        }
        self.journal.step = Step::Downloading { update_id: grant.update_id.clone(), version: grant.version.clone() };
        self.save_journal();
        let pkg = self.download(grant).await?;
        let keys = PublicKey::parse_all(&self.keys)
            .map_err(|e| GrantError::Refused(format!("the trusted keys are unusable: {e}")))?;
        let limits = Limits { max_package_bytes: self.opts.max_package_bytes, ..Limits::default() };
        let trust = Trust { keys, now: now(), limits };
        let p = pkg.clone();
        let verified = tokio::task::spawn_blocking(move || picket_package::verify_file(&p, &trust))
            .await
            .map_err(|e| GrantError::Transient(e.to_string()))?
            .map_err(|e| GrantError::Refused(format!("the package is refused: {e}")))?;
        if verified.package_sha256 != grant.sha256 {
            return Err(GrantError::Refused("the package does not have the granted SHA-256".into()));
        }
        if verified.manifest.version != want {
            return Err(GrantError::Refused(format!(
                "the package holds version {}, not the granted {want}",
                verified.manifest.version
            )));
        }
        verified.check_updater(crate::own_version()).map_err(|e| GrantError::Refused(e.to_string()))?;
        let version = want.to_string();
        self.journal.step = Step::Extracting { update_id: grant.update_id.clone(), version: version.clone() };
        self.journal.entrypoints.insert(version.clone(), verified.manifest.entrypoint.clone());
        self.save_journal();
        let dest = self.layout.version_dir(&version);
        if std::fs::symlink_metadata(&dest).is_ok() {
            // Never current nor previous (both are lower): a leftover of an earlier attempt.
            let _ = std::fs::remove_dir_all(&dest);
        }
        let p = pkg.clone();
        tokio::task::spawn_blocking(move || picket_package::extract_file(&p, &verified, &dest, &limits))
            .await
            .map_err(|e| GrantError::Transient(e.to_string()))?
            .map_err(|e| GrantError::Refused(format!("extracting the package failed: {e}")))?;
        let _ = std::fs::remove_file(&pkg);
        Ok(version)
    }

    /// Downloads the granted package into `downloads/`, resuming a partial one with `Range`.
    async fn download(&self, grant: &UpdateGrant) -> Result<PathBuf, GrantError> {
        let done = self.layout.downloads().join(format!("{}.pkg", grant.sha256));
        if done.exists() {
            return Ok(done);
        }
        let part = self.layout.downloads().join(format!("{}.part", grant.sha256));
        let t = |e: anyhow::Error| GrantError::Transient(format!("{e:#}"));
        let info: SensorInfo = read_json(&self.shared.sensor())
            .map_err(t)?
            .ok_or_else(|| GrantError::Transient("the sensor is not activated (no sensor.json)".into()))?;
        let cert = std::fs::read_to_string(self.shared.cert()).map_err(|e| GrantError::Transient(e.to_string()))?;
        let key = std::fs::read_to_string(self.shared.key()).map_err(|e| GrantError::Transient(e.to_string()))?;
        let client = crate::client::mtls(&info.ca_cert_pem, &cert, &key).map_err(t)?;
        std::fs::create_dir_all(self.layout.downloads()).map_err(|e| GrantError::Transient(e.to_string()))?;
        let cap = self.opts.max_package_bytes.min(if grant.size > 0 { grant.size } else { u64::MAX });
        let mut last = String::from("no control-plane URL");
        for url in &info.control_plane_urls {
            let url = format!("{}/sensor/v1/packages/{}", url.trim_end_matches('/'), grant.sha256);
            match crate::client::fetch_resumable(&client, &url, &part, cap).await {
                Ok(()) => {
                    std::fs::rename(&part, &done).map_err(|e| GrantError::Transient(e.to_string()))?;
                    return Ok(done);
                }
                Err(crate::client::FetchError::TooLarge) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(GrantError::Refused(format!("the package is over the size limit of {cap} bytes")));
                }
                Err(crate::client::FetchError::Other(e)) => last = format!("{url}: {e:#}"),
            }
        }
        Err(GrantError::Transient(format!("download failed: {last}")))
    }

    /// With the journal at `switched`: points `current` at `to`, restarts, waits for
    /// clearance, and either keeps it or switches back to `from`; reports either way.
    async fn finish_switch(&mut self, update_id: &str, action: UpdateAction, from: &str, to: &str) {
        let result = self.try_version(to).await;
        match result {
            Ok(()) => {
                self.journal.current = to.to_string();
                self.journal.previous = Some(from.to_string());
                for gone in self.journal.prune() {
                    let _ = std::fs::remove_dir_all(self.layout.version_dir(&gone));
                }
                self.report(update_id, to, UpdateOutcome::Succeeded, None);
            }
            Err(why) => {
                tracing::warn!(to, from, error = why, "no clearance: switching back");
                let back = self.try_switch_back(from).await;
                let _ = back;
                self.journal.current = from.to_string();
                let outcome = match action {
                    UpdateAction::Update | UpdateAction::Rollback => UpdateOutcome::RolledBack,
                };
                self.report(update_id, to, outcome, Some(format!("version {to} {why}; switched back to {from}")));
            }
        }
    }

    async fn try_switch_back(&mut self, from: &str) -> anyhow::Result<()> {
        self.layout.switch_current(from)?;
        self.restart(from).await
    }

    async fn try_version(&mut self, to: &str) -> Result<(), String> {
        self.layout.switch_current(to).map_err(|e| format!("could not be switched to: {e:#}"))?;
        self.restart(to).await.map_err(|e| format!("did not start: {e:#}"))?;
        let deadline = Instant::now() + self.opts.clearance_timeout;
        loop {
            let Some(s) = self.sensor.as_mut() else { return Err("did not start".into()) };
            if let Ok(Some(status)) = s.child.try_wait() {
                self.sensor = None;
                return Err(format!("exited on start ({status})"));
            }
            let started_at = s.started_at;
            if self.contacted_since(started_at) {
                self.write_service(ServiceStatus::Running);
                if let Some(s) = self.sensor.as_mut() {
                    s.running_reported = true;
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "made no successful contact with the control plane within {} s",
                    self.opts.clearance_timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Pids of the running processes whose command line is the one `Supervisor::start` gives a
/// sensor: the program under `current` (`<install-dir>/current/<entrypoint>`), `run`, and
/// `--state-dir <state_dir>`. Empty where `/proc` is missing.
fn started_sensors(current: &std::path::Path, state_dir: &std::path::Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    let own = std::process::id();
    let state_dir = state_dir.as_os_str().as_bytes();
    let mut pids = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == own {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let Some(program) = args.first() else { continue };
        let program = std::path::Path::new(std::ffi::OsStr::from_bytes(program));
        if program.starts_with(current)
            && args.get(1) == Some(&&b"run"[..])
            && args.windows(2).any(|w| w[0] == b"--state-dir" && w[1] == state_dir)
        {
            pids.push(pid);
        }
    }
    pids
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
