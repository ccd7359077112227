//! The install dir and the files the updater keeps in it:
//!
//! - `<install-dir>/<version>/`: one extracted package per version (the current one and the
//!   previous one are kept, for rollback);
//! - `<install-dir>/current`: symlink to `<version>`, switched atomically
//!   (`symlink(new, current.tmp)` + `rename` + fsync of the dir);
//! - `<install-dir>/updater.json`: written once by `install` (state dir, trusted package keys,
//!   service user), read by `run`; the sensor never writes it, so a sensor cannot widen what
//!   the updater trusts;
//! - `<install-dir>/journal.json`: the versions on disk and the update step in progress
//!   (see `journal`);
//! - `<install-dir>/downloads/`: packages being downloaded (`<sha256>.part`) and complete ones;
//! - `<install-dir>/sensor.pid`: the running sensor's pid and start time, so a restarted
//!   updater stops a sensor left over by a killed one;
//! - `<install-dir>/updater.lock`: locked (`flock`, exclusive) by the one `run` supervising
//!   the dir and by `install` while it writes, so a second `run` cannot start a second sensor;
//!   the kernel releases it when the process ends, however it ends. Never deleted (a process
//!   could lock the old file while a new one is made, and two would hold "the" lock);
//! - `<state-dir>/update/`: the files shared with the sensor (update protocol).
//!
//! Every file is written to a temporary name, synced and renamed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use picket_domain::Timestamp;
use serde::{Deserialize, Serialize};

/// Format of `updater.json` and `journal.json`.
pub const FORMAT: u32 = 1;

/// The wall clock as a `Timestamp`.
pub fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// What `install` records for `run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdaterConfig {
    /// `FORMAT`.
    pub format: u32,
    /// The sensor's state dir.
    pub state_dir: PathBuf,
    /// Keys packages must be signed with (from the activation file).
    pub package_signing_keys: Vec<String>,
    /// The account the sensor runs as (when the updater runs as root).
    #[serde(default)]
    pub service_user: Option<String>,
}

/// Paths of one install dir.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The install dir.
    pub root: PathBuf,
}

impl Layout {
    /// `current`.
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }
    /// `<version>/`.
    pub fn version_dir(&self, v: &str) -> PathBuf {
        self.root.join(v)
    }
    /// `updater.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("updater.json")
    }
    /// `journal.json`.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.json")
    }
    /// `downloads/`.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }
    /// `sensor.pid`.
    pub fn pidfile(&self) -> PathBuf {
        self.root.join("sensor.pid")
    }
    /// Removes what a failed `install` of `version` wrote (`current`, `journal.json`,
    /// `updater.json`, the extracted `<version>/`), so the install can be run again; the
    /// state dir and `updater.lock` are left alone. Returns what it could not remove.
    pub fn undo_install(&self, version: &str) -> Vec<String> {
        let mut left = Vec::new();
        for file in [self.current(), self.journal(), self.config()] {
            if let Err(e) = std::fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                left.push(format!("{} ({e})", file.display()));
            }
        }
        let dir = self.version_dir(version);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            left.push(format!("{} ({e})", dir.display()));
        }
        left
    }

    /// `updater.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("updater.lock")
    }

    /// Takes `updater.lock` for as long as the returned file lives; an error if another
    /// process holds it (another `run` on this dir, or an `install` writing it).
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.lock_path();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another picket-updater (a run, or an install still writing) is using {} (it holds {}): only one \
                 `picket-updater run` may supervise an install dir, or two sensors would run and update it at once; \
                 stop the other one first",
                self.root.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// The version `current` points at, if any.
    pub fn current_version(&self) -> Option<String> {
        let target = std::fs::read_link(self.current()).ok()?;
        target.file_name().and_then(|n| n.to_str()).map(str::to_string)
    }

    /// Points `current` at `<version>/` atomically and makes it durable.
    pub fn switch_current(&self, version: &str) -> anyhow::Result<()> {
        let tmp = self.root.join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(version, &tmp).with_context(|| format!("creating {}", tmp.display()))?;
        std::fs::rename(&tmp, self.current()).with_context(|| format!("switching {}", self.current().display()))?;
        sync_dir(&self.root)
    }

    /// Reads `updater.json`.
    pub fn read_config(&self) -> anyhow::Result<UpdaterConfig> {
        let c: UpdaterConfig = read_json(&self.config())?.with_context(|| {
            format!(
                "{} holds no installed sensor (no updater.json); run `picket-updater install` first",
                self.root.display()
            )
        })?;
        anyhow::ensure!(c.format == FORMAT, "{}: unknown format {}", self.config().display(), c.format);
        Ok(c)
    }

    /// Removes what an interrupted extraction left (`.<version>.partial-*` dirs) and
    /// `current.tmp`.
    pub fn clean_partials(&self) {
        let _ = std::fs::remove_file(self.root.join("current.tmp"));
        let Ok(rd) = std::fs::read_dir(&self.root) else { return };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".partial-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Paths the updater shares with the sensor in its state dir.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The state dir.
    pub state_dir: PathBuf,
}

impl Shared {
    /// `update/`.
    pub fn update_dir(&self) -> PathBuf {
        self.state_dir.join("update")
    }
    /// `update/grant.json`.
    pub fn grant(&self) -> PathBuf {
        self.update_dir().join("grant.json")
    }
    /// `update/report.json`.
    pub fn report(&self) -> PathBuf {
        self.update_dir().join("report.json")
    }
    /// `update/service.json`.
    pub fn service(&self) -> PathBuf {
        self.update_dir().join("service.json")
    }
    /// `update/watchdog.json`.
    pub fn watchdog(&self) -> PathBuf {
        self.update_dir().join("watchdog.json")
    }
    /// `status.json` (written by `picket-sensor run`).
    pub fn status(&self) -> PathBuf {
        self.state_dir.join("status.json")
    }
    /// `sensor.json` (written by `picket-sensor activate`).
    pub fn sensor(&self) -> PathBuf {
        self.state_dir.join("sensor.json")
    }
    /// `identity/cert.pem`.
    pub fn cert(&self) -> PathBuf {
        self.state_dir.join("identity").join("cert.pem")
    }
    /// `identity/key.pem`.
    pub fn key(&self) -> PathBuf {
        self.state_dir.join("identity").join("key.pem")
    }
}

/// The parts of the sensor's `status.json` the updater reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SensorStatus {
    /// Last call the control plane answered successfully.
    #[serde(default)]
    pub last_contact_at: Option<Timestamp>,
}

/// The parts of the sensor's `sensor.json` the updater reads (to download as the sensor).
#[derive(Debug, Clone, Deserialize)]
pub struct SensorInfo {
    /// Sensor-API URLs.
    pub control_plane_urls: Vec<String>,
    /// The CA the sensor trusts.
    pub ca_cert_pem: String,
}

/// fsyncs a directory.
pub fn sync_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", path.display()))
}

/// Writes `path` via a synced temporary file and a rename, then syncs the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))?;
    sync_dir(dir)
}

/// `write_atomic` of `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).context("formatting JSON")?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Reads a JSON file; `None` if it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{} is not valid", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
