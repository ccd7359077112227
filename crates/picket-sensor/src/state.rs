//! The state dir, the only place the sensor writes:
//!
//! - `identity/cert.pem`, `identity/key.pem` (0600): its client certificate and key;
//! - `sensor.json`: who it is after activation (id, name, mode, control-plane URLs, the CA it
//!   pins, package-signing keys), written once;
//! - `status.json`: last successful contact, last error, applied configuration; rewritten by
//!   `run` after every call;
//! - `config.json`: the configuration last pulled;
//! - `identity/pending/{cert,key}.pem` (0600): a certificate being rotated in, from its
//!   making until it is current; `identity/pending/confirmed` once the control plane pinned
//!   it (from then on it is copied over `identity/*.pem`, again after a crash, then removed);
//! - `identity/next/{cert,key}.pem`: the identity `reactivate` is activating, until it is current;
//! - `identity/rotate.lock`: held by whichever process is rotating or installing an identity.
//!
//! Every file is written to a temporary name, synced and renamed, so a crash leaves the old
//! or the new version, never half of one. Each JSON file carries a `format` number.

use std::io::Write;
use std::path::{Path, PathBuf};

use picket_domain::{Mode, Timestamp};
use picket_proto::SensorConfig;
use serde::{Deserialize, Serialize};

/// Format of `sensor.json` and `status.json`.
pub const STATE_FORMAT: u32 = 1;

/// Why the state dir could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The sensor has not been activated with this state dir.
    #[error("{0} holds no activated sensor; run `picket-sensor activate --activation-file F --state-dir {0}` first")]
    NotActivated(String),
}

/// Who this sensor is, written once at activation.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorIdentity {
    /// `STATE_FORMAT`.
    pub format: u32,
    /// The sensor's id.
    pub sensor_id: String,
    /// Its name in the control plane at activation.
    pub sensor_name: String,
    /// Cloud connected or locally managed.
    pub mode: Mode,
    /// Sensor-API URLs, tried in order.
    pub control_plane_urls: Vec<String>,
    /// The only CA the sensor trusts (PEM).
    pub ca_cert_pem: String,
    /// Keys packages must be signed with.
    pub package_signing_keys: Vec<String>,
    /// When it was activated (control-plane clock).
    pub activated_at: Timestamp,
}

impl std::fmt::Debug for SensorIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorIdentity")
            .field("sensor_id", &self.sensor_id)
            .field("sensor_name", &self.sensor_name)
            .field("control_plane_urls", &self.control_plane_urls)
            .finish_non_exhaustive()
    }
}

/// What `run` last saw, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// `STATE_FORMAT`.
    #[serde(default)]
    pub format: u32,
    /// Last call the control plane answered successfully.
    #[serde(default)]
    pub last_contact_at: Option<Timestamp>,
    /// The last error, if the last call failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When that error happened.
    #[serde(default)]
    pub last_error_at: Option<Timestamp>,
    /// The configuration version in effect.
    #[serde(default)]
    pub config_version_applied: i64,
    /// The name the control plane last gave.
    #[serde(default)]
    pub sensor_name: Option<String>,
}

