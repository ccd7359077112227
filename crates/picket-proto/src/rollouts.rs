//! The rollout of the current release on the wire (`GET /api/v1/rollouts/current`, and the
//! answers of `POST /api/v1/rollouts/current/pause|resume|rollback`); see `docs/rollouts.md`.
//! Fields are added, never repurposed; readers ignore fields they do not know.

use picket_domain::{Timestamp, Version};
use serde::{Deserialize, Serialize};

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Giving grants (or waiting for the delayed ring, or for open grants to clear).
    Active,
    /// No new grants: paused by an operator or by failures (`paused_reason` says which).
    Paused,
    /// Every targeted sensor updated, failed or was rolled back; nothing left to grant.
    Finished,
}

impl RolloutState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Active => "active",
            RolloutState::Paused => "paused",
            RolloutState::Finished => "finished",
        }
    }
}

/// Why a rollout is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PausedBy {
    /// An operator paused it (`POST /api/v1/rollouts/current/pause`, or a fleet rollback).
    Operator,
    /// Failed updates reached `max_failures`.
    Failures,
}

/// Which ring a sensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ring {
    /// `delayed_update` is off: updated one by one as soon as the release is current.
    Immediate,
    /// `delayed_update` is on: starts `delay_ring_after` after the rollout started.
    Delayed,
}

/// Where one sensor stands in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutSensorState {
    /// Waiting for its turn.
    Pending,
    /// In the delayed ring, which is not due yet (see `delayed_ring_starts_at`).
    WaitingDelay,
    /// Holds an update grant: downloading, switching, or waiting for clearance.
    Updating,
    /// Runs the release (after this rollout's grant, or already before it).
    Updated,
    /// Its update failed (refused, crashed on start, or no clearance before the deadline);
    /// not retried in this rollout.
    Failed,
    /// Holds an operator's rollback grant, not finished yet.
    RollingBack,
    /// An operator's rollback to the previous release finished.
    RolledBack,
    /// Not part of the rollout: it has not reported a version yet, or runs a newer one.
    Skipped,
}

impl RolloutSensorState {
    /// Every state, in display order.
    pub const ALL: &'static [RolloutSensorState] = &[
        RolloutSensorState::Pending,
        RolloutSensorState::WaitingDelay,
        RolloutSensorState::Updating,
        RolloutSensorState::Updated,
        RolloutSensorState::Failed,
        RolloutSensorState::RollingBack,
        RolloutSensorState::RolledBack,
        RolloutSensorState::Skipped,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutSensorState::Pending => "pending",
            RolloutSensorState::WaitingDelay => "waiting_delay",
            RolloutSensorState::Updating => "updating",
            RolloutSensorState::Updated => "updated",
            RolloutSensorState::Failed => "failed",
            RolloutSensorState::RollingBack => "rolling_back",
            RolloutSensorState::RolledBack => "rolled_back",
            RolloutSensorState::Skipped => "skipped",
        }
    }
}

/// How many sensors are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCounts {
    /// Every sensor listed.
    pub total: u64,
    /// `pending`.
    pub pending: u64,
    /// `waiting_delay`.
    pub waiting_delay: u64,
    /// `updating`.
    pub updating: u64,
    /// `updated`.
    pub updated: u64,
    /// `failed`.
    pub failed: u64,
    /// `rolling_back`.
    pub rolling_back: u64,
    /// `rolled_back`.
    pub rolled_back: u64,
    /// `skipped`.
    pub skipped: u64,
}

impl RolloutCounts {
    /// Counts one sensor in `state`.
    pub fn add(&mut self, state: RolloutSensorState) {
        self.add_n(state, 1);
    }

    /// Counts `count` sensors in `state`.
    pub fn add_n(&mut self, state: RolloutSensorState, count: u64) {
        self.total += count;
        let n = match state {
            RolloutSensorState::Pending => &mut self.pending,
            RolloutSensorState::WaitingDelay => &mut self.waiting_delay,
            RolloutSensorState::Updating => &mut self.updating,
            RolloutSensorState::Updated => &mut self.updated,
            RolloutSensorState::Failed => &mut self.failed,
            RolloutSensorState::RollingBack => &mut self.rolling_back,
            RolloutSensorState::RolledBack => &mut self.rolled_back,
            RolloutSensorState::Skipped => &mut self.skipped,
        };
        *n += count;
    }

