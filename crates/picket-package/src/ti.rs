//! Signed threat-intelligence (TI) packages: the indicators file of the sensor's detection
//! engine, signed with the release keys (`keys`) under a signature context of its own, so a TI
//! signature never verifies as a release signature, nor the reverse.
//!
//! A TI package is an uncompressed tar holding exactly, in this order, `ti-manifest.json` (a
//! [`TiManifest`]: format, kind, integer version, SHA-256 and size of the indicators file,
//! indicator count, signing time, key id), `ti-manifest.sig` (the Ed25519 signature of
//! [`TI_SIGNATURE_CONTEXT`] + the manifest bytes, naming its key) and `indicators.json` (the
//! indicators file, byte for byte). The entry names differ from a release's too, so each
//! verifier refuses the other's package before looking at any signature.
//!
//! This module checks the package, not the indicators: callers that must know the file is
//! usable (`picket ti sign`, the control plane at publish, the sensor before applying) parse it
//! with `picket_ti::parse_indicators`.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use picket_domain::Timestamp;
use serde::{Deserialize, Serialize};

use crate::build::SignatureFile;
use crate::error::{PackageError, Result};
use crate::keys::{PublicKey, SecretKey};
use crate::verify::{entry_size, next_entry};
use crate::{MODE_FILE, sha256_hex};

/// Name of the TI manifest entry.
pub const TI_MANIFEST_ENTRY: &str = "ti-manifest.json";
/// Name of the TI signature entry.
pub const TI_SIGNATURE_ENTRY: &str = "ti-manifest.sig";
/// Name of the indicators entry.
pub const TI_INDICATORS_ENTRY: &str = "indicators.json";
/// Prefix of the signed message of a TI package (domain separation from release packages,
/// whose context is `SIGNATURE_CONTEXT`).
pub const TI_SIGNATURE_CONTEXT: &[u8] = b"picket-ti-package-v1\n";
/// The TI manifest format this code writes and reads.
pub const TI_MANIFEST_FORMAT: u32 = 1;
/// The manifest's `kind`.
pub const TI_MANIFEST_KIND: &str = "picket-ti";

/// Largest `ti-manifest.sig` accepted.
const MAX_SIGNATURE_BYTES: u64 = 4096;

/// The signed description of a TI package (`ti-manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiManifest {
    /// Manifest format ([`TI_MANIFEST_FORMAT`]).
    pub format: u32,
    /// Always [`TI_MANIFEST_KIND`].
    pub kind: String,
    /// TI version: an integer above 0 that only goes up.
    pub version: i64,
    /// SHA-256 (lower-case hex) of `indicators.json`.
    pub indicators_sha256: String,
    /// Size of `indicators.json` in bytes.
    pub indicators_size: u64,
    /// How many indicators the file holds.
    pub indicator_count: u64,
    /// When it was signed.
    #[serde(with = "picket_proto::time::rfc3339")]
    pub signed_at: Timestamp,
    /// Id of the signing key (`PublicKey::key_id`), also named by the signature.
    pub key_id: String,
}

/// Caps that bound what reading a TI package can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TiLimits {
    /// Largest package file (and so largest indicators file).
    pub max_package_bytes: u64,
    /// Largest manifest.
    pub max_manifest_bytes: u64,
}

impl Default for TiLimits {
    fn default() -> TiLimits {
        TiLimits { max_package_bytes: 256 << 20, max_manifest_bytes: 64 << 10 }
    }
}

/// What to sign into a TI package besides the indicators file.
#[derive(Debug, Clone)]
pub struct TiBuildOptions {
    /// The TI version (> 0).
    pub version: i64,
    /// How many indicators the file holds (the caller parsed it).
    pub indicator_count: u64,
    /// When it is signed (now).
    pub signed_at: Timestamp,
}

/// A TI package whose signature, manifest and indicators digest were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTi {
    /// The signed manifest.
    pub manifest: TiManifest,
    /// The TI version (from the manifest).
    pub version: i64,
    /// When it was signed (from the manifest).
    pub signed_at: Timestamp,
    /// The key that signed it.
    pub key_id: String,
    /// How many indicators it says it carries (from the manifest).
    pub indicator_count: u64,
    /// The indicators file, byte for byte as signed.
    pub indicators_json: Vec<u8>,
    /// SHA-256 (hex) of the whole package file (what sensors download it by).
    pub package_sha256: String,
    /// Size of the whole package file.
    pub package_size: u64,
}

