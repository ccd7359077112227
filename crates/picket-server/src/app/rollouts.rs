//! Rollout orchestration: a rollout starts when a release becomes current; the rollout job
//! fails grants past their deadline and decides new grants (in one store transaction that
//! locks the rollout row, so replicas agree); heartbeats carry the sensor's open grant and
//! apply its reports at once, idempotently by `update_id`. A failed update sets the sensor's
//! `update_state` to `failed`, which the health job turns into an `update_failed` issue.

use std::sync::Arc;
use std::time::Duration;

use picket_domain::rollout::{RolloutPolicy, heartbeat_clears};
use picket_domain::{UpdateState, Version, rollout};
use picket_proto::sensor::HeartbeatRequest;
use picket_proto::updates::{UpdateAction, UpdateGrant, UpdateOutcome};
use picket_store::SensorRow;
use picket_store::rollouts::Grant;

use super::{App, AppResult};

/// Default number of open grants at once (`--rollout-concurrency`).
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// Default failures that pause a rollout (`--rollout-max-failures`).
pub const DEFAULT_MAX_FAILURES: u32 = 1;

impl App {
    /// The rollout rules in effect.
    pub fn rollout_policy(&self) -> RolloutPolicy {
        RolloutPolicy {
            concurrency: DEFAULT_CONCURRENCY,
            max_failures: DEFAULT_MAX_FAILURES,
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
        Ok(self.store().decide_grants(self.rollout_policy(), deadline, now).await?)
    }

    /// Applies the update report (or the clearance a heartbeat implies) of `sensor` at once,
    /// and answers its open grant, if any.
    pub async fn rollout_heartbeat(
        &self,
        sensor: &SensorRow,
        req: &HeartbeatRequest,
    ) -> AppResult<Option<UpdateGrant>> {
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
        if granted.is_some_and(|g| heartbeat_clears(g, reported, req.service_status)) && open.action == "update" {
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
