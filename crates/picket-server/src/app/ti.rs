//! Threat-intelligence (TI) packages: publishing one (verified here with
//! `picket_package::verify_ti` against the keys of `--release-key-pub`, its indicators checked
//! with `picket_ti::parse_indicators`, then stored with its bytes so every replica serves it),
//! listing and downloading them, how many sensors run each TI version, the TI offer of
//! heartbeat answers, and the `ti_stale` pass of the status job.
//!
//! The heartbeat path is hot, so the current TI package lives in memory (`TiCache`): set on
//! publish, and reloaded by every status-job tick (every `health_check_every`, a few seconds)
//! so a package published through another replica is offered within a tick. A heartbeat
//! answer costs no query.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use picket_domain::issues::{HealthIssueKind, human};
use picket_domain::{StatusContext, ti};
use picket_package::{PackageError, TiLimits};
use picket_proto::sensor::HeartbeatRequest;
use picket_proto::ti::{TiOffer, TiPackageList, TiPackageView};
use picket_store::SensorRow;
use picket_store::health::NewHealthIssue;
use picket_store::ti_packages::{TiPackage, TiPublishError, TiStaleRule};

use super::health::{HEALTH_BATCH, HealthTick};
use super::releases::ReleaseError;
use super::{App, AppError, AppResult};
use crate::auth::{Operator, Viewer};
use crate::ids::new_uuid;

/// Default of `--ti-stale-after`: a sensor whose TI version is below a package published
/// longer ago than this gets a `ti_stale` health issue.
pub const DEFAULT_TI_STALE_AFTER: Duration = Duration::from_secs(7 * 86400);

/// How many sensors in a caller's scope run each TI version (cloud-connected, activated, not
/// decommissioned ones: locally managed sensors keep their TI version on the host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TiSensorCounts {
    /// Sensors by the TI version they last reported.
    pub by_version: BTreeMap<i64, u64>,
    /// Sensors that have reported no TI version yet.
    pub without_ti: u64,
    /// Sensors reporting a TI version below the current one (those without one not included).
    pub behind: u64,
}

/// The current TI package as heartbeats offer it.
#[derive(Debug, Default)]
pub struct TiCache {
    current: RwLock<Option<TiOffer>>,
}