    /// The count of `state`.
    pub fn get(&self, state: RolloutSensorState) -> u64 {
        match state {
            RolloutSensorState::Pending => self.pending,
            RolloutSensorState::WaitingDelay => self.waiting_delay,
            RolloutSensorState::Updating => self.updating,
            RolloutSensorState::Updated => self.updated,
            RolloutSensorState::Failed => self.failed,
            RolloutSensorState::RollingBack => self.rolling_back,
            RolloutSensorState::RolledBack => self.rolled_back,
            RolloutSensorState::Skipped => self.skipped,
        }
    }
}

/// One sensor's progress in the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSensorView {
    /// The sensor's id.
    pub sensor_id: String,
    /// The sensor's name.
    pub sensor_name: String,
    /// `immediate` or `delayed`.
    pub ring: Ring,
    /// Where it stands.
    pub state: RolloutSensorState,
    /// The version it last reported running (`null` before its first heartbeat).
    pub version: Option<String>,
    /// Its latest grant in this rollout (update or rollback); `null` when none.
    pub update_id: Option<String>,
    /// `update` or `rollback`: what its latest grant asked; `null` when none.
    pub action: Option<String>,
    /// When its latest grant was given.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub started_at: Option<Timestamp>,
    /// When its latest grant finished (cleared, failed or rolled back).
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub finished_at: Option<Timestamp>,
    /// Past this with no clearance, an open grant fails.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub deadline: Option<Timestamp>,
    /// Why its update failed.
    pub error: Option<String>,
}

/// `GET /api/v1/rollouts/current`: the rollout of the current release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    /// The release being rolled out (the current release).
    pub version: Version,
    /// The release before it (what a rollback returns to); `null` for the first release.
    pub previous_version: Option<Version>,
    /// `active`, `paused` or `finished`.
    pub state: RolloutState,
    /// `operator` or `failures` when paused, else `null`.
    pub paused_by: Option<PausedBy>,
    /// Why it is paused, for an operator (`null` when not paused).
    pub paused_reason: Option<String>,
    /// When it started (the release became current).
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: Timestamp,
    /// Grants open at once at most (`--rollout-concurrency`).
    pub concurrency: u32,
    /// Failed updates that pause the rollout (`--rollout-max-failures`).
    pub max_failures: u32,
    /// Failed updates counted since the start or the last resume.
    pub failures: u32,
    /// Seconds after the start before the delayed ring begins (`--delay-ring-after`).
    pub delay_ring_after_secs: u64,
    /// When the delayed ring begins (`started_at + delay_ring_after`).
    #[serde(with = "crate::time::rfc3339")]
    pub delayed_ring_starts_at: Timestamp,
    /// Whether the delayed ring has begun.
    pub delayed_ring_due: bool,
    /// Sensors per state: every cloud-connected, activated sensor in the caller's scope.
    pub counts: RolloutCounts,
    /// A bounded page of those sensors, by ring then id: up to 500 holding an open grant or
    /// whose update failed, plus the first 500 by id (every sensor on a fleet of at most 500).
    pub sensors: Vec<RolloutSensorView>,
    /// Whether `sensors` lists fewer sensors than `counts.total` (added later: absent reads
    /// as `false`).
    #[serde(default)]
    pub sensors_truncated: bool,
}

/// Body of `POST /api/v1/rollouts/current/rollback` (all optional; empty body = every sensor
/// on the current release back to the previous release).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Roll back only this sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
    /// Roll back every sensor running this version (to the release before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One rollback grant given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackGrantView {
    /// The sensor.
    pub sensor_id: String,
    /// The grant's id.
    pub update_id: String,
    /// The version it was running.
    pub from_version: String,
    /// The version it goes back to.
    pub to_version: String,
}

/// Answer of `POST /api/v1/rollouts/current/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackResponse {
    /// The rollback grants given (one per sensor).
    pub grants: Vec<RollbackGrantView>,
    /// Whether the rollout was paused too (a rollback of the release being rolled out).
    pub rollout_paused: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_their_wire_names_and_counts_add_up() {
        let mut c = RolloutCounts::default();
        for s in RolloutSensorState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            c.add(*s);
            assert_eq!(c.get(*s), 1);
        }
        assert_eq!(c.total, RolloutSensorState::ALL.len() as u64);
        for s in [RolloutState::Active, RolloutState::Paused, RolloutState::Finished] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        let r: RollbackRequest = serde_json::from_str(r#"{"version":"1.2.3"}"#).unwrap();
        assert_eq!(r.version.as_deref(), Some("1.2.3"));
        assert!(serde_json::from_str::<RollbackRequest>(r#"{"sensors":"x"}"#).is_err());
    }
}