/// A state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state dir at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `identity/cert.pem`.
    pub fn cert_path(&self) -> PathBuf {
        self.root.join("identity").join("cert.pem")
    }

    /// `identity/key.pem`.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("identity").join("key.pem")
    }

    /// `identity/pending/cert.pem`.
    pub fn pending_cert_path(&self) -> PathBuf {
        self.root.join("identity").join("pending").join("cert.pem")
    }

    /// `identity/pending/key.pem`.
    pub fn pending_key_path(&self) -> PathBuf {
        self.root.join("identity").join("pending").join("key.pem")
    }

    fn confirmed_marker(&self) -> PathBuf {
        self.root.join("identity").join("pending").join("confirmed")
    }

    fn next_dir(&self) -> PathBuf {
        self.root.join("identity").join("next")
    }

    /// Whether a rotation is under way (a pending identity exists).
    pub fn has_pending(&self) -> bool {
        self.pending_cert_path().exists() && self.pending_key_path().exists()
    }

    /// Writes the identity being rotated in (key 0600 first, then the certificate).
    pub fn write_pending(&self, cert_pem: &str, key_pem: &str) -> Result<(), StateError> {
        write_atomic(&self.pending_key_path(), key_pem.as_bytes(), true)?;
        write_atomic(&self.pending_cert_path(), cert_pem.as_bytes(), false)
    }

    /// The pending certificate and key PEM, if a rotation is under way.
    pub fn read_pending(&self) -> Result<Option<(String, String)>, StateError> {
        if !self.has_pending() {
            return Ok(None);
        }
        Ok(Some((read_text(&self.pending_cert_path())?, read_text(&self.pending_key_path())?)))
    }

    /// Records that the control plane pinned the pending identity: from now on it must become
    /// current, even after a crash (see `install_confirmed`).
    pub fn mark_confirmed(&self) -> Result<(), StateError> {
        write_atomic(&self.confirmed_marker(), b"confirmed\n", false)
    }

    /// Whether the pending identity was confirmed but is not current yet.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed_marker().exists()
    }

    /// If the pending identity was confirmed, copies it over the current one (key first, each
    /// file atomically) and removes the pending dir; idempotent, so a crash anywhere in it is
    /// finished by the next call. Returns whether an identity was installed. Call with the
    /// rotation lock held.
    pub fn install_confirmed(&self) -> Result<bool, StateError> {
        if !self.is_confirmed() {
            return Ok(false);
        }
        if let Some((cert, key)) = self.read_pending()? {
            self.write_identity(&cert, &key)?;
        }
        let dir = self.root.join("identity").join("pending");
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(true)
    }

    /// Drops a pending identity that was never confirmed.
    pub fn discard_pending(&self) -> Result<(), StateError> {
        let dir = self.root.join("identity").join("pending");
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Writes the identity `reactivate` is about to activate.
    pub fn write_next(&self, cert_pem: &str, key_pem: &str) -> Result<(), StateError> {
        write_atomic(&self.next_dir().join("key.pem"), key_pem.as_bytes(), true)?;
        write_atomic(&self.next_dir().join("cert.pem"), cert_pem.as_bytes(), false)
    }

    /// The identity `reactivate` was activating, if one was left.
    pub fn read_next(&self) -> Result<Option<(String, String)>, StateError> {
        let (c, k) = (self.next_dir().join("cert.pem"), self.next_dir().join("key.pem"));
        if !(c.exists() && k.exists()) {
            return Ok(None);
        }
        Ok(Some((read_text(&c)?, read_text(&k)?)))
    }

    /// Makes the `reactivate` identity current and removes it from `identity/next`.
    pub fn install_next(&self) -> Result<(), StateError> {
        if let Some((cert, key)) = self.read_next()? {
            self.write_identity(&cert, &key)?;
        }
        let dir = self.next_dir();
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))
    }

    /// Takes the lock that serialises rotations and identity installs between processes
    /// (`rotate-cert` and `run`); `Ok(None)` if another process holds it. Released on drop.
    pub fn try_lock_identity(&self) -> Result<Option<std::fs::File>, StateError> {
        let dir = self.root.join("identity");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join("rotate.lock");
        let f =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    fn sensor_path(&self) -> PathBuf {
        self.root.join("sensor.json")
    }

    fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// Whether an activation was recorded here.
    pub fn is_activated(&self) -> bool {
        self.sensor_path().exists()
    }

    /// Writes a new identity (key 0600 first, then the certificate).
    pub fn write_identity(&self, cert_pem: &str, key_pem: &str) -> Result<(), StateError> {
        write_atomic(&self.key_path(), key_pem.as_bytes(), true)?;
        write_atomic(&self.cert_path(), cert_pem.as_bytes(), false)
    }

    /// The certificate and key PEM.
    pub fn read_identity(&self) -> Result<(String, String), StateError> {
        Ok((read_text(&self.cert_path())?, read_text(&self.key_path())?))
    }

    /// Records the activation.
    pub fn write_sensor(&self, s: &SensorIdentity) -> Result<(), StateError> {
        write_json(&self.sensor_path(), s, false)
    }

    /// Who this sensor is; `NotActivated` before activation.
    pub fn read_sensor(&self) -> Result<SensorIdentity, StateError> {
        if !self.is_activated() {
            return Err(StateError::NotActivated(self.root.display().to_string()));
        }
        let path = self.sensor_path();
        let s: SensorIdentity = read_json(&path)?;
        if s.format != STATE_FORMAT {
            return Err(StateError::Invalid { path, message: format!("unknown format {}", s.format) });
        }
        Ok(s)
    }

    /// What `run` last recorded (empty before the first run).
    pub fn read_status(&self) -> Result<RunStatus, StateError> {
        let path = self.status_path();
        if !path.exists() {
            return Ok(RunStatus { format: STATE_FORMAT, ..RunStatus::default() });
        }
        read_json(&path)
    }

    /// Records what `run` saw.
    pub fn write_status(&self, s: &RunStatus) -> Result<(), StateError> {
        write_json(&self.status_path(), s, false)
    }

    /// Stores the configuration pulled last.
    pub fn write_config(&self, c: &SensorConfig) -> Result<(), StateError> {
        write_json(&self.config_path(), c, false)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

fn read_text(path: &Path) -> Result<String, StateError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StateError> {
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| StateError::Invalid { path: path.to_path_buf(), message: e.to_string() })
}

fn write_json<T: Serialize>(path: &Path, value: &T, secret: bool) -> Result<(), StateError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| StateError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    text.push('\n');
    write_atomic(path, text.as_bytes(), secret)
}

