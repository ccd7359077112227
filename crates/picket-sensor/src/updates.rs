//! The sensor's side of the update protocol: it relays the control plane's grant to the
//! updater through `<state-dir>/update/grant.json` (removed when no grant is sent) and sends
//! the updater's `update/report.json` and latest `update/watchdog.json` in its heartbeats;
//! `update/service.json`, when present, gives the service status to report.

use std::path::{Path, PathBuf};

use picket_domain::{ServiceStatus, Timestamp};
use picket_proto::updates::{ServiceStatusFile, UpdateGrant, UpdateReport, WatchdogRestart};

use crate::state::write_atomic;

fn dir(root: &Path) -> PathBuf {
    root.join("update")
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable update file");
            None
        }
    }
}

/// The updater's report waiting to be sent, if any.
pub fn pending_report(root: &Path) -> Option<UpdateReport> {
    read(&dir(root).join("report.json"))
}

/// When the watchdog last restarted the service, if ever.
pub fn watchdog_restart_at(root: &Path) -> Option<Timestamp> {
    read::<WatchdogRestart>(&dir(root).join("watchdog.json")).map(|w| w.at)
}

/// The service status the updater asks to report, if it wrote one.
pub fn service_status(root: &Path) -> Option<ServiceStatus> {
    read::<ServiceStatusFile>(&dir(root).join("service.json")).map(|s| s.service_status)
}

/// Applies a heartbeat answer: writes (or removes) `grant.json`, and deletes `report.json`
/// once the answer no longer carries the reported grant.
pub fn on_answer(root: &Path, grant: Option<&UpdateGrant>, sent: Option<&UpdateReport>) {
    let d = dir(root);
    let grant_path = d.join("grant.json");
    match grant {
        Some(g) => {
            let write = std::fs::create_dir_all(&d)
                .map_err(|e| e.to_string())
                .and_then(|()| serde_json::to_vec_pretty(g).map_err(|e| e.to_string()))
                .and_then(|bytes| write_atomic(&grant_path, &bytes, false).map_err(|e| e.to_string()));
            if let Err(e) = write {
                tracing::warn!(error = %e, "could not write update/grant.json");
            }
        }
        None => {
            let _ = std::fs::remove_file(&grant_path);
        }
    }
    if let Some(r) = sent
        && grant.is_none_or(|g| g.update_id != r.update_id)
    {
        let _ = std::fs::remove_file(d.join("report.json"));
    }
}
