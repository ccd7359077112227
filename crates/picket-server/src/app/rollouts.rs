//! Rollout orchestration: a rollout starts when a release becomes current; the rollout job
//! fails grants past their deadline and decides new grants (in one store transaction that
//! locks the rollout row, so replicas agree); heartbeats carry the sensor's open grant and
//! apply its reports at once, idempotently by `update_id`. A failed update sets the sensor's
//! `update_state` to `failed`, which the health job turns into an `update_failed` issue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use picket_domain::issues::{format_utc, human};
use picket_domain::rollout::{Candidate, GrantState, RolloutPolicy, SensorProgress, heartbeat_clears};
use picket_domain::{HealthIssueKind, Timestamp, UpdateState, Version, rollout};
use picket_proto::rollouts::{
    PausedBy, Ring, RollbackGrantView, RollbackRequest, RollbackResponse, RolloutCounts, RolloutSensorState,
    RolloutSensorView, RolloutState, RolloutView,
};
use picket_proto::sensor::HeartbeatRequest;
use picket_proto::updates::{UpdateAction, UpdateGrant, UpdateOutcome};
use picket_store::rollouts::{Grant, Rollout, RolloutGroup, RolloutSensor, new_update_id};
use picket_store::{Scope, SensorRow};

use super::{App, AppError, AppResult};
use crate::auth::{Operator, Principal, Viewer};

/// What the API says when there is no rollout yet.
pub const NO_ROLLOUT: &str =
    "no rollout yet: a rollout starts when a release is published (picket release publish PKG)";

