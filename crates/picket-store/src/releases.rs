//! What publishing releases persists: the `releases` rows (version, digest, size, signed
//! manifest, signing key, publisher) and the package bytes themselves, in
//! `release_chunks` (1 MiB rows keyed by the package's SHA-256), so every replica serves the
//! same packages with no shared disk, and a byte range reads only the chunks it covers.
//! The `ReleaseStore` trait, its records, the SQL both backends share, and its conformance
//! suite. Migration 0008 adds the columns and the chunk table.

use std::sync::Arc;

use async_trait::async_trait;
use picket_domain::{Timestamp, Version};
use serde::Serialize;

use crate::sql::Columns;
use crate::{Audit, StoreError, StoreResult};

/// Size of one stored chunk of a package.
pub const PACKAGE_CHUNK: usize = 1 << 20;

/// A published release as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// Its version (unique; each new one is above every earlier one).
    pub version: Version,
    /// SHA-256 (hex) of the package file.
    pub sha256: String,
    /// Size of the package file in bytes.
    pub size: u64,
    /// The signed manifest, as JSON text.
    #[serde(skip)]
    pub manifest_json: String,
    /// Id of the key that signed it.
    pub signing_key_id: String,
    /// Who published it (audit actor).
    pub published_by: String,
    /// When it was published.
    pub created_at: Timestamp,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Its version is not above the current release's.
    #[error("version {version} is not above the current release {current}; publish a higher version")]
    NotNewer {
        /// The refused version.
        version: Version,
        /// The current (highest) release.
        current: Version,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Releases and their packages in storage.
#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// Stores `release` and its package bytes, audited, in one transaction; `NotNewer` unless
    /// its version is above every stored one (checked under a lock, so concurrent publishes
    /// on several replicas cannot store a lower version after a higher one).
    async fn publish_release(&self, release: &Release, package: &[u8], audit: &Audit) -> Result<(), PublishError>;
    /// Every release, by version ascending (the last is the current release).
    async fn list_releases(&self) -> StoreResult<Vec<Release>>;
    /// The release whose package has this SHA-256.
    async fn release_by_sha256(&self, sha256: &str) -> StoreResult<Option<Release>>;
    /// Up to `len` bytes of the package with this SHA-256, from `offset` (fewer at its end,
    /// none past it).
    async fn read_package(&self, sha256: &str, offset: u64, len: usize) -> StoreResult<Vec<u8>>;
}

/// The SQL both backends share for releases (`$N` dialect).
pub mod sql {
    use super::*;

    /// The highest stored version.
    pub const SELECT_CURRENT: &str = "SELECT version FROM releases ORDER BY version_key DESC LIMIT 1";
    /// Stores a release row.
    pub const INSERT_RELEASE: &str = "INSERT INTO releases \
(version, version_key, created_at, sha256, size, manifest, signing_key_id, published_by) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// Stores one chunk (`$3` is the bytes).
    pub const INSERT_CHUNK: &str = "INSERT INTO release_chunks (sha256, seq, data) VALUES ($1, $2, $3)";
    const COLUMNS: &str = "version, created_at, sha256, size, manifest, signing_key_id, published_by";
    /// Every release by version.
    pub fn select_releases() -> String {
        format!("SELECT {COLUMNS} FROM releases ORDER BY version_key")
    }
    /// The release with package digest `$1`.
    pub fn select_by_sha256() -> String {
        format!("SELECT {COLUMNS} FROM releases WHERE sha256 = $1")
    }
    /// Chunks `$2..=$3` of package `$1`, in order.
    pub const SELECT_CHUNKS: &str =
        "SELECT seq, data FROM release_chunks WHERE sha256 = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq";

    /// Reads a release row.
    pub fn decode_release(r: &impl Columns) -> StoreResult<Release> {
        let version = r.text("version")?;
        let size = r.int("size")?;
        Ok(Release {
            version: version.parse().map_err(|e| StoreError::Corrupt(format!("column version: {e}")))?,
            sha256: r.opt_text("sha256")?.unwrap_or_default(),
            size: u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("negative size {size}")))?,
            manifest_json: r.text("manifest")?,
            signing_key_id: r.text("signing_key_id")?,
            published_by: r.text("published_by")?,
            created_at: Timestamp(r.int("created_at")?),
        })
    }

    /// The chunk numbers holding bytes `offset..offset+len` of a package of `size` bytes, or
    /// `None` when the range is empty.
    pub fn chunk_span(size: u64, offset: u64, len: usize) -> Option<(i64, i64)> {
        let end = size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return None;
        }
        let c = PACKAGE_CHUNK as u64;
        Some(((offset / c) as i64, ((end - 1) / c) as i64))
    }

    /// Cuts bytes `offset..offset+len` out of the chunks `(seq, data)` returned for the span.
    pub fn cut(chunks: Vec<(i64, Vec<u8>)>, offset: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len.min(64 << 20));
        let end = offset.saturating_add(len as u64);
        for (seq, data) in chunks {
            let start = seq as u64 * PACKAGE_CHUNK as u64;
            let from = offset.saturating_sub(start) as usize;
            let to = (end.saturating_sub(start) as usize).min(data.len());
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
        }
        out
    }
}