fn malformed(what: impl std::fmt::Display) -> PackageError {
    PackageError::Malformed(what.to_string())
}

fn tar_header(path: &str, size: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(MODE_FILE);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_path(path).map_err(|e| PackageError::Input(format!("{path:?} cannot be stored in a tar: {e}")))?;
    h.set_cksum();
    Ok(h)
}

/// Builds a TI package of `indicators` (the indicators file's bytes) signed with `key`, in
/// memory. The caller validates the indicators first (`picket_ti::parse_indicators`) and
/// passes their count.
pub fn build_ti(indicators: &[u8], opts: &TiBuildOptions, key: &SecretKey) -> Result<Vec<u8>> {
    if opts.version <= 0 {
        return Err(PackageError::Input(format!("a TI version is an integer above 0, not {}", opts.version)));
    }
    let manifest = TiManifest {
        format: TI_MANIFEST_FORMAT,
        kind: TI_MANIFEST_KIND.into(),
        version: opts.version,
        indicators_sha256: sha256_hex(indicators),
        indicators_size: indicators.len() as u64,
        indicator_count: opts.indicator_count,
        signed_at: opts.signed_at,
        key_id: key.public().key_id(),
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| PackageError::Input(format!("manifest: {e}")))?;
    assemble_ti(&manifest_bytes, key, indicators)
}

/// The package tar of exactly these manifest bytes (signed with `key`) and indicators; tests
/// use it to sign crafted manifests.
pub(crate) fn assemble_ti(manifest_bytes: &[u8], key: &SecretKey, indicators: &[u8]) -> Result<Vec<u8>> {
    let mut message = TI_SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(manifest_bytes);
    let sig = SignatureFile {
        algorithm: "ed25519".into(),
        key_id: key.public().key_id(),
        signature: base64::engine::general_purpose::STANDARD.encode(key.sign(&message)),
    };
    let sig_bytes = serde_json::to_vec(&sig).map_err(|e| PackageError::Input(format!("signature: {e}")))?;
    let mut b = tar::Builder::new(Vec::with_capacity(indicators.len() + 8192));
    let io = |what: &'static str| PackageError::io(format!("writing {what} into the TI package"));
    b.append(&tar_header(TI_MANIFEST_ENTRY, manifest_bytes.len() as u64)?, manifest_bytes)
        .map_err(io("the manifest"))?;
    b.append(&tar_header(TI_SIGNATURE_ENTRY, sig_bytes.len() as u64)?, &sig_bytes[..]).map_err(io("the signature"))?;
    b.append(&tar_header(TI_INDICATORS_ENTRY, indicators.len() as u64)?, indicators).map_err(io("the indicators"))?;
    b.into_inner().map_err(io("the end"))
}

/// `build_ti`, written to `out` (which must not exist) through a temp file beside it, so the
/// package appears only when complete. Returns the package bytes' SHA-256 and size.
pub fn write_ti(indicators: &[u8], opts: &TiBuildOptions, key: &SecretKey, out: &Path) -> Result<(String, u64)> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(PackageError::Input(format!(
            "{} already exists; remove it or choose another --out",
            out.display()
        )));
    }
    let bytes = build_ti(indicators, opts, key)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(PackageError::io(format!("creating a temp file in {}", dir.display())))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(PackageError::io(format!("writing {}", out.display())))?;
    tmp.as_file().sync_all().map_err(PackageError::io(format!("writing {}", out.display())))?;
    tmp.persist_noclobber(out)
        .map_err(|e| PackageError::Io { context: format!("writing {}", out.display()), source: e.error })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644))
        .map_err(PackageError::io(format!("writing {}", out.display())))?;
    Ok((sha256_hex(&bytes), bytes.len() as u64))
}

