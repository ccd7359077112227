//! Releases: publishing a signed package (verified here against the keys of
//! `--release-key-pub`, then stored with its bytes so every replica serves it), listing
//! releases, and reading a package's bytes for sensors.
//!
//! Verification runs on the blocking pool (hashing and decompressing a large package takes
//! CPU): the signature must be by a trusted key, the payload must match the signed digest,
//! every file must match its signed SHA-256, and the manifest must not be expired. The
//! version must be above the current release; the store checks that under a lock.

use bytes::Bytes;
use picket_package::{Limits, PackageError, PublicKey, Trust};
use picket_proto::releases::{ReleaseList, ReleaseView};
use picket_store::{PublishError, Release};

use super::{App, AppError, AppResult};
use crate::auth::{Operator, Viewer};

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The package failed verification (signature, key, digest, manifest, expiry, size).
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The server trusts no release key.
    #[error("this server trusts no release key: start picket serve with --release-key-pub KEY.pub")]
    NoKeys,
    /// Its version is not above the current release.
    #[error("{0}")]
    NotNewer(String),
    /// The upload is over the configured size limit.
    #[error("the package is larger than this server accepts ({limit} bytes; see --max-release-size)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Anything else (storage, a bad key file).
    #[error(transparent)]
    App(#[from] AppError),
}

/// Size limits for packages this server accepts.
fn limits(max_bytes: u64) -> Limits {
    Limits { max_package_bytes: max_bytes, ..Limits::default() }
}

/// The REST view of a stored release.
pub fn release_view(r: &Release, current: bool) -> AppResult<ReleaseView> {
    let m: picket_package::Manifest = serde_json::from_str(&r.manifest_json)
        .map_err(|e| AppError::Internal(format!("stored manifest of {}: {e}", r.version)))?;
    Ok(ReleaseView {
        version: r.version,
        current,
        sha256: r.sha256.clone(),
        size: r.size,
        entrypoint: m.entrypoint,
        min_updater_version: m.min_updater_version,
        signing_key_id: r.signing_key_id.clone(),
        published_by: r.published_by.clone(),
        created_at: r.created_at,
        signed_at: m.created_at,
        expires_at: m.expires_at,
        files: m.files.len() as u64,
    })
}

impl App {
    /// The release keys this server trusts (`--release-key-pub`), parsed.
    pub fn release_keys(&self) -> Result<Vec<PublicKey>, ReleaseError> {
        let keys = self
            .package_signing_keys()
            .iter()
            .enumerate()
            .map(|(i, k)| {
                PublicKey::parse(k).map_err(|e| {
                    AppError::Internal(format!("release key #{} of --release-key-pub is unusable: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(ReleaseError::NoKeys);
        }
        Ok(keys)
    }

    /// The largest package accepted (`--max-release-size`).
    pub fn max_release_bytes(&self) -> u64 {
        self.config().max_release_bytes
    }

    /// Verifies and stores a package; the new current release.
    pub async fn publish_release(&self, who: &Operator, package: Bytes) -> Result<ReleaseView, ReleaseError> {
        let limit = self.max_release_bytes();
        if package.len() as u64 > limit {
            return Err(ReleaseError::TooLarge { limit });
        }
        let trust = Trust { keys: self.release_keys()?, now: self.now(), limits: limits(limit) };
        let bytes = package.clone();
        let verified = tokio::task::spawn_blocking(move || -> Result<_, PackageError> {
            let verified = picket_package::verify(&bytes[..], &trust)?;
            picket_package::check_payload(&bytes[..], &verified, &trust.limits)?;
            Ok(verified)
        })
        .await
        .map_err(|e| AppError::Internal(format!("verifying a package: {e}")))??;
        let now = self.now();
        let manifest_json = serde_json::to_string(&verified.manifest)
            .map_err(|e| AppError::Internal(format!("manifest of {}: {e}", verified.manifest.version)))?;
        let release = Release {
            version: verified.manifest.version,
            sha256: verified.package_sha256.clone(),
            size: verified.package_size,
            manifest_json,
            signing_key_id: verified.key_id.clone(),
            published_by: who.principal().actor.clone(),
            created_at: now,
        };
        let audit = who.principal().audit("release.publish", now);
        match self.store().publish_release(&release, &package, &audit).await {
            Ok(()) => {}
            Err(e @ PublishError::NotNewer { .. }) => return Err(ReleaseError::NotNewer(e.to_string())),
            Err(PublishError::Store(e)) => return Err(AppError::from(e).into()),
        }
        tracing::info!(version = %release.version, sha256 = %release.sha256, size = release.size, "release published");
        Ok(release_view(&release, true)?)
    }

    /// Every release by version, the newest marked current.
    pub async fn list_releases(&self, _who: &Viewer) -> AppResult<ReleaseList> {
        let releases = self.store().list_releases().await?;
        let last = releases.len().saturating_sub(1);
        let items =
            releases.iter().enumerate().map(|(i, r)| release_view(r, i == last)).collect::<AppResult<Vec<_>>>()?;
        Ok(ReleaseList { current: releases.last().map(|r| r.version), items })
    }

    /// The current release (the newest published one), if any.
    pub async fn current_release(&self) -> AppResult<Option<Release>> {
        Ok(self.store().list_releases().await?.pop())
    }

    /// The published release whose package has this digest (what sensors download).
    pub async fn release_package(&self, sha256: &str) -> AppResult<Release> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(AppError::BadRequest("a package is named by its SHA-256 in lower-case hex".into()));
        }
        self.store().release_by_sha256(sha256).await?.ok_or(AppError::NotFound("package"))
    }

    /// Up to `len` bytes of a package from `offset`.
    pub async fn read_package(&self, sha256: &str, offset: u64, len: usize) -> AppResult<Vec<u8>> {
        Ok(self.store().read_package(sha256, offset, len).await?)
    }
}
