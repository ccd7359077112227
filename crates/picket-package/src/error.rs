//! Why a package could not be built, verified or extracted: one `PackageError`, with messages
//! an operator can act on.

use picket_domain::{Timestamp, Version};

use crate::Verified;

/// Why a package was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a Picket package (wrong entries, order, or sizes).
    #[error("not a valid Picket package: {0}")]
    Malformed(String),
    /// A size limit was exceeded.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The payload has more entries than allowed.
    #[error("the payload has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// Signed by a key that is not trusted here.
    #[error("the package is signed by key {key_id}, which is not one of the trusted release keys")]
    UnknownKey {
        /// Id of the key named by the signature.
        key_id: String,
    },
    /// The signature does not match the manifest (tampered manifest or forged signature).
    #[error("bad signature: the manifest was not signed by key {key_id} (tampered or forged)")]
    BadSignature {
        /// Id of the key named by the signature.
        key_id: String,
    },
    /// The manifest is signed but unusable (unknown format, bad paths, missing entry point).
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// The package is authentic but its manifest expired: it must not be installed as a new
    /// update. This never means a running sensor should stop.
    #[error("package {} expired at {}: not offered as an update any more", .verified.manifest.version, picket_proto::time::format_ts(*.expired_at))]
    Expired {
        /// When it expired.
        expired_at: Timestamp,
        /// The verified package, for callers that may still use it (e.g. a rollback).
        verified: Box<Verified>,
    },
    /// This updater is older than the package requires.
    #[error("package {version} needs picket-updater {needed} or newer; this one is {have}")]
    UpdaterTooOld {
        /// Package version.
        version: Version,
        /// The minimum it names.
        needed: Version,
        /// This updater's version.
        have: Version,
    },
    /// Contents do not match their signed digest (tampered payload or file).
    #[error("digest mismatch: {0}")]
    DigestMismatch(String),
    /// A path in the payload could leave the target directory or is not a plain relative path.
    #[error("unsafe path {path:?} in the payload: {reason}")]
    UnsafePath {
        /// The path as found.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An entry that is neither a regular file nor a directory (symlink, hard link, device...).
    #[error("{path:?} in the payload is a {kind}; only regular files and directories are allowed")]
    ForbiddenEntry {
        /// The path.
        path: String,
        /// What kind of entry it is.
        kind: String,
    },
    /// A payload file that the manifest does not list.
    #[error("{0:?} is in the payload but not in the signed manifest")]
    UnexpectedFile(String),
    /// A file the manifest lists but the payload lacks.
    #[error("{0:?} is in the manifest but missing from the payload")]
    MissingFile(String),
    /// The same path twice in the payload.
    #[error("{0:?} appears twice in the payload")]
    DuplicateEntry(String),
    /// Extraction would replace an existing directory.
    #[error("{0} already exists; extraction never overwrites")]
    DestinationExists(String),
    /// The input to `build` is unusable (a symlink, a missing entry point, ...).
    #[error("{0}")]
    Input(String),
    /// A key file could not be read as a key.
    #[error("{0}")]
    Key(String),
}

impl PackageError {
    /// Whether this is only an expired manifest: an authentic package that must not be taken
    /// as a new update, while whatever runs keeps running.
    pub fn is_expired(&self) -> bool {
        matches!(self, PackageError::Expired { .. })
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PackageError {
        let context = context.into();
        move |source| PackageError::Io { context, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = PackageError> = std::result::Result<T, E>;