fn read_entry<R: Read>(entry: tar::Entry<'_, R>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let size = entry_size(&entry, name, limit)?;
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.take(limit).read_to_end(&mut buf).map_err(|e| malformed(format!("reading {name}: {e}")))?;
    if buf.len() as u64 != size {
        return Err(malformed(format!("{name} is cut short")));
    }
    Ok(buf)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks the signature (`sig_bytes`) of `manifest_bytes` against `keys`; returns the key id.
fn check_ti_signature(manifest_bytes: &[u8], sig_bytes: &[u8], keys: &[PublicKey]) -> Result<String> {
    let sig: SignatureFile =
        serde_json::from_slice(sig_bytes).map_err(|e| malformed(format!("{TI_SIGNATURE_ENTRY}: {e}")))?;
    if sig.algorithm != "ed25519" {
        return Err(malformed(format!("{TI_SIGNATURE_ENTRY}: unknown algorithm {:?}", sig.algorithm)));
    }
    let key = keys
        .iter()
        .find(|k| k.key_id() == sig.key_id)
        .ok_or_else(|| PackageError::UnknownKey { key_id: sig.key_id.clone() })?;
    let bad = || PackageError::BadSignature { key_id: sig.key_id.clone() };
    let raw = base64::engine::general_purpose::STANDARD.decode(&sig.signature).map_err(|_| bad())?;
    let raw = <[u8; 64]>::try_from(raw.as_slice()).map_err(|_| bad())?;
    let mut message = TI_SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(manifest_bytes);
    if !key.verifies(&message, &raw) {
        return Err(bad());
    }
    Ok(sig.key_id)
}

/// Checks what the signature cannot: that the signed manifest is one this program can obey.
fn check_ti_manifest(m: &TiManifest, key_id: &str) -> Result<()> {
    let bad = |s: String| Err(PackageError::InvalidManifest(s));
    if m.format != TI_MANIFEST_FORMAT {
        return bad(format!(
            "TI manifest format {} is not understood here (this program reads format {TI_MANIFEST_FORMAT})",
            m.format
        ));
    }
    if m.kind != TI_MANIFEST_KIND {
        return bad(format!("kind {:?} is not {TI_MANIFEST_KIND:?}", m.kind));
    }
    if m.version <= 0 {
        return bad(format!("TI version {} is not above 0", m.version));
    }
    if !is_sha256_hex(&m.indicators_sha256) {
        return bad("indicators_sha256 is not a SHA-256 in lower-case hex".into());
    }
    if m.key_id != key_id {
        return bad(format!("the manifest names key {} but the signature key {key_id}", m.key_id));
    }
    Ok(())
}

/// Verifies a TI package (its whole file in `bytes`) against the trusted `keys`: the layout,
/// the signature of the manifest (before the manifest is parsed), the manifest, and the
/// indicators' size and SHA-256. Unknown key: `PackageError::UnknownKey`; tampered or forged:
/// `BadSignature` or `DigestMismatch`; over `limits`: `TooLarge`; a release package or other
/// file: `Malformed`.
pub fn verify_ti(bytes: &[u8], keys: &[PublicKey], limits: &TiLimits) -> Result<VerifiedTi> {
    if bytes.len() as u64 > limits.max_package_bytes {
        return Err(PackageError::TooLarge { what: "the TI package".into(), limit: limits.max_package_bytes });
    }
    let mut archive = tar::Archive::new(bytes);
    let mut entries = archive.entries().map_err(malformed)?;
    let manifest_bytes =
        read_entry(next_entry(&mut entries, TI_MANIFEST_ENTRY)?, TI_MANIFEST_ENTRY, limits.max_manifest_bytes)?;
    let sig_bytes = read_entry(next_entry(&mut entries, TI_SIGNATURE_ENTRY)?, TI_SIGNATURE_ENTRY, MAX_SIGNATURE_BYTES)?;
    let key_id = check_ti_signature(&manifest_bytes, &sig_bytes, keys)?;
    let manifest: TiManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::InvalidManifest(e.to_string()))?;
    check_ti_manifest(&manifest, &key_id)?;
    let entry = next_entry(&mut entries, TI_INDICATORS_ENTRY)?;
    let size = entry_size(&entry, TI_INDICATORS_ENTRY, limits.max_package_bytes)?;
    if size != manifest.indicators_size {
        return Err(PackageError::DigestMismatch(format!(
            "the indicators file has {size} bytes; the manifest says {}",
            manifest.indicators_size
        )));
    }
    let indicators_json = read_entry(entry, TI_INDICATORS_ENTRY, limits.max_package_bytes)?;
    if sha256_hex(&indicators_json) != manifest.indicators_sha256 {
        return Err(PackageError::DigestMismatch("the indicators file does not match the signed manifest".into()));
    }
    if let Some(extra) = entries.next() {
        let name = extra.map(|e| String::from_utf8_lossy(&e.path_bytes()).into_owned()).unwrap_or_default();
        return Err(malformed(format!("unexpected entry {name:?} after {TI_INDICATORS_ENTRY}")));
    }
    Ok(VerifiedTi {
        version: manifest.version,
        signed_at: manifest.signed_at,
        key_id,
        indicator_count: manifest.indicator_count,
        indicators_json,
        package_sha256: sha256_hex(bytes),
        package_size: bytes.len() as u64,
        manifest,
    })
}