/// Writes `path` via a synced temporary file and a rename; mode 0600 when `secret`. The
/// parent directory is created (0700 for secrets).
pub fn write_atomic(path: &Path, contents: &[u8], secret: bool) -> Result<(), StateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_protects_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path().join("state"));
        assert!(matches!(s.read_sensor(), Err(StateError::NotActivated(_))));
        assert_eq!(s.read_status().unwrap().last_contact_at, None);
        s.write_identity("CERT", "KEY").unwrap();
        assert_eq!(s.read_identity().unwrap(), ("CERT".to_string(), "KEY".to_string()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.key_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let st = RunStatus { format: STATE_FORMAT, last_contact_at: Some(Timestamp(5)), ..RunStatus::default() };
        s.write_status(&st).unwrap();
        assert_eq!(s.read_status().unwrap(), st);
    }

    #[test]
    fn a_confirmed_rotation_is_installed_even_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path().join("state"));
        s.write_identity("OLD-CERT", "OLD-KEY").unwrap();
        assert!(!s.has_pending());
        assert!(!s.install_confirmed().unwrap(), "nothing confirmed: nothing installed");
        s.write_pending("NEW-CERT", "NEW-KEY").unwrap();
        assert!(s.has_pending());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.pending_key_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!s.install_confirmed().unwrap(), "proposed, not confirmed: the old identity stays");
        assert_eq!(s.read_identity().unwrap().0, "OLD-CERT");
        s.mark_confirmed().unwrap();
        // A crash halfway through the copy (key new, certificate old) is finished by the next call.
        write_atomic(&s.key_path(), b"NEW-KEY", true).unwrap();
        assert!(s.install_confirmed().unwrap());
        assert_eq!(s.read_identity().unwrap(), ("NEW-CERT".to_string(), "NEW-KEY".to_string()));
        assert!(!s.has_pending() && !s.is_confirmed());
        let lock = s.try_lock_identity().unwrap().expect("free");
        assert!(s.try_lock_identity().unwrap().is_none(), "held by another handle");
        drop(lock);
        assert!(s.try_lock_identity().unwrap().is_some());
    }
}
