//! The sensor's side of the update protocol (`picket_proto::updates`): it relays the control
//! plane's grant to the updater through `<state-dir>/update/grant.json` (removed when the
//! heartbeat answer carries none), sends the updater's `update/report.json` in its heartbeats
//! until the answer no longer carries that grant (then deletes it), sends the time of the latest
//! `update/watchdog.json`, and reports the service status of `update/service.json` when the
//! updater wrote one. Unreadable files are logged and ignored: an update file must never stop
//! the sensor.

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

/// Applies a heartbeat answer: writes `grant.json` (only when it changed) or removes it, and
/// deletes `report.json` once the answer no longer carries the grant `sent` reported on.
pub fn on_answer(root: &Path, grant: Option<&UpdateGrant>, sent: Option<&UpdateReport>) {
    let d = dir(root);
    let grant_path = d.join("grant.json");
    match grant {
        Some(g) => {
            if read::<UpdateGrant>(&grant_path).as_ref() != Some(g) {
                let write = serde_json::to_vec_pretty(g)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| write_atomic(&grant_path, &bytes, false).map_err(|e| e.to_string()));
                match write {
                    Ok(()) => tracing::info!(update_id = %g.update_id, version = %g.version, "update granted"),
                    Err(e) => tracing::warn!(error = %e, "could not write update/grant.json"),
                }
            }
        }
        None => match std::fs::remove_file(&grant_path) {
            Ok(()) => tracing::info!("the control plane no longer grants an update"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not remove update/grant.json"),
        },
    }
    if let Some(r) = sent
        && grant.is_none_or(|g| g.update_id != r.update_id)
        // The updater may have written a newer report since this one was read: keep that.
        && pending_report(root).is_some_and(|now| now.update_id == r.update_id)
    {
        tracing::info!(update_id = %r.update_id, "update report delivered");
        let _ = std::fs::remove_file(d.join("report.json"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use picket_proto::updates::{UpdateAction, UpdateOutcome};

    use super::*;

    fn grant(id: &str) -> UpdateGrant {
        UpdateGrant {
            update_id: id.into(),
            version: "2.0.0".into(),
            sha256: "ab".repeat(32),
            size: 10,
            deadline: Timestamp(1_900_000_000_000),
            action: UpdateAction::Update,
        }
    }

    fn report(id: &str) -> UpdateReport {
        UpdateReport {
            update_id: id.into(),
            outcome: UpdateOutcome::Succeeded,
            version: "2.0.0".into(),
            error: None,
            at: Timestamp(1_800_000_000_000),
        }
    }

    fn put<T: serde::Serialize>(root: &Path, name: &str, v: &T) {
        std::fs::create_dir_all(dir(root)).unwrap();
        std::fs::write(dir(root).join(name), serde_json::to_vec(v).unwrap()).unwrap();
    }

    #[test]
    fn grant_is_written_and_removed_with_the_answer() {
        let t = tempfile::tempdir().unwrap();
        on_answer(t.path(), Some(&grant("upd_1")), None);
        let g: UpdateGrant = read(&t.path().join("update/grant.json")).unwrap();
        assert_eq!(g, grant("upd_1"));
        on_answer(t.path(), None, None);
        assert!(!t.path().join("update/grant.json").exists());
        on_answer(t.path(), None, None);
    }

    #[test]
    fn report_is_kept_until_the_answer_drops_its_grant() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "report.json", &report("upd_1"));
        let sent = pending_report(t.path()).unwrap();
        on_answer(t.path(), Some(&grant("upd_1")), Some(&sent));
        assert!(pending_report(t.path()).is_some(), "still granted: the report is sent again");
        on_answer(t.path(), None, Some(&sent));
        assert!(pending_report(t.path()).is_none());
        // A newer report written while the old one was in flight survives.
        put(t.path(), "report.json", &report("upd_2"));
        on_answer(t.path(), None, Some(&sent));
        assert_eq!(pending_report(t.path()).unwrap().update_id, "upd_2");
    }

    #[test]
    fn watchdog_and_service_files_are_read_and_bad_ones_ignored() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(watchdog_restart_at(t.path()), None);
        assert_eq!(service_status(t.path()), None);
        put(t.path(), "watchdog.json", &WatchdogRestart { at: Timestamp(1_800_000_000_000), reason: "rss".into() });
        put(t.path(), "service.json", &ServiceStatusFile { service_status: ServiceStatus::Starting });
        assert_eq!(watchdog_restart_at(t.path()), Some(Timestamp(1_800_000_000_000)));
        assert_eq!(service_status(t.path()), Some(ServiceStatus::Starting));
        std::fs::write(dir(t.path()).join("service.json"), b"{not json").unwrap();
        assert_eq!(service_status(t.path()), None);
    }
}
