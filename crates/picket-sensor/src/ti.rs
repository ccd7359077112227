//! The sensor's active threat intelligence, `<state-dir>/ti/`:
//!
//! - `indicators-<version>.json`: the indicators file of a TI package, byte for byte as signed;
//! - `active.json`: which version is in effect (version, package SHA-256, key id, signing and
//!   import times, indicator count, file name), written atomically after its indicators file,
//!   so a crash leaves the old or the new TI in effect, never a mix.
//!
//! Applying a package (`picket-sensor ti import`, or `run` when a heartbeat answer offers one)
//! verifies it against the activation file's keys (`picket_package::verify_ti`), refuses a
//! version at or below the active one, compiles the indicators (so a package the matcher cannot
//! use is refused too), then installs it. `run` watches `active.json` ([`TiHandle::reload`],
//! every second) and swaps the matcher in place: no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use picket_domain::Timestamp;
use picket_package::{PublicKey, TiLimits, VerifiedTi};
use picket_ti::Matcher;
use serde::{Deserialize, Serialize};

use crate::state::{StateDir, write_atomic};

/// Format of `active.json`.
pub const TI_STATE_FORMAT: u32 = 1;

/// Why a TI package could not be applied or the active TI read.
#[derive(Debug, thiserror::Error)]
pub enum TiError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The package failed verification (tampered, unknown key, malformed, too large).
    #[error("TI package refused: {0}")]
    Refused(#[from] picket_package::PackageError),
    /// The package is not newer than the TI in effect.
    #[error("TI version {offered} is not above the active version {active}; TI versions only go up")]
    NotNewer {
        /// The package's version.
        offered: i64,
        /// The version in effect.
        active: i64,
    },
    /// The indicators inside a validly signed package cannot be used.
    #[error("TI package version {version} holds unusable indicators: {message}")]
    Indicators {
        /// The package's version.
        version: i64,
        /// What the matcher said.
        message: String,
    },
    /// The activation file carried no usable key.
    #[error("package-signing keys of the activation: {0}")]
    Keys(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> TiError {
    TiError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// What `active.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveTiInfo {
    /// `TI_STATE_FORMAT`.
    pub format: u32,
    /// The TI version in effect.
    pub version: i64,
    /// SHA-256 (hex) of the package it came from.
    pub package_sha256: String,
    /// The key that signed it.
    pub key_id: String,
    /// When it was signed.
    #[serde(with = "picket_proto::time::rfc3339")]
    pub signed_at: Timestamp,
    /// When this sensor applied it.
    #[serde(with = "picket_proto::time::rfc3339")]
    pub applied_at: Timestamp,
    /// How many indicators it holds.
    pub indicator_count: u64,
    /// Its indicators file, inside `ti/`.
    pub indicators_file: String,
}

fn ti_dir(state: &StateDir) -> PathBuf {
    state.root().join("ti")
}

fn active_path(state: &StateDir) -> PathBuf {
    ti_dir(state).join("active.json")
}

/// What `ti/active.json` says is in effect (`None` before the first TI package).
pub fn read_active(state: &StateDir) -> Result<Option<ActiveTiInfo>, TiError> {
    let path = active_path(state);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path, e)),
    };
    let info: ActiveTiInfo = serde_json::from_slice(&bytes).map_err(|e| io(&path, e))?;
    if info.format != TI_STATE_FORMAT {
        return Err(io(&path, format!("unknown format {}", info.format)));
    }
    Ok(Some(info))
}

/// The TI in effect, compiled.
#[derive(Debug)]
pub struct ActiveTi {
    /// What `active.json` said (`None`: no TI yet, nothing matches).
    pub info: Option<ActiveTiInfo>,
    /// The compiled indicators (`None` without TI: nothing matches).
    pub matcher: Option<Matcher>,
}

impl ActiveTi {
    /// No TI: matches nothing.
    pub fn empty() -> ActiveTi {
        ActiveTi { info: None, matcher: None }
    }

    /// The version in effect.
    pub fn version(&self) -> Option<i64> {
        self.info.as_ref().map(|i| i.version)
    }
}

/// Loads and compiles the TI `ti/active.json` names.
pub fn load_active(state: &StateDir) -> Result<ActiveTi, TiError> {
    let Some(info) = read_active(state)? else { return Ok(ActiveTi::empty()) };
    let path = ti_dir(state).join(&info.indicators_file);
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    let matcher = Matcher::from_json(&bytes)
        .map_err(|e| TiError::Indicators { version: info.version, message: e.to_string() })?;
    Ok(ActiveTi { info: Some(info), matcher: Some(matcher) })
}

/// The TI the event sources match with, swapped whole when a new version is applied.
#[derive(Debug)]
pub struct TiHandle {
    current: RwLock<Arc<ActiveTi>>,
}

impl TiHandle {
    /// A handle holding `ti`.
    pub fn new(ti: ActiveTi) -> TiHandle {
        TiHandle { current: RwLock::new(Arc::new(ti)) }
    }

    /// The TI in effect now (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<ActiveTi> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The version in effect.
    pub fn version(&self) -> Option<i64> {
        self.current().version()
    }

    fn set(&self, ti: ActiveTi) {
        let ti = Arc::new(ti);
        match self.current.write() {
            Ok(mut g) => *g = ti,
            Err(p) => *p.into_inner() = ti,
        }
    }

