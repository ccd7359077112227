//! The unprivileged account the sensor runs as. Only meaningful when the updater runs as
//! root: then `install --service-user NAME` creates the account if it is missing (`useradd
//! --system`, no home, no login shell) and gives it the state dir, and `run` starts the
//! sensor with its uid and gid. Not root: accounts are neither created nor switched to (the
//! sensor runs as the updater's own user) and a note says so.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let o = Command::new("id").arg(flag).arg(name).output().ok()?;
    if !o.status.success() {
        return None;
    }
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// The uid and gid of `name`, if it exists.
pub fn lookup(name: &str) -> Option<(u32, u32)> {
    Some((id_of("-u", name)?, id_of("-g", name)?))
}

/// Resolves `name`, creating the account when root and it is missing; `None` when not root.
pub fn resolve_or_create(name: &str, quiet: bool) -> anyhow::Result<Option<(u32, u32)>> {
    if !is_root() {
        if !quiet {
            println!("not running as root: the sensor runs as the current user, --service-user {name} is ignored");
        }
        return Ok(None);
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || name.is_empty() {
        bail!("--service-user {name:?}: use letters, digits, '-' and '_'");
    }
    if lookup(name).is_none() {
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
            .status()
            .context("running useradd")?;
        if !st.success() {
            bail!("useradd {name} failed ({st})");
        }
        if !quiet {
            println!("created the system account {name}");
        }
    }
    lookup(name).map(Some).with_context(|| format!("the account {name} does not exist"))
}

/// Gives `dir` and everything in it to `uid:gid`.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).with_context(|| format!("chown {}", dir.display()))?;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            chown_tree(&e.path(), uid, gid)?;
        } else if !ft.is_symlink() {
            std::os::unix::fs::chown(e.path(), Some(uid), Some(gid))
                .with_context(|| format!("chown {}", e.path().display()))?;
        }
    }
    Ok(())
}
