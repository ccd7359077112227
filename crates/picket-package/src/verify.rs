//! Verifying a package: read the outer tar in one pass (nothing is decompressed), check the
//! signature of the manifest against the trusted keys before parsing it, check the manifest,
//! stream the payload through SHA-256 against the manifest's digest, hash the whole file (the
//! digest sensors download by), and judge expiry last.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use picket_domain::Version;

use crate::build::SignatureFile;
use crate::error::{PackageError, Result};
use crate::{
    Capped, HashingReader, Limits, MANIFEST_ENTRY, MANIFEST_FORMAT, MODE_EXEC, MODE_FILE, Manifest, PAYLOAD_ENTRY,
    SIGNATURE_CONTEXT, SIGNATURE_ENTRY, Trust, check_rel_path,
};

/// Largest `manifest.sig` accepted.
const MAX_SIGNATURE_BYTES: u64 = 4096;

/// A package whose signature, manifest and payload digest were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The key that signed it.
    pub key_id: String,
    /// SHA-256 (hex) of the whole package file.
    pub package_sha256: String,
    /// Size of the whole package file.
    pub package_size: u64,
}

impl Verified {
    /// Refuses a package that needs a newer updater than `have`.
    pub fn check_updater(&self, have: Version) -> Result<()> {
        if have < self.manifest.min_updater_version {
            return Err(PackageError::UpdaterTooOld {
                version: self.manifest.version,
                needed: self.manifest.min_updater_version,
                have,
            });
        }
        Ok(())
    }
}

fn malformed(what: impl std::fmt::Display) -> PackageError {
    PackageError::Malformed(what.to_string())
}

/// The next entry of the outer tar, which must be a regular file named `name`.
pub(crate) fn next_entry<'a, R: Read>(entries: &mut tar::Entries<'a, R>, name: &str) -> Result<tar::Entry<'a, R>> {
    let entry = entries
        .next()
        .ok_or_else(|| malformed(format!("{name} is missing")))?
        .map_err(|e| malformed(format!("reading {name}: {e}")))?;
    if entry.path_bytes().as_ref() != name.as_bytes() {
        return Err(malformed(format!(
            "expected {name} here, found {:?} (entries must be {MANIFEST_ENTRY}, {SIGNATURE_ENTRY}, {PAYLOAD_ENTRY})",
            String::from_utf8_lossy(&entry.path_bytes())
        )));
    }
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(malformed(format!("{name} is not a regular file")));
    }
    Ok(entry)
}

/// Size of an entry from its header, refused above `limit`.
pub(crate) fn entry_size<R: Read>(entry: &tar::Entry<'_, R>, name: &str, limit: u64) -> Result<u64> {
    let size = entry.header().size().map_err(|e| malformed(format!("{name}: {e}")))?;
    if size > limit {
        return Err(PackageError::TooLarge { what: name.to_string(), limit });
    }
    Ok(size)
}

