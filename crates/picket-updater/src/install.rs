//! `picket-updater install`: verify the package against the activation file's keys, extract
//! it to `<install-dir>/<version>/`, record the journal, point `current` at it, lay out the
//! state dir, and activate the sensor by running the package's entry point
//! (`activate --activation-file F --state-dir S`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use picket_package::{Limits, PublicKey, Trust};
use picket_proto::ActivationFile;

use crate::journal::Journal;
use crate::layout::{FORMAT, Layout, UpdaterConfig, now, write_json};
use crate::user;

/// What `install` was asked.
#[derive(Debug)]
pub struct InstallOptions {
    /// The activation file.
    pub activation_file: PathBuf,
    /// The install dir.
    pub install_dir: PathBuf,
    /// The package to install.
    pub package: Option<PathBuf>,
    /// The state dir (default `<install-dir>/state`).
    pub state_dir: Option<PathBuf>,
    /// The account to run the sensor as.
    pub service_user: Option<String>,
    /// Print nothing but errors.
    pub quiet: bool,
}

/// Absolute form of `p` (relative to the working dir), without touching the filesystem.
pub fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// Runs `install`.
pub fn install(o: &InstallOptions) -> anyhow::Result<()> {
    let say = |s: &str| {
        if !o.quiet {
            println!("{s}");
        }
    };
    let text = std::fs::read_to_string(&o.activation_file)
        .with_context(|| format!("cannot read the activation file {}", o.activation_file.display()))?;
    let file: ActivationFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an activation file", o.activation_file.display()))?;
    let keys =
        PublicKey::parse_all(&file.package_signing_keys).context("the activation file's package_signing_keys")?;
    if keys.is_empty() {
        bail!(
            "the activation file carries no package-signing key, so no package can be trusted; start picket serve with \
             --release-key-pub KEY.pub and download the activation file again"
        );
    }
    say(&format!(
        "read the activation file of sensor {} ({}); {} trusted package-signing key(s)",
        file.sensor_name,
        file.sensor_id,
        keys.len()
    ));
    let Some(package) = &o.package else {
        bail!(
            "--package PKG is required: the control plane serves packages only to activated sensors (mutual TLS with \
             the sensor's certificate), and the sensor is activated by the package's own program; download the current \
             release (`GET /api/v1/releases`, then the package) and pass it with --package"
        );
    };
    let root = absolute(&o.install_dir)?;
    let layout = Layout { root: root.clone() };
    if layout.journal().exists() {
        bail!(
            "{} already holds an installed sensor (journal.json); start it with `picket-updater run --install-dir {}`",
            root.display(),
            root.display()
        );
    }
    let state_dir = absolute(&o.state_dir.clone().unwrap_or_else(|| root.join("state")))?;
    let ids = match &o.service_user {
        Some(name) => user::resolve_or_create(name, o.quiet)?,
        None => None,
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let trust = Trust { keys, now: now(), limits: Limits::default() };
    let verified = picket_package::verify_file(package, &trust)
        .with_context(|| format!("refusing the package {}", package.display()))?;
    verified.check_updater(crate::own_version()).context("refusing the package")?;
    let version = verified.manifest.version.to_string();
    let entrypoint = verified.manifest.entrypoint.clone();
    say(&format!(
        "verified {}: version {version}, signed by key {}, SHA-256 {}",
        package.display(),
        verified.key_id,
        verified.package_sha256
    ));
    layout.clean_partials();
    let dest = layout.version_dir(&version);
    if std::fs::symlink_metadata(&dest).is_ok() {
        // Left by an install that crashed before writing the journal: never in use.
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing the leftover {}", dest.display()))?;
    }
    picket_package::extract_file(package, &verified, &dest, &trust.limits)
        .with_context(|| format!("extracting to {}", dest.display()))?;
    say(&format!("extracted {} file(s) to {}", verified.manifest.files.len(), dest.display()));
    let config = UpdaterConfig {
        format: FORMAT,
        state_dir: state_dir.clone(),
        package_signing_keys: file.package_signing_keys.clone(),
        service_user: o.service_user.clone(),
    };
    write_json(&layout.config(), &config)?;
    Journal::fresh(&version, &entrypoint).save(&layout)?;
    layout.switch_current(&version)?;
    say(&format!("{} -> {version}", layout.current().display()));
    std::fs::create_dir_all(state_dir.join("update")).with_context(|| format!("creating {}", state_dir.display()))?;
    std::fs::create_dir_all(layout.downloads())?;
    if let Some((uid, gid)) = ids {
        user::chown_tree(&state_dir, uid, gid)?;
        say(&format!("the state dir {} belongs to the service user (uid {uid})", state_dir.display()));
    }
    say(&format!("state dir {}", state_dir.display()));
    if state_dir.join("sensor.json").exists() {
        say("the state dir already holds an activated sensor: not activating again");
        return Ok(());
    }
    let program = layout.current().join(&entrypoint);
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("activate").arg("--activation-file").arg(absolute(&o.activation_file)?).arg("--state-dir").arg(&state_dir);
    cmd.stdin(std::process::Stdio::null());
    if let Some((uid, gid)) = ids {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().with_context(|| format!("starting {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "activating the sensor failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    say(String::from_utf8_lossy(&out.stdout).trim());
    say(&format!("installed; start the service with `picket-updater run --install-dir {}`", root.display()));
    Ok(())
}