/// `verify_ti` of the package file at `path` (read whole; refused unread when over the limit).
pub fn verify_ti_file(path: &Path, keys: &[PublicKey], limits: &TiLimits) -> Result<VerifiedTi> {
    let f = std::fs::File::open(path).map_err(PackageError::io(format!("opening {}", path.display())))?;
    let len = f.metadata().map_err(PackageError::io(format!("reading {}", path.display())))?.len();
    if len > limits.max_package_bytes {
        return Err(PackageError::TooLarge { what: "the TI package".into(), limit: limits.max_package_bytes });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(limits.max_package_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(PackageError::io(format!("reading {}", path.display())))?;
    verify_ti(&bytes, keys, limits)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{BuildOptions, Limits, SIGNATURE_CONTEXT, Trust};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);
    const INDICATORS: &[u8] = br#"{"indicators": [{"type": "ip", "value": "10.0.0.1", "severity": "high"}]}"#;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    fn opts(version: i64) -> TiBuildOptions {
        TiBuildOptions { version, indicator_count: 1, signed_at: NOW }
    }

    fn limits() -> TiLimits {
        TiLimits::default()
    }

    #[test]
    fn a_built_ti_package_verifies_with_its_manifest() {
        let k = key(1);
        let pkg = build_ti(INDICATORS, &opts(7), &k).unwrap();
        let v = verify_ti(&pkg, &[key(2).public(), k.public()], &limits()).unwrap();
        assert_eq!((v.version, v.signed_at, v.indicator_count), (7, NOW, 1));
        assert_eq!(v.key_id, k.public().key_id());
        assert_eq!(v.manifest.key_id, v.key_id);
        assert_eq!(v.indicators_json, INDICATORS);
        assert_eq!(v.package_sha256, sha256_hex(&pkg));
        assert_eq!(v.package_size, pkg.len() as u64);
        assert_eq!(v.manifest.indicators_size, INDICATORS.len() as u64);
        // Deterministic: the same input signs to the same bytes (Ed25519 is deterministic).
        assert_eq!(build_ti(INDICATORS, &opts(7), &k).unwrap(), pkg);
    }

    #[test]
    fn unknown_keys_and_bad_versions_are_refused() {
        let pkg = build_ti(INDICATORS, &opts(1), &key(1)).unwrap();
        let e = verify_ti(&pkg, &[key(2).public()], &limits()).unwrap_err();
        assert!(matches!(e, PackageError::UnknownKey { .. }), "{e}");
        assert!(build_ti(INDICATORS, &opts(0), &key(1)).is_err());
        assert!(build_ti(INDICATORS, &opts(-3), &key(1)).is_err());
        // A signed manifest with version 0 is refused too.
        let k = key(1);
        let m = TiManifest {
            format: TI_MANIFEST_FORMAT,
            kind: TI_MANIFEST_KIND.into(),
            version: 0,
            indicators_sha256: sha256_hex(INDICATORS),
            indicators_size: INDICATORS.len() as u64,
            indicator_count: 1,
            signed_at: NOW,
            key_id: k.public().key_id(),
        };
        let pkg = assemble_ti(&serde_json::to_vec(&m).unwrap(), &k, INDICATORS).unwrap();
        let e = verify_ti(&pkg, &[k.public()], &limits()).unwrap_err();
        assert!(matches!(e, PackageError::InvalidManifest(_)), "{e}");
    }

    /// Replaces the first occurrence of `from` in `bytes` by `to` (same length).
    fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = bytes.to_vec();
        out[at..at + from.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn tampering_is_refused() {
        let k = key(1);
        let keys = [k.public()];
        let pkg = build_ti(INDICATORS, &opts(5), &k).unwrap();
        // The indicators changed (tar header checksums do not cover contents).
        let e = verify_ti(&patch(&pkg, b"10.0.0.1", b"10.0.0.2"), &keys, &limits()).unwrap_err();
        assert!(matches!(e, PackageError::DigestMismatch(_)), "{e}");
        // The manifest changed: version 5 -> 9.
        let e = verify_ti(&patch(&pkg, b"\"version\": 5", b"\"version\": 9"), &keys, &limits()).unwrap_err();
        assert!(matches!(e, PackageError::BadSignature { .. }), "{e}");
        // Cut short, or garbage.
        assert!(verify_ti(&pkg[..pkg.len() / 2], &keys, &limits()).is_err());
        assert!(verify_ti(b"not a tar", &keys, &limits()).is_err());
        assert!(verify_ti(&[], &keys, &limits()).is_err());
    }

    #[test]
    fn over_the_limit_is_too_large() {
        let k = key(1);
        let pkg = build_ti(INDICATORS, &opts(5), &k).unwrap();
        let small = TiLimits { max_package_bytes: pkg.len() as u64 - 1, ..limits() };
        let e = verify_ti(&pkg, &[k.public()], &small).unwrap_err();
        assert!(matches!(e, PackageError::TooLarge { .. }), "{e}");
        let exact = TiLimits { max_package_bytes: pkg.len() as u64, ..limits() };
        verify_ti(&pkg, &[k.public()], &exact).unwrap();
    }

    #[test]
    fn ti_and_release_signatures_never_stand_for_each_other() {
        let k = key(1);
        // The contexts differ, and neither is a prefix of the other.
        assert!(!TI_SIGNATURE_CONTEXT.starts_with(SIGNATURE_CONTEXT));
        assert!(!SIGNATURE_CONTEXT.starts_with(TI_SIGNATURE_CONTEXT));
        let manifest = b"{}";
        let mut ti_msg = TI_SIGNATURE_CONTEXT.to_vec();
        ti_msg.extend_from_slice(manifest);
        let mut rel_msg = SIGNATURE_CONTEXT.to_vec();
        rel_msg.extend_from_slice(manifest);
        assert!(!k.public().verifies(&rel_msg, &k.sign(&ti_msg)));
        assert!(!k.public().verifies(&ti_msg, &k.sign(&rel_msg)));

        // A TI package is not a release package, nor the reverse.
        let tmp = tempfile::tempdir().unwrap();
        let ti_path = tmp.path().join("ti.pkg");
        write_ti(INDICATORS, &opts(3), &k, &ti_path).unwrap();
        let trust = Trust { keys: vec![k.public()], now: NOW, limits: Limits::default() };
        assert!(crate::verify_file(&ti_path, &trust).is_err());
        verify_ti_file(&ti_path, &[k.public()], &limits()).unwrap();

        let input = tmp.path().join("in");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("run"), b"#!/bin/sh\n").unwrap();
        let rel_path = tmp.path().join("rel.pkg");
        let bo = BuildOptions {
            version: "1.0.0".parse().unwrap(),
            entrypoint: "run".into(),
            created_at: NOW,
            expires_at: Timestamp(NOW.0 + 1_000_000),
            min_updater_version: "0.1.0".parse().unwrap(),
            compression_level: 3,
        };
        crate::build(&input, &bo, &k, &rel_path).unwrap();
        let e = verify_ti_file(&rel_path, &[k.public()], &limits()).unwrap_err();
        assert!(matches!(e, PackageError::Malformed(_)), "{e}");

        // A release signature transplanted into a TI package (same manifest bytes) fails.
        let ti = std::fs::read(&ti_path).unwrap();
        let v = verify_ti(&ti, &[k.public()], &limits()).unwrap();
        let m = serde_json::to_vec_pretty(&v.manifest).unwrap();
        let mut rel_msg = SIGNATURE_CONTEXT.to_vec();
        rel_msg.extend_from_slice(&m);
        let sig = SignatureFile {
            algorithm: "ed25519".into(),
            key_id: k.public().key_id(),
            signature: base64::engine::general_purpose::STANDARD.encode(k.sign(&rel_msg)),
        };
        let sig_bytes = serde_json::to_vec(&sig).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&tar_header(TI_MANIFEST_ENTRY, m.len() as u64).unwrap(), &m[..]).unwrap();
        b.append(&tar_header(TI_SIGNATURE_ENTRY, sig_bytes.len() as u64).unwrap(), &sig_bytes[..]).unwrap();
        b.append(&tar_header(TI_INDICATORS_ENTRY, INDICATORS.len() as u64).unwrap(), INDICATORS).unwrap();
        let forged = b.into_inner().unwrap();
        let e = verify_ti(&forged, &[k.public()], &limits()).unwrap_err();
        assert!(matches!(e, PackageError::BadSignature { .. }), "{e}");
    }

    #[test]
    fn write_ti_never_replaces_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("x.pkg");
        std::fs::write(&out, b"keep").unwrap();
        assert!(write_ti(INDICATORS, &opts(1), &key(1), &out).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    }
}
