//! Update grants and reports between the control plane, the sensor and `picket-updater`
//! (see `docs/rollouts.md` and the update protocol): the grant travels in the heartbeat
//! answer and is written by the sensor to `<state-dir>/update/grant.json`; the updater's
//! outcome is written to `<state-dir>/update/report.json` and sent back in the heartbeat.
//! Fields are added, never repurposed.

use picket_domain::Timestamp;
use serde::{Deserialize, Serialize};

/// What a grant asks the host to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateAction {
    /// Download, verify and switch to a newer version.
    Update,
    /// Switch back to the previous version kept on disk (operator rollback; no download).
    Rollback,
}

impl UpdateAction {
    /// The wire name (`update`, `rollback`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateAction::Update => "update",
            UpdateAction::Rollback => "rollback",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "update" => Some(UpdateAction::Update),
            "rollback" => Some(UpdateAction::Rollback),
            _ => None,
        }
    }
}

/// A grant to update (or roll back) one sensor, re-sent in every heartbeat answer until a
/// report with its `update_id` arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateGrant {
    /// Identifies this grant; reports carry it back (idempotent).
    pub update_id: String,
    /// The version to run (`MAJOR.MINOR.PATCH`).
    pub version: String,
    /// SHA-256 (hex) of the package file (`GET /sensor/v1/packages/{sha256}`); empty for a
    /// rollback.
    #[serde(default)]
    pub sha256: String,
    /// Size in bytes of the package file; 0 for a rollback.
    #[serde(default)]
    pub size: u64,
    /// Past this, with no clearance, the control plane counts the update as failed.
    #[serde(with = "crate::time::rfc3339")]
    pub deadline: Timestamp,
    /// `update` or `rollback`.
    pub action: UpdateAction,
}

/// How an update ended on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// The new sensor process runs and heartbeats with the new version (clearance).
    Succeeded,
    /// Refused or failed before the switch; the old version keeps running.
    Failed,
    /// Switched, but the new version did not come up; switched back to the old one.
    RolledBack,
}

impl UpdateOutcome {
    /// The wire name (`succeeded`, `failed`, `rolled_back`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOutcome::Succeeded => "succeeded",
            UpdateOutcome::Failed => "failed",
            UpdateOutcome::RolledBack => "rolled_back",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "succeeded" => Some(UpdateOutcome::Succeeded),
            "failed" => Some(UpdateOutcome::Failed),
            "rolled_back" => Some(UpdateOutcome::RolledBack),
            _ => None,
        }
    }
}

/// The updater's outcome of one grant (`<state-dir>/update/report.json`), sent by the sensor
/// in its heartbeats until the answer no longer carries that grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReport {
    /// The grant this reports on.
    pub update_id: String,
    /// `succeeded`, `failed` or `rolled_back`.
    pub outcome: UpdateOutcome,
    /// The version the grant asked for.
    pub version: String,
    /// Why it failed (`null` on success).
    #[serde(default)]
    pub error: Option<String>,
    /// When the updater decided the outcome.
    #[serde(with = "crate::time::rfc3339")]
    pub at: Timestamp,
}

/// The latest watchdog restart (`<state-dir>/update/watchdog.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogRestart {
    /// When the updater restarted the sensor service.
    #[serde(with = "crate::time::rfc3339")]
    pub at: Timestamp,
    /// Why (`rss 812 MiB over the limit 600 MiB for 30 s`).
    pub reason: String,
}

/// The service status the updater wants the sensor to report
/// (`<state-dir>/update/service.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatusFile {
    /// `running`, `starting`, `stopped` or `disabled`.
    pub service_status: picket_domain::ServiceStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_and_report_round_trip_with_protocol_names() {
        let g: UpdateGrant = serde_json::from_str(
            r#"{"update_id":"upd_1","version":"2.5.0","sha256":"ab","size":12,
                "deadline":"2026-11-22T12:00:00Z","action":"rollback"}"#,
        )
        .unwrap();
        assert_eq!(g.action, UpdateAction::Rollback);
        let back: UpdateGrant = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(back, g);
        let r: UpdateReport = serde_json::from_str(
            r#"{"update_id":"upd_1","outcome":"rolled_back","version":"2.5.0","error":null,
                "at":"2026-11-22T12:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(r.outcome, UpdateOutcome::RolledBack);
        assert_eq!(UpdateOutcome::parse(r.outcome.as_str()), Some(r.outcome));
        assert_eq!(UpdateAction::parse("update"), Some(UpdateAction::Update));
    }
}
