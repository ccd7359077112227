//! Signed release packages of Picket: Ed25519 keys (`keys`), building and signing a package
//! from a directory (`build`), verifying one against trusted keys (`verify`), and extracting
//! it safely (`extract`). Used by `picket release`, by the control plane when a package is
//! published, and by `picket-updater` before it installs one. Threat-intelligence packages
//! (`ti`: `picket ti`, the control plane, `picket-sensor`) use the same keys with their own
//! entries and signature context.
//!
//! A package is an uncompressed tar holding exactly, in this order, `manifest.json` (a
//! `picket_proto::releases::Manifest`), `manifest.sig` (the Ed25519 signature of
//! `SIGNATURE_CONTEXT` + the manifest bytes, naming its key) and `payload.tar.zst` (the files,
//! whose size and SHA-256 the manifest carries). So the signature is checked before anything
//! is decompressed, and every extracted byte is covered by it.
//!
//! This crate must not depend on tokio, the server, the store or the sensor (the updater, which
//! must keep working when those break, links it), must not read the clock (time is a
//! parameter), and must never create anything but regular files and directories inside the
//! directory it extracts to.

mod build;
pub mod error;
mod extract;
pub mod keys;
pub mod ti;
mod verify;

pub use build::{BuildOptions, build};
pub use error::{PackageError, Result};
pub use extract::{check_payload, extract, extract_file};
pub use keys::{PublicKey, SecretKey};
pub use picket_proto::releases::{MANIFEST_FORMAT, Manifest, ManifestFile};
pub use ti::{TiBuildOptions, TiLimits, TiManifest, VerifiedTi, build_ti, verify_ti, verify_ti_file, write_ti};
pub use verify::{Verified, verify, verify_file};

/// Name of the manifest entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Name of the signature entry.
pub const SIGNATURE_ENTRY: &str = "manifest.sig";
/// Name of the payload entry.
pub const PAYLOAD_ENTRY: &str = "payload.tar.zst";
/// Prefix of the signed message (domain separation: a package signature is never valid as
/// anything else, nor the reverse).
pub const SIGNATURE_CONTEXT: &[u8] = b"picket-package-v1\n";
/// Mode of executable files and of directories.
pub const MODE_EXEC: u32 = 0o755;
/// Mode of other files.
pub const MODE_FILE: u32 = 0o644;

/// Caps that bound what reading a package can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest package file.
    pub max_package_bytes: u64,
    /// Largest manifest.
    pub max_manifest_bytes: u64,
    /// Most payload entries (files and directories).
    pub max_entries: u64,
    /// Most bytes the files may add up to once extracted.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_package_bytes: 512 << 20,
            max_manifest_bytes: 4 << 20,
            max_entries: 20_000,
            max_unpacked_bytes: 2 << 30,
        }
    }
}

/// The trusted keys and the moment to judge expiry at.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Keys a package may be signed by.
    pub keys: Vec<PublicKey>,
    /// Now (milliseconds since the epoch), passed in: this crate never reads the clock.
    pub now: picket_domain::Timestamp,
    /// Size and count caps.
    pub limits: Limits,
}

/// Reads `R` and feeds every byte to a SHA-256, counting them.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> HashingReader<R> {
        HashingReader { inner, hasher: <sha2::Sha256 as sha2::Digest>::new(), count: 0 }
    }

    /// Bytes read so far and their SHA-256 (hex).
    pub(crate) fn finish(self) -> (u64, String) {
        (self.count, hex::encode(sha2::Digest::finalize(self.hasher)))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads at most `limit` bytes of `R`; past that it fails and records that it did, so a
/// too-large package is reported as such whatever the reader above makes of the error.
pub(crate) struct Capped<R> {
    inner: R,
    left: u64,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R> Capped<R> {
    pub(crate) fn new(inner: R, limit: u64) -> (Capped<R>, std::rc::Rc<std::cell::Cell<bool>>) {
        let hit = std::rc::Rc::new(std::cell::Cell::new(false));
        (Capped { inner, left: limit, hit: hit.clone() }, hit)
    }
}

impl<R: std::io::Read> std::io::Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.hit.set(true);
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "the package is over the size limit"));
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Checks a manifest path: relative, `/`-separated, each part a plain name.
pub(crate) fn check_rel_path(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component"),
            "." | ".." => return Err("'.' or '..' component"),
            p if p.contains('\\') || p.contains('\0') => return Err("backslash or NUL in a name"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