impl TiCache {
    /// The current offer, if any package was published.
    pub fn get(&self) -> Option<TiOffer> {
        self.current.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the current offer unless it would go down (a slow reload racing a publish).
    fn set(&self, offer: Option<TiOffer>) {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        let newer = match (&*cur, &offer) {
            (Some(c), Some(o)) => o.version >= c.version,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if newer {
            *cur = offer;
        }
    }
}

/// Why a TI publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum TiError {
    /// The package failed verification (signature, key, digest, manifest, size).
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The signed indicators file is not a valid indicators file.
    #[error("the package's indicators file is invalid: {0}")]
    Indicators(String),
    /// Its version is not above the current TI version.
    #[error("{0}")]
    NotNewer(String),
    /// The upload is over the size limit.
    #[error("the TI package is larger than this server accepts ({limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No release key is configured, or anything else.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// Storage and the like.
    #[error(transparent)]
    App(#[from] AppError),
}

/// The REST view of a stored TI package.
pub fn ti_view(p: &TiPackage, current: bool) -> TiPackageView {
    TiPackageView {
        version: p.version,
        current,
        sha256: p.sha256.clone(),
        size: p.size,
        indicator_count: p.indicator_count,
        signing_key_id: p.signing_key_id.clone(),
        published_by: p.published_by.clone(),
        created_at: p.created_at,
        signed_at: p.signed_at,
    }
}

fn offer(p: &TiPackage) -> TiOffer {
    TiOffer { version: p.version, sha256: p.sha256.clone(), size: p.size }
}

/// A package a sensor may download by digest: a release or a TI package.
#[derive(Debug, Clone)]
pub struct SensorPackage {
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is a TI package (else a release).
    pub ti: bool,
}

impl App {
    /// The largest TI package accepted: `--max-release-size`, at most the format's own cap.
    pub fn max_ti_bytes(&self) -> u64 {
        self.config().max_release_bytes.min(TiLimits::default().max_package_bytes)
    }

    /// The in-memory current TI package.
    pub fn ti_cache(&self) -> &TiCache {
        &self.ti
    }

    /// Verifies and stores a TI package; the new current one.
    pub async fn publish_ti(&self, who: &Operator, package: Bytes) -> Result<TiPackageView, TiError> {
        let limit = self.max_ti_bytes();
        if package.len() as u64 > limit {
            return Err(TiError::TooLarge { limit });
        }
        let keys = self.release_keys()?;
        let bytes = package.clone();
        let limits = TiLimits { max_package_bytes: limit, ..TiLimits::default() };
        let verified = tokio::task::spawn_blocking(move || -> Result<_, TiError> {
            let v = picket_package::verify_ti(&bytes, &keys, &limits)?;
            let parsed =
                picket_ti::parse_indicators(&v.indicators_json).map_err(|e| TiError::Indicators(e.to_string()))?;
            if parsed.len() as u64 != v.indicator_count {
                return Err(TiError::Indicators(format!(
                    "the manifest counts {} indicators; the file holds {}",
                    v.indicator_count,
                    parsed.len()
                )));
            }
            Ok(v)
        })
        .await
        .map_err(|e| AppError::Internal(format!("verifying a TI package: {e}")))??;
        let now = self.now();
        let manifest_json = serde_json::to_string(&verified.manifest)
            .map_err(|e| AppError::Internal(format!("TI manifest of {}: {e}", verified.version)))?;
        let p = TiPackage {
            version: verified.version,
            sha256: verified.package_sha256.clone(),
            size: verified.package_size,
            manifest_json,
            indicator_count: verified.indicator_count,
            signing_key_id: verified.key_id.clone(),
            published_by: who.principal().actor.clone(),
            created_at: now,
            signed_at: verified.signed_at,
        };
        let audit = who.principal().audit("ti_package.publish", now);
        match self.store().publish_ti_package(&p, &package, &audit).await {
            Ok(()) => {}
            Err(e @ TiPublishError::NotNewer { .. }) => return Err(TiError::NotNewer(e.to_string())),
            Err(TiPublishError::Store(e)) => return Err(AppError::from(e).into()),
        }
        self.ti.set(Some(offer(&p)));
        tracing::info!(version = p.version, sha256 = %p.sha256, indicators = p.indicator_count, "TI package published");
        Ok(ti_view(&p, true))
    }

    /// Every TI package by version, the newest marked current.
    pub async fn list_ti_packages(&self, _who: &Viewer) -> AppResult<TiPackageList> {
        let all = self.store().list_ti_packages().await?;
        let last = all.len().saturating_sub(1);
        let items = all.iter().enumerate().map(|(i, p)| ti_view(p, i == last)).collect();
        Ok(TiPackageList { current: all.last().map(|p| p.version), items })
    }

    /// How many sensors in `who`'s scope run each TI version, and how many are behind
    /// `current` (the current TI version, if any), from the per-version counts the database
    /// keeps (migration 0022: a few rows, not a pass over every sensor).
    pub async fn ti_sensor_counts(&self, who: &Viewer, current: Option<i64>) -> AppResult<TiSensorCounts> {
        let rows = self.store().sensors_by_ti_version(&who.principal().scope).await?;
        let mut counts = TiSensorCounts::default();
        for r in rows {
            match r.ti_version {
                None => counts.without_ti += r.sensors,
                Some(v) => {
                    *counts.by_version.entry(v).or_default() += r.sensors;
                    if current.is_some_and(|c| v < c) {
                        counts.behind += r.sensors;
                    }
                }
            }
        }
        Ok(counts)
    }

    /// The TI package of `version` (for `GET /api/v1/ti-packages/{version}/download`).
    pub async fn ti_package(&self, _who: &Viewer, version: i64) -> AppResult<TiPackage> {
        self.store().ti_package_by_version(version).await?.ok_or(AppError::NotFound("TI package"))
    }

    /// Up to `len` bytes of a TI package from `offset`.
    pub async fn read_ti_package(&self, sha256: &str, offset: u64, len: usize) -> AppResult<Vec<u8>> {
        Ok(self.store().read_ti_package(sha256, offset, len).await?)
    }

    /// The release or TI package whose file has this digest (what sensors download).
    pub async fn sensor_package(&self, sha256: &str) -> AppResult<SensorPackage> {
        match self.release_package(sha256).await {
            Ok(r) => Ok(SensorPackage { sha256: r.sha256, size: r.size, ti: false }),
            Err(AppError::NotFound(_)) => match self.store().ti_package_by_sha256(sha256).await? {
                Some(p) => Ok(SensorPackage { sha256: p.sha256, size: p.size, ti: true }),
                None => Err(AppError::NotFound("package")),
            },
            Err(e) => Err(e),
        }
    }

    /// Up to `len` bytes from `offset` of a package found by `sensor_package`.
    pub async fn read_sensor_package(&self, p: &SensorPackage, offset: u64, len: usize) -> AppResult<Vec<u8>> {
        if p.ti {
            self.read_ti_package(&p.sha256, offset, len).await
        } else {
            self.read_package(&p.sha256, offset, len).await
        }
    }

    /// The TI offer of a heartbeat answer: the current package, to a cloud-connected sensor
    /// with `auto_ti_updates` whose reported TI version (none counts as 0) is below it.
    pub fn ti_offer(&self, sensor: &SensorRow, req: &HeartbeatRequest) -> Option<TiOffer> {
        let offer = self.ti.get()?;
        ti::offer_due(sensor.mode, sensor.auto_ti_updates, req.ti_version, offer.version).then_some(offer)
    }

    /// Reloads the current TI package from the store (another replica may have published).
    pub async fn refresh_ti(&self) -> AppResult<()> {
        let current = self.store().current_ti_package().await?;
        self.ti.set(current.as_ref().map(offer));
        Ok(())
    }

    /// The `ti_stale` pass of the status job at `ctx`: reloads the current TI package, closes
    /// the `ti_stale` issues whose condition ended, and opens one for each cloud-connected,
    /// connected sensor whose TI version is below a package published more than
    /// `ti_stale_after` ago.
    pub async fn check_ti_stale(&self, ctx: &StatusContext) -> AppResult<HealthTick> {
        self.refresh_ti().await?;
        let after = self.config().ti_stale_after;
        let stale_below = self.store().ti_version_published_by(ctx.now.minus(after)).await?;
        let rule = TiStaleRule { stale_below, seen_after: ctx.disconnect_cutoff() };
        // Opening also skips, during the grace period after a restart, the sensors that would be
        // disconnected outside it (`issues::should_open`): their issue would close when it ends.
        let open_rule = TiStaleRule { stale_below, seen_after: ctx.without_grace().disconnect_cutoff() };
        let mut tick = HealthTick::default();
        for sensor_id in self.store().ti_stale_ended(&rule).await? {
            if let Some(issue) =
                self.store().resolve_health_issue(&sensor_id, HealthIssueKind::TiStale, ctx.now).await?
            {
                tracing::info!(issue = %issue.id, sensor = %issue.sensor_name, kind = %issue.kind, "health issue closed: condition ended");
                tick.closed += 1;
            }
        }
        let Some(below) = stale_below else { return Ok(tick) };
        loop {
            let batch = self.store().ti_stale_candidates(&open_rule, HEALTH_BATCH).await?;
            let mut opened = 0;
            for s in &batch {
                let runs = match s.ti_version {
                    Some(v) => format!("runs TI version {v}"),
                    None => "has not reported a TI version".to_string(),
                };
                let kind = HealthIssueKind::TiStale;
                let new = NewHealthIssue {
                    id: new_uuid(),
                    sensor_id: s.id.clone(),
                    kind,
                    opened_at: ctx.now,
                    title: kind.title().to_string(),
                    detail: format!(
                        "The sensor {runs}; TI version {below} was published more than {} ago (--ti-stale-after).",
                        human(after)
                    ),
                    recommendation: kind.recommendation().to_string(),
                };
                if let Some(issue) = self.store().open_health_issue(&new, None).await? {
                    tracing::info!(issue = %issue.id, sensor = %issue.sensor_name, kind = %issue.kind, detail = %issue.detail, "health issue opened");
                    opened += 1;
                }
            }
            tick.opened += opened;
            if batch.len() < HEALTH_BATCH as usize || opened == 0 {
                break;
            }
        }
        Ok(tick)
    }
}