fn read_small<R: Read>(entry: tar::Entry<'_, R>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let size = entry_size(&entry, name, limit)?;
    let mut buf = Vec::with_capacity(size as usize);
    entry.take(limit).read_to_end(&mut buf).map_err(|e| malformed(format!("reading {name}: {e}")))?;
    Ok(buf)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks what the signature cannot: that the signed manifest is one this program can obey.
pub(crate) fn check_manifest(m: &Manifest, limits: &Limits) -> Result<()> {
    let bad = |s: String| Err(PackageError::InvalidManifest(s));
    if m.format != MANIFEST_FORMAT {
        return bad(format!(
            "format {} is not understood here (this program reads format {MANIFEST_FORMAT})",
            m.format
        ));
    }
    if !is_sha256_hex(&m.payload_sha256) {
        return bad("payload_sha256 is not a SHA-256 in lower-case hex".into());
    }
    if m.payload_size > limits.max_package_bytes {
        return Err(PackageError::TooLarge { what: "the payload".into(), limit: limits.max_package_bytes });
    }
    if m.files.len() as u64 > limits.max_entries {
        return Err(PackageError::TooManyEntries { limit: limits.max_entries });
    }
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    for f in &m.files {
        if let Err(reason) = check_rel_path(&f.path) {
            return Err(PackageError::UnsafePath { path: f.path.clone(), reason });
        }
        if !seen.insert(f.path.as_str()) {
            return bad(format!("{:?} is listed twice", f.path));
        }
        if !is_sha256_hex(&f.sha256) {
            return bad(format!("{:?}: sha256 is not a SHA-256 in lower-case hex", f.path));
        }
        if f.mode != MODE_EXEC && f.mode != MODE_FILE {
            return bad(format!("{:?}: mode {:o} is neither 755 nor 644", f.path, f.mode));
        }
        total = total.saturating_add(f.size);
    }
    if total > limits.max_unpacked_bytes {
        return Err(PackageError::TooLarge { what: "the unpacked files".into(), limit: limits.max_unpacked_bytes });
    }
    match m.files.iter().find(|f| f.path == m.entrypoint) {
        None => bad(format!("the entry point {:?} is not one of its files", m.entrypoint)),
        Some(f) if f.mode != MODE_EXEC => bad(format!("the entry point {:?} is not executable", m.entrypoint)),
        Some(_) => Ok(()),
    }
}

/// Checks the signature (`sig_bytes`) of `manifest_bytes` against the trusted keys.
fn check_signature(manifest_bytes: &[u8], sig_bytes: &[u8], trust: &Trust) -> Result<String> {
    let sig: SignatureFile =
        serde_json::from_slice(sig_bytes).map_err(|e| malformed(format!("{SIGNATURE_ENTRY}: {e}")))?;
    if sig.algorithm != "ed25519" {
        return Err(malformed(format!("{SIGNATURE_ENTRY}: unknown algorithm {:?}", sig.algorithm)));
    }
    let key = trust
        .keys
        .iter()
        .find(|k| k.key_id() == sig.key_id)
        .ok_or_else(|| PackageError::UnknownKey { key_id: sig.key_id.clone() })?;
    let bad = || PackageError::BadSignature { key_id: sig.key_id.clone() };
    let raw = base64::engine::general_purpose::STANDARD.decode(&sig.signature).map_err(|_| bad())?;
    let raw = <[u8; 64]>::try_from(raw.as_slice()).map_err(|_| bad())?;
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(manifest_bytes);
    if !key.verifies(&message, &raw) {
        return Err(bad());
    }
    Ok(sig.key_id)
}

/// Verifies the package read from `package` against `trust`. An authentic package whose
/// manifest expired is `PackageError::Expired` (which carries it).
pub fn verify<R: Read>(package: R, trust: &Trust) -> Result<Verified> {
    let (capped, hit) = Capped::new(package, trust.limits.max_package_bytes);
    match verify_capped(capped, trust) {
        Err(e) if hit.get() && !e.is_expired() => {
            Err(PackageError::TooLarge { what: "the package".into(), limit: trust.limits.max_package_bytes })
        }
        other => other,
    }
}

fn verify_capped<R: Read>(package: Capped<R>, trust: &Trust) -> Result<Verified> {
    let limits = trust.limits;
    let mut hr = HashingReader::new(package);
    let (manifest, key_id) = {
        let mut archive = tar::Archive::new(&mut hr);
        let mut entries = archive.entries().map_err(malformed)?;
        let manifest_bytes =
            read_small(next_entry(&mut entries, MANIFEST_ENTRY)?, MANIFEST_ENTRY, limits.max_manifest_bytes)?;
        let sig_bytes = read_small(next_entry(&mut entries, SIGNATURE_ENTRY)?, SIGNATURE_ENTRY, MAX_SIGNATURE_BYTES)?;
        let key_id = check_signature(&manifest_bytes, &sig_bytes, trust)?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::InvalidManifest(e.to_string()))?;
        check_manifest(&manifest, &limits)?;
        let payload = next_entry(&mut entries, PAYLOAD_ENTRY)?;
        let size = entry_size(&payload, PAYLOAD_ENTRY, limits.max_package_bytes)?;
        if size != manifest.payload_size {
            return Err(PackageError::DigestMismatch(format!(
                "the payload has {size} bytes; the manifest says {}",
                manifest.payload_size
            )));
        }
        let mut ph = HashingReader::new(payload);
        std::io::copy(&mut ph, &mut std::io::sink()).map_err(|e| malformed(format!("reading {PAYLOAD_ENTRY}: {e}")))?;
        let (n, sha) = ph.finish();
        if n != size || sha != manifest.payload_sha256 {
            return Err(PackageError::DigestMismatch("the payload does not match the signed manifest".into()));
        }
        if let Some(extra) = entries.next() {
            let name = extra.map(|e| String::from_utf8_lossy(&e.path_bytes()).into_owned()).unwrap_or_default();
            return Err(malformed(format!("unexpected entry {name:?} after {PAYLOAD_ENTRY}")));
        }
        (manifest, key_id)
    };
    std::io::copy(&mut hr, &mut std::io::sink()).map_err(PackageError::io("reading the package"))?;
    let (package_size, package_sha256) = hr.finish();
    let verified = Verified { manifest, key_id, package_sha256, package_size };
    if trust.now >= verified.manifest.expires_at {
        return Err(PackageError::Expired { expired_at: verified.manifest.expires_at, verified: Box::new(verified) });
    }
    Ok(verified)
}

/// `verify` of the package file at `path`.
pub fn verify_file(path: &Path, trust: &Trust) -> Result<Verified> {
    let f = std::fs::File::open(path).map_err(PackageError::io(format!("opening {}", path.display())))?;
    verify(std::io::BufReader::with_capacity(1 << 16, f), trust)
}