    /// Swaps in the TI of `ti/active.json` if it differs from the one in effect; returns the
    /// new version when it swapped. A file that cannot be loaded leaves the old TI in effect.
    pub fn reload(&self, state: &StateDir) -> Result<Option<i64>, TiError> {
        let on_disk = read_active(state)?;
        let cur = self.current();
        if on_disk.as_ref().map(|i| (i.version, &i.package_sha256))
            == cur.info.as_ref().map(|i| (i.version, &i.package_sha256))
        {
            return Ok(None);
        }
        let ti = load_active(state)?;
        let v = ti.version();
        if let Some(info) = &ti.info {
            tracing::info!(
                ti_version = info.version,
                indicators = info.indicator_count,
                "threat intelligence in effect"
            );
        }
        self.set(ti);
        Ok(v)
    }
}

/// The activation file's package-signing keys.
pub fn trusted_keys(keys: &[String]) -> Result<Vec<PublicKey>, TiError> {
    let keys = PublicKey::parse_all(keys).map_err(|e| TiError::Keys(e.to_string()))?;
    if keys.is_empty() {
        return Err(TiError::Keys("the activation file named no key; TI packages cannot be verified".into()));
    }
    Ok(keys)
}

/// Verifies a TI package (`bytes`) against `keys` and installs it as the active TI of
/// `state`, unless its version is not above the active one. Returns what is now in effect.
pub fn apply_package(
    state: &StateDir,
    bytes: &[u8],
    keys: &[PublicKey],
    now: Timestamp,
) -> Result<ActiveTiInfo, TiError> {
    let v: VerifiedTi = picket_package::verify_ti(bytes, keys, &TiLimits::default())?;
    if let Some(active) = read_active(state)?
        && v.version <= active.version
    {
        return Err(TiError::NotNewer { offered: v.version, active: active.version });
    }
    let matcher = Matcher::from_json(&v.indicators_json)
        .map_err(|e| TiError::Indicators { version: v.version, message: e.to_string() })?;
    let info = ActiveTiInfo {
        format: TI_STATE_FORMAT,
        version: v.version,
        package_sha256: v.package_sha256.clone(),
        key_id: v.key_id.clone(),
        signed_at: v.signed_at,
        applied_at: now,
        indicator_count: matcher.indicators().len() as u64,
        indicators_file: format!("indicators-{}.json", v.version),
    };
    drop(matcher);
    let dir = ti_dir(state);
    let file = dir.join(&info.indicators_file);
    write_atomic(&file, &v.indicators_json, false).map_err(|e| io(&file, e))?;
    let mut body = serde_json::to_vec_pretty(&info).map_err(|e| io(&active_path(state), e))?;
    body.push(b'\n');
    write_atomic(&active_path(state), &body, false).map_err(|e| io(&active_path(state), e))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    // Older indicators files are no longer named by `active.json`.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("indicators-") && name.ends_with(".json") && name != info.indicators_file.as_str() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_package::{SecretKey, TiBuildOptions, build_ti};

    fn package(key: &SecretKey, version: i64, indicators: &str) -> Vec<u8> {
        let count = picket_ti::parse_indicators(indicators.as_bytes()).map(|v| v.len() as u64).unwrap_or(0);
        let opts = TiBuildOptions { version, indicator_count: count, signed_at: Timestamp(1_800_000_000_000) };
        build_ti(indicators.as_bytes(), &opts, key).unwrap()
    }

    const IND: &str = r#"{"indicators":[{"type":"ip","value":"203.0.113.7","severity":"high"}]}"#;

    #[test]
    fn applies_newer_packages_only_and_reloads_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let key = SecretKey::generate().unwrap();
        let keys = vec![key.public()];
        let handle = TiHandle::new(load_active(&state).unwrap());
        assert_eq!(handle.version(), None);
        let info = apply_package(&state, &package(&key, 3, IND), &keys, Timestamp(1)).unwrap();
        assert_eq!((info.version, info.indicator_count), (3, 1));
        assert_eq!(handle.reload(&state).unwrap(), Some(3));
        assert_eq!(handle.reload(&state).unwrap(), None, "unchanged: no reload");
        let mut out = Vec::new();
        let cur = handle.current();
        cur.matcher.as_ref().unwrap().match_str("203.0.113.7", &mut out);
        assert_eq!(out.len(), 1);
        for v in [3, 2] {
            let e = apply_package(&state, &package(&key, v, IND), &keys, Timestamp(1)).unwrap_err();
            assert!(matches!(e, TiError::NotNewer { active: 3, .. }), "{e}");
        }
        let other = SecretKey::generate().unwrap();
        let e = apply_package(&state, &package(&other, 4, IND), &keys, Timestamp(1)).unwrap_err();
        assert!(matches!(e, TiError::Refused(_)), "{e}");
        let mut tampered = package(&key, 4, IND);
        let at = tampered.windows(11).position(|w| w == b"203.0.113.7").unwrap();
        tampered[at] = b'1';
        let e = apply_package(&state, &tampered, &keys, Timestamp(1)).unwrap_err();
        assert!(matches!(e, TiError::Refused(_)), "{e}");
        assert_eq!(read_active(&state).unwrap().unwrap().version, 3, "refusals leave the TI in effect");
        let bad = package(&key, 5, r#"{"indicators":[{"type":"ip","value":"nope","severity":"high"}]}"#);
        assert!(matches!(apply_package(&state, &bad, &keys, Timestamp(1)), Err(TiError::Indicators { .. })));
        apply_package(&state, &package(&key, 6, IND), &keys, Timestamp(1)).unwrap();
        assert_eq!(handle.reload(&state).unwrap(), Some(6));
        let files: Vec<String> = std::fs::read_dir(dir.path().join("ti"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!files.contains(&"indicators-3.json".to_string()), "{files:?}");
    }
}