// ---- conformance ----

/// Expands into one `#[tokio::test]` per release conformance function; `$make` as for
/// `conformance_tests!`.
#[macro_export]
macro_rules! release_conformance_tests {
    ($make:expr) => {
        $crate::release_conformance_tests!(@each $make; releases_publish_in_version_order, packages_read_by_range);
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::releases::conformance::$name(store).await;
            }
        )+
    };
}

/// The release part of the conformance suite.
pub mod conformance {
    use super::*;
    use crate::Store;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn audit() -> Audit {
        Audit { actor: "token:t1".into(), action: "release.publish".into(), at: NOW }
    }

    /// A release of `version` whose package is `bytes`.
    pub fn release(version: &str, bytes: &[u8]) -> Release {
        use std::fmt::Write;
        let mut sha = String::new();
        // Any unique text works for the store; make it look like a digest.
        for b in version.bytes().chain(std::iter::repeat_n(0u8, 32)).take(32) {
            let _ = write!(sha, "{b:02x}");
        }
        Release {
            version: version.parse().expect("version"),
            sha256: sha,
            size: bytes.len() as u64,
            manifest_json: format!("{{\"version\":\"{version}\"}}"),
            signing_key_id: "0123456789abcdef".into(),
            published_by: "token:t1".into(),
            created_at: NOW,
        }
    }

    /// Versions only go up; the list is by version; `release_versions` sees them; audited.
    pub async fn releases_publish_in_version_order(store: Arc<dyn Store>) {
        assert!(store.list_releases().await.expect("list").is_empty());
        let r1 = release("1.0.0", b"one");
        store.publish_release(&r1, b"one", &audit()).await.expect("publish 1.0.0");
        for (v, why) in [("1.0.0", "the same version"), ("0.9.0", "a lower version")] {
            let e = store.publish_release(&release(v, b"x"), b"x", &audit()).await;
            assert!(
                matches!(&e, Err(PublishError::NotNewer { current, .. }) if current.to_string() == "1.0.0"),
                "{why}: {e:?}"
            );
        }
        let r2 = release("1.10.0", b"two");
        let r3 = release("1.9.0", b"three");
        store.publish_release(&r2, b"two", &audit()).await.expect("publish 1.10.0");
        let e = store.publish_release(&r3, b"three", &audit()).await;
        assert!(matches!(e, Err(PublishError::NotNewer { .. })), "1.9.0 after 1.10.0: {e:?}");
        assert_eq!(store.list_releases().await.expect("list"), vec![r1.clone(), r2.clone()]);
        let versions: Vec<String> =
            store.release_versions().await.expect("versions").iter().map(|v| v.to_string()).collect();
        assert_eq!(versions, ["1.0.0", "1.10.0"]);
        assert_eq!(store.release_by_sha256(&r2.sha256).await.expect("by sha"), Some(r2.clone()));
        assert_eq!(store.release_by_sha256("00").await.expect("by sha"), None);
        let log = store.list_audit(None, 100).await.expect("audit");
        let published: Vec<&str> =
            log.iter().filter(|a| a.target_kind == "release").map(|a| a.target_id.as_str()).collect();
        assert_eq!(published, ["1.10.0", "1.0.0"], "each publish is audited, refusals are not");
    }

    /// Bytes come back whole and by any range, across chunk boundaries.
    pub async fn packages_read_by_range(store: Arc<dyn Store>) {
        let bytes: Vec<u8> = (0..(2 * PACKAGE_CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let r = release("2.0.0", &bytes);
        store.publish_release(&r, &bytes, &audit()).await.expect("publish");
        let n = bytes.len() as u64;
        let c = PACKAGE_CHUNK as u64;
        for (offset, len) in
            [(0, bytes.len()), (0, 10), (c - 5, 10), (c - 5, PACKAGE_CHUNK + 10), (n - 3, 100), (n, 10), (n + 5, 1)]
        {
            let got = store.read_package(&r.sha256, offset, len).await.expect("read");
            let from = (offset as usize).min(bytes.len());
            let to = (offset as usize).saturating_add(len).min(bytes.len());
            assert_eq!(got, bytes[from..to.max(from)], "offset {offset} len {len}");
        }
        assert!(store.read_package("ff", 0, 10).await.expect("read").is_empty(), "unknown package");
    }
}