impl App {
    /// The rollout rules in effect (`--rollout-concurrency`, `--rollout-max-failures`,
    /// `--delay-ring-after`).
    pub fn rollout_policy(&self) -> RolloutPolicy {
        RolloutPolicy {
            concurrency: self.config().rollout_concurrency.max(1),
            max_failures: self.config().rollout_max_failures.max(1),
            delay_ring_after_ms: i64::try_from(self.config().delay_ring_after.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// One pass of the rollout job: starts the rollout of the current release, fails grants
    /// past their deadline, and gives the next grants; the grants given.
    pub async fn rollout_tick(&self) -> AppResult<Vec<Grant>> {
        let now = self.now();
        if let Some(current) = self.store().list_releases().await?.last() {
            self.store().start_rollout(current.version, now).await?;
        }
        for g in self.store().expire_grants(now).await? {
            tracing::warn!(sensor_id = %g.sensor_id, update_id = %g.update_id, "update passed its deadline");
        }
        let deadline = i64::try_from(self.config().update_deadline.as_millis()).unwrap_or(i64::MAX);
        let grants = self.store().decide_grants(self.rollout_policy(), deadline, now).await?;
        self.close_quiet_watchdog_issues(now).await?;
        Ok(grants)
    }

    /// How long after the last watchdog restart its `watchdog_restart` issue closes: six times
    /// `--disconnect-after` (1 h by default), so shortened timings shorten it too.
    pub fn watchdog_quiet_after(&self) -> Duration {
        self.config().timings.disconnect_after.saturating_mul(6)
    }

    async fn close_quiet_watchdog_issues(&self, now: Timestamp) -> AppResult<()> {
        let quiet_ms = i64::try_from(self.watchdog_quiet_after().as_millis()).unwrap_or(i64::MAX);
        let since = Timestamp(now.0.saturating_sub(quiet_ms));
        for id in self.store().quiet_watchdog_sensors(since).await? {
            if self.store().resolve_health_issue(&id, HealthIssueKind::WatchdogRestart, now).await?.is_some() {
                tracing::info!(sensor_id = %id, "no watchdog restart for the quiet period: issue closed");
            }
        }
        Ok(())
    }

    /// Records the watchdog restart a heartbeat relays (`watchdog_restart_at`, from the
    /// updater's `update/watchdog.json`) once, and opens a `watchdog_restart` issue for a
    /// restart within the quiet period. The sensor repeats the time in every heartbeat: a
    /// per-replica memory of the last time seen per sensor spares the database those writes
    /// (the conditional update keeps replicas right without it).
    async fn watchdog_heartbeat(&self, sensor: &SensorRow, req: &HeartbeatRequest) -> AppResult<()> {
        let Some(at) = req.watchdog_restart_at else { return Ok(()) };
        let seen = &self.watchdog_seen.0;
        let known = seen.lock().map(|m| m.get(&sensor.id).is_some_and(|t| *t >= at.0)).unwrap_or(false);
        if known {
            return Ok(());
        }
        let new = self.store().record_watchdog_restart(&sensor.id, at).await?;
        if let Ok(mut m) = seen.lock() {
            m.insert(sensor.id.clone(), at.0);
        }
        let now = self.now();
        let quiet = self.watchdog_quiet_after();
        if !new || now.since(at) >= quiet {
            return Ok(());
        }
        let kind = HealthIssueKind::WatchdogRestart;
        let issue = picket_store::NewHealthIssue {
            id: crate::ids::new_uuid(),
            sensor_id: sensor.id.clone(),
            kind,
            opened_at: now,
            title: kind.title().to_string(),
            detail: format!(
                "The updater's resource watchdog restarted the sensor service at {} (it used more than its share \
                 of the host's memory or CPU for a sustained period). The issue closes by itself after {} without \
                 another restart.",
                format_utc(at),
                human(quiet)
            ),
            recommendation: kind.recommendation().to_string(),
        };
        if self.store().open_health_issue(&issue, None).await?.is_some() {
            tracing::warn!(sensor_id = %sensor.id, at = %format_utc(at), "watchdog restart: health issue opened");
        }
        Ok(())
    }

    /// Applies the update report (or the clearance a heartbeat implies) of `sensor` at once,
    /// records a watchdog restart it relays, and answers its open grant, if any.
    pub async fn rollout_heartbeat(
        &self,
        sensor: &SensorRow,
        req: &HeartbeatRequest,
    ) -> AppResult<Option<UpdateGrant>> {
        self.watchdog_heartbeat(sensor, req).await?;
        let now = self.now();
        let reported: Option<Version> = req.version.as_deref().and_then(|v| v.trim().parse().ok());
        if let Some(report) = &req.update_report {
            let succeeded = report.outcome == UpdateOutcome::Succeeded
                && reported.is_some_and(|v| v.to_string() == report.version.trim());
            let failed = matches!(report.outcome, UpdateOutcome::Failed | UpdateOutcome::RolledBack);
            if succeeded || failed {
                self.store()
                    .finish_grant(&sensor.id, &report.update_id, succeeded, report.error.as_deref(), now)
                    .await?;
            }
        }
        // The hot path: a sensor holds a grant only while its `update_state` is `updating` (set in
        // the granting transaction), so the others need no read. The row may come from the 2 s
        // authentication cache: a fresh grant then reaches the sensor one heartbeat later.
        if sensor.update_state != UpdateState::Updating && req.update_report.is_none() {
            return Ok(None);
        }
        let Some(open) = self.store().open_grant(&sensor.id).await? else { return Ok(None) };
        let granted: Option<Version> = open.version.parse().ok();
        if granted.is_some_and(|g| heartbeat_clears(g, reported, req.service_status)) {
            self.store().finish_grant(&sensor.id, &open.update_id, true, None, now).await?;
            return Ok(None);
        }
        if rollout::grant_expired(open.deadline, now) {
            return Ok(None);
        }
        Ok(Some(UpdateGrant {
            update_id: open.update_id,
            version: open.version,
            sha256: open.sha256,
            size: open.size,
            deadline: open.deadline,
            action: UpdateAction::parse(&open.action).unwrap_or(UpdateAction::Update),
        }))
    }
}

/// The last watchdog restart time seen per sensor by this replica (milliseconds), so the
/// time a sensor repeats in every heartbeat is written once.
#[derive(Debug, Default)]
pub struct WatchdogSeen(Mutex<HashMap<String, i64>>);

/// Where `s` stands in the rollout to `target` (`delayed_due`: the delayed ring has begun).
pub fn sensor_state(s: &RolloutSensor, target: Version, delayed_due: bool) -> RolloutSensorState {
    let grant = s.grant.as_ref().map(|g| (g.state.as_str(), g.action.as_str()));
    state_of(grant, s.version.as_deref(), s.delayed, target, delayed_due)
}

/// Where a sensor stands: its latest grant (state, action), else its reported `version` and
/// ring against `target`.
fn state_of(
    grant: Option<(&str, &str)>,
    version: Option<&str>,
    delayed: bool,
    target: Version,
    delayed_due: bool,
) -> RolloutSensorState {
    if let Some((state, action)) = grant {
        let rollback = action == UpdateAction::Rollback.as_str();
        return match (state, rollback) {
            ("granted", false) => RolloutSensorState::Updating,
            ("granted", true) => RolloutSensorState::RollingBack,
            ("succeeded", false) => RolloutSensorState::Updated,
            ("succeeded", true) => RolloutSensorState::RolledBack,
            _ => RolloutSensorState::Failed,
        };
    }
    let version: Option<Version> = version.and_then(|v| v.trim().parse().ok());
    let candidate = Candidate { sensor_id: String::new(), eligible: true, delayed, version, grant: GrantState::None };
    match rollout::progress(&candidate, target, delayed_due) {
        SensorProgress::Pending => RolloutSensorState::Pending,
        SensorProgress::WaitingDelayed => RolloutSensorState::WaitingDelay,
        _ if version == Some(target) => RolloutSensorState::Updated,
        _ => RolloutSensorState::Skipped,
    }
}

/// Sensors listed at most per part of a rollout view: up to this many holding an open grant
/// or failed, plus the first this many by id (the counts cover every sensor).
pub const ROLLOUT_PAGE: u32 = 500;

/// The view of `rollout` counting `groups` (every sensor it concerns; those in `scope` are
/// counted, all decide whether it is still busy) and listing `page` (a bounded page of the
/// sensors in `scope`).
pub fn rollout_view(
    rollout: &Rollout,
    previous_version: Option<Version>,
    policy: RolloutPolicy,
    groups: &[RolloutGroup],
    page: &[RolloutSensor],
    scope: &Scope,
    now: Timestamp,
) -> RolloutView {
    let delay_ms = policy.delay_ring_after_ms.max(0);
    let due = rollout::delayed_ring_due(rollout.started_at, now, delay_ms);
    let max_failures = policy.max_failures.max(1);
    let paused_by = if rollout.paused {
        Some(PausedBy::Operator)
    } else if rollout::is_paused(false, rollout.failures, max_failures) {
        Some(PausedBy::Failures)
    } else {
        None
    };
    let paused_reason = paused_by.map(|p| match p {
        PausedBy::Operator => "paused by an operator; resume with `picket rollout resume`".to_string(),
        PausedBy::Failures => format!(
            "{} failed update(s) reached the limit of {max_failures} (--rollout-max-failures); check the failed \
             sensors, then resume with `picket rollout resume`",
            rollout.failures
        ),
    });
    let mut busy = false;
    let mut counts = RolloutCounts::default();
    for g in groups {
        let grant = g.grant_state.as_deref().map(|st| (st, g.grant_action.as_deref().unwrap_or("update")));
        let state = state_of(grant, g.version.as_deref(), g.delayed, rollout.version, due);
        busy |= g.n > 0
            && matches!(
                state,
                RolloutSensorState::Pending
                    | RolloutSensorState::WaitingDelay
                    | RolloutSensorState::Updating
                    | RolloutSensorState::RollingBack
            );
        if scope.allows(&g.subscription) {
            counts.add_n(state, g.n);
        }
    }
    let mut listed = Vec::new();
    for s in page {
        if !scope.allows(&s.subscription) {
            continue;
        }
        let state = sensor_state(s, rollout.version, due);
        listed.push(RolloutSensorView {
            sensor_id: s.sensor_id.clone(),
            sensor_name: s.name.clone(),
            ring: if s.delayed { Ring::Delayed } else { Ring::Immediate },
            state,
            version: s.version.clone(),
            update_id: s.grant.as_ref().map(|g| g.update_id.clone()),
            action: s.grant.as_ref().map(|g| g.action.clone()),
            started_at: s.grant.as_ref().map(|g| g.granted_at),
            finished_at: s.finished_at,
            deadline: s.grant.as_ref().map(|g| g.deadline),
            error: s.grant.as_ref().and_then(|g| g.error.clone()),
        });
    }
    listed
        .sort_by(|a, b| (a.ring == Ring::Delayed).cmp(&(b.ring == Ring::Delayed)).then(a.sensor_id.cmp(&b.sensor_id)));
    let state = if paused_by.is_some() {
        RolloutState::Paused
    } else if busy {
        RolloutState::Active
    } else {
        RolloutState::Finished
    };
    RolloutView {
        version: rollout.version,
        previous_version,
        state,
        paused_by,
        paused_reason,
        started_at: rollout.started_at,
        concurrency: policy.concurrency.max(1),
        max_failures,
        failures: rollout.failures,
        delay_ring_after_secs: u64::try_from(delay_ms / 1000).unwrap_or(0),
        delayed_ring_starts_at: Timestamp(rollout.started_at.0.saturating_add(delay_ms)),
        delayed_ring_due: due,
        sensors_truncated: (listed.len() as u64) < counts.total,
        counts,
        sensors: listed,
    }
}

impl App {
    /// The release published before `version` (what a rollback from it returns to).
    async fn release_before(&self, version: Version) -> AppResult<Option<Version>> {
        let releases = self.store().list_releases().await?;
        Ok(releases.iter().map(|r| r.version).filter(|v| *v < version).max())
    }

    async fn view_for(&self, who: &Principal) -> AppResult<Option<RolloutView>> {
        let Some(rollout) = self.store().current_rollout().await? else { return Ok(None) };
        let previous = self.release_before(rollout.version).await?;
        let groups = self.store().rollout_groups(rollout.version).await?;
        let page = self.store().rollout_sensor_page(rollout.version, &who.scope, ROLLOUT_PAGE).await?;
        Ok(Some(rollout_view(&rollout, previous, self.rollout_policy(), &groups, &page, &who.scope, self.now())))
    }

    /// `GET /api/v1/rollouts/current`: the rollout of the current release, its counts over
    /// every sensor in the caller's scope and a bounded page of them (those holding an open
    /// grant or failed, then the first by id); `None` before the first release.
    pub async fn current_rollout(&self, who: &Viewer) -> AppResult<Option<RolloutView>> {
        self.view_for(who.principal()).await
    }

    /// Pauses the current rollout (no new grants; open ones carry on); audited as
    /// `rollout.pause`. Only an operator with every subscription in scope may (a rollout spans
    /// the fleet).
    pub async fn pause_rollout(&self, who: &Operator) -> AppResult<RolloutView> {
        self.set_paused(who, true).await
    }

    /// Resumes the current rollout and clears its failure count; audited as `rollout.resume`.
    pub async fn resume_rollout(&self, who: &Operator) -> AppResult<RolloutView> {
        self.set_paused(who, false).await
    }

    async fn set_paused(&self, who: &Operator, paused: bool) -> AppResult<RolloutView> {
        let p = who.principal();
        if p.scope != Scope::All {
            return Err(AppError::Forbidden(
                "a rollout spans the whole fleet: pausing or resuming it needs a token or user with every \
                 subscription in scope"
                    .into(),
            ));
        }
        let action = if paused { "rollout.pause" } else { "rollout.resume" };
        if self.store().pause_rollout(paused, &p.audit(action, self.now())).await?.is_none() {
            return Err(no_rollout());
        }
        self.view_for(p).await?.ok_or_else(no_rollout)
    }

    /// Rolls sensors back to the release before the one they run, as `rollback` grants (the
    /// updater switches back to the previous version it kept on disk): one sensor
    /// (`sensor_id`), every sensor on `version`, or by default every sensor on the current
    /// release. Rolling back the current release (not a single sensor) also pauses the
    /// rollout, so it does not hand the release out again. Audited as `rollout.rollback` per
    /// sensor. Sensors outside the caller's scope are left alone (a `sensor_id` outside it is
    /// not found).
    pub async fn rollback_rollout(&self, who: &Operator, req: &RollbackRequest) -> AppResult<RollbackResponse> {
        let p = who.principal();
        let Some(rollout) = self.store().current_rollout().await? else { return Err(no_rollout()) };
        if req.sensor_id.is_some() && req.version.is_some() {
            return Err(AppError::Validation("give either sensor_id or version, not both".into()));
        }
        let version: Option<Version> = match &req.version {
            Some(v) => Some(v.trim().parse().map_err(|e| {
                AppError::Validation(format!("version: {e}; expected MAJOR.MINOR.PATCH such as 1.4.0"))
            })?),
            None if req.sensor_id.is_none() => Some(rollout.version),
            None => None,
        };
        // Only the sensors asked for are read: one by id, or those running the version (the
        // version index), never the whole fleet.
        let chosen: Vec<RolloutSensor> = match (&req.sensor_id, version) {
            (Some(id), _) => {
                let s = self
                    .store()
                    .rollout_sensor(rollout.version, id)
                    .await?
                    .filter(|s| p.scope.allows(&s.subscription))
                    .ok_or(AppError::NotFound("sensor"))?;
                vec![s]
            }
            (None, Some(v)) => self
                .store()
                .rollout_sensors_running(rollout.version, v)
                .await?
                .into_iter()
                .filter(|s| p.scope.allows(&s.subscription))
                .filter(|s| s.version.as_deref().and_then(|x| x.trim().parse::<Version>().ok()) == Some(v))
                .collect(),
            (None, None) => Vec::new(),
        };
        let now = self.now();
        let deadline = i64::try_from(self.config().update_deadline.as_millis()).unwrap_or(i64::MAX);
        let mut grants = Vec::new();
        let mut views = Vec::new();
        let mut back_to: Option<(Version, Option<Version>)> = None;
        for s in chosen {
            let Some(from) = s.version.as_deref().and_then(|x| x.trim().parse::<Version>().ok()) else {
                return Err(AppError::Conflict(format!(
                    "sensor {} has not reported its version yet; nothing to roll back",
                    s.sensor_id
                )));
            };
            // Every chosen sensor runs the same version but for one by id: one read of the
            // releases, not one per sensor.
            let before = match back_to {
                Some((f, to)) if f == from => to,
                _ => {
                    let to = self.release_before(from).await?;
                    back_to = Some((from, to));
                    to
                }
            };
            let Some(to) = before else {
                return Err(AppError::Conflict(format!(
                    "sensor {} runs {from}, and no release before {from} was published; nothing to roll back to",
                    s.sensor_id
                )));
            };
            let update_id = new_update_id()?;
            views.push(RollbackGrantView {
                sensor_id: s.sensor_id.clone(),
                update_id: update_id.clone(),
                from_version: from.to_string(),
                to_version: to.to_string(),
            });
            grants.push(Grant {
                update_id,
                rollout_version: rollout.version,
                sensor_id: s.sensor_id.clone(),
                version: to.to_string(),
                action: UpdateAction::Rollback.as_str().to_string(),
                sha256: String::new(),
                size: 0,
                granted_at: now,
                deadline: Timestamp(now.0.saturating_add(deadline)),
                state: "granted".to_string(),
                error: None,
            });
        }
        if grants.is_empty() {
            let what = match (&req.sensor_id, version) {
                (_, Some(v)) => format!("no sensor in scope runs {v}"),
                _ => "no sensor to roll back".to_string(),
            };
            return Err(AppError::Conflict(format!("{what}; nothing to roll back")));
        }
        let pause = req.sensor_id.is_none() && version == Some(rollout.version);
        self.store().grant_rollbacks(&grants, pause, &p.audit("rollout.rollback", now)).await?;
        Ok(RollbackResponse { grants: views, rollout_paused: pause })
    }
}

fn no_rollout() -> AppError {
    AppError::NotFound("rollout")
}

/// Runs the rollout job every `every` until `stop` changes.
pub fn spawn(
    app: Arc<App>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match app.rollout_tick().await {
                Ok(grants) => {
                    for g in grants {
                        tracing::info!(sensor_id = %g.sensor_id, update_id = %g.update_id, version = %g.version, "update granted");
                    }
                }
                Err(e) => tracing::error!(error = %e, "rollout job failed; retrying on the next tick"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
        }
    })
}
