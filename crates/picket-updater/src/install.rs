//! `picket-updater install`: verify the package against the activation file's keys, extract
//! it to `<install-dir>/<version>/`, record the journal, point `current` at it, lay out the
//! state dir, and activate the sensor by running the package's entry point
//! (`activate --activation-file F --state-dir S`).
//!
//! Without `--package` the package is the current release, downloaded from the control plane
//! with the sensor's identity: the updater activates that identity first (`activate`), and the
//! answer names the release. With no release published yet it stops before installing
//! anything, keeping the activated identity so that running it again finishes the install.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use picket_domain::Mode;
use picket_package::{Limits, PublicKey, Trust};
use picket_proto::ActivationFile;
use picket_proto::sensor::CurrentRelease;

use crate::client::{self, FetchError};
use crate::journal::Journal;
use crate::layout::{FORMAT, Layout, Shared, UpdaterConfig, now, write_json};
use crate::{activate, user};

/// Largest package `install` downloads (as `run --max-package-size`'s default).
const MAX_DOWNLOAD_BYTES: u64 = 512 << 20;

/// What `install` was asked.
#[derive(Debug)]
pub struct InstallOptions {
    /// The activation file.
    pub activation_file: PathBuf,
    /// The install dir.
    pub install_dir: PathBuf,
    /// The package to install; `None`: the current release, from the control plane.
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
    let (package, fetched) = match &o.package {
        Some(p) => (p.clone(), None),
        None => {
            let (path, release) = fetch_current_release(&file, &layout, &state_dir, &say)?;
            (path, Some(release))
        }
    };
    let package = package.as_path();
    // A downloaded package is not kept: a refused one is fetched again next time.
    let discard = || {
        if fetched.is_some() {
            let _ = std::fs::remove_file(package);
        }
    };
    let verified = match picket_package::verify_file(package, &trust) {
        Ok(v) => v,
        Err(e) => {
            discard();
            return Err(anyhow::Error::new(e).context(format!("refusing the package {}", package.display())));
        }
    };
    if let Some(release) = &fetched
        && (verified.package_sha256 != release.sha256 || verified.manifest.version.to_string() != release.version)
    {
        discard();
        bail!(
            "refusing the package: the control plane named release {} ({}) but served {} ({})",
            release.version,
            release.sha256,
            verified.manifest.version,
            verified.package_sha256
        );
    }
    if let Err(e) = verified.check_updater(crate::own_version()) {
        discard();
        return Err(anyhow::Error::new(e).context("refusing the package"));
    }
    let version = verified.manifest.version.to_string();
    say(&format!(
        "verified {}: version {version}, signed by key {}, SHA-256 {}",
        package.display(),
        verified.key_id,
        verified.package_sha256
    ));
    // Held while this install writes the dir (a `run` started meanwhile is refused). The
    // journal is checked again under it: another install may have finished meanwhile.
    let lock = match layout.lock() {
        Ok(lock) => lock,
        Err(e) => {
            discard();
            return Err(e);
        }
    };
    if layout.journal().exists() {
        discard();
        bail!("{} was installed meanwhile by another picket-updater install", root.display());
    }
    // The writing half, undone as a whole if any step fails.
    let installed = (|| -> anyhow::Result<()> {
        let entrypoint = verified.manifest.entrypoint.clone();
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
        std::fs::create_dir_all(state_dir.join("update"))
            .with_context(|| format!("creating {}", state_dir.display()))?;
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
        cmd.arg("activate")
            .arg("--activation-file")
            .arg(absolute(&o.activation_file)?)
            .arg("--state-dir")
            .arg(&state_dir);
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
        Ok(())
    })();
    discard();
    if let Err(e) = installed {
        // Leave the dir as it was, so the same install can be run again once the cause is fixed
        // (the state dir keeps the identity the sensor made: activation resumes with it).
        let left = layout.undo_install(&version);
        drop(lock);
        if !left.is_empty() {
            return Err(e.context(format!(
                "the install was undone except for {}: remove them before installing again",
                left.join(", ")
            )));
        }
        return Err(e.context(format!("nothing was left installed in {}", root.display())));
    }
    say(&format!("installed; start the service with `picket-updater run --install-dir {}`", root.display()));
    Ok(())
}

/// Activates the sensor's identity (made in, or found in, the state dir) and downloads the
/// current release the activation answer names into `downloads/` (resumable, capped at the
/// size it names). Returns the package's path and the release.
fn fetch_current_release(
    file: &ActivationFile,
    layout: &Layout,
    state_dir: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<(PathBuf, CurrentRelease)> {
    if file.mode == Mode::LocallyManaged {
        bail!(
            "sensor {} is locally managed: it never contacts the control plane, so the package cannot be fetched from \
             it; pass --package PKG (a signed package, e.g. the current release downloaded by an operator)",
            file.sensor_name
        );
    }
    let shared = Shared { state_dir: state_dir.to_path_buf() };
    let (cert, key, new) = activate::identity(&shared, &file.sensor_name, now())?;
    if new {
        say(&format!("made the sensor's certificate {}", shared.cert().display()));
    } else {
        say(&format!("using the sensor's certificate {} (from an earlier install)", shared.cert().display()));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let http = client::mtls(&file.ca_cert_pem, &cert, &key)?;
        let (answer, base) = activate::activate(&http, file).await.context("activation failed")?;
        say(&format!("activated sensor {} ({}) with {base}", answer.sensor_name, answer.sensor_id));
        let Some(release) = answer.current_release else {
            bail!(
                "no release is published on the control plane yet: publish one with `picket release publish PKG`, or \
                 pass --package PKG; the sensor is activated (its identity stays in {}), so running this same install \
                 again finishes it",
                state_dir.join("identity").display()
            );
        };
        let digest_ok =
            release.sha256.len() == 64 && release.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !digest_ok {
            bail!("the control plane named the current release by {:?}, which is not a SHA-256", release.sha256);
        }
        if release.size > MAX_DOWNLOAD_BYTES {
            bail!("the current release {} is {} bytes, over {MAX_DOWNLOAD_BYTES}", release.version, release.size);
        }
        say(&format!("downloading the current release {} ({} bytes)", release.version, release.size));
        let downloads = layout.downloads();
        std::fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
        let part = downloads.join(format!("{}.part", release.sha256));
        let url = format!("{base}/sensor/v1/packages/{}", release.sha256);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match client::fetch_resumable(&http, &url, &part, release.size).await {
                Ok(()) => break,
                Err(FetchError::TooLarge) => {
                    let _ = std::fs::remove_file(&part);
                    bail!("refusing the package: the control plane sent more than the {} bytes it named", release.size);
                }
                Err(FetchError::Other(e)) if attempt < 3 => say(&format!("{e:#}; trying again")),
                Err(FetchError::Other(e)) => return Err(e.context("downloading the current release")),
            }
        }
        let pkg = downloads.join(format!("{}.pkg", release.sha256));
        std::fs::rename(&part, &pkg).with_context(|| format!("renaming {}", part.display()))?;
        Ok((pkg, release))
    })
}
