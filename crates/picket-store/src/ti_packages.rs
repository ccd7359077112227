//! What publishing threat-intelligence (TI) packages persists: the `ti_packages` rows
//! (integer version, digest, size, signed manifest, indicator count, signing key, publisher,
//! signing and publishing times) and the package bytes in `ti_package_chunks` (1 MiB rows
//! keyed by the package's SHA-256, as releases keep theirs), so every replica serves the same
//! packages with no shared disk. Also the `ti_stale` health condition over `sensors` (the
//! status job raises and closes that kind itself, like an event-raised kind). The
//! `TiPackageStore` trait, its records, the SQL both backends share, and its conformance
//! suite. Migration 0010 adds the tables. Also how many sensors report each TI version
//! (`sensors_by_ti_version`, the portal's Threat intelligence page).

use std::sync::Arc;

use async_trait::async_trait;
use picket_domain::Timestamp;
use serde::Serialize;

use crate::releases::PACKAGE_CHUNK;
use crate::sql::Columns;
use crate::{Audit, Scope, StoreError, StoreResult};

/// A published TI package as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TiPackage {
    /// Its TI version (unique; each new one is above every earlier one).
    pub version: i64,
    /// SHA-256 (hex) of the package file.
    pub sha256: String,
    /// Size of the package file in bytes.
    pub size: u64,
    /// The signed manifest, as JSON text.
    #[serde(skip)]
    pub manifest_json: String,
    /// How many indicators it carries.
    pub indicator_count: u64,
    /// Id of the key that signed it.
    pub signing_key_id: String,
    /// Who published it (audit actor).
    pub published_by: String,
    /// When it was published.
    pub created_at: Timestamp,
    /// When it was signed (from the manifest).
    pub signed_at: Timestamp,
}

/// Why a TI publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum TiPublishError {
    /// Its version is not above the current TI package's.
    #[error("TI version {version} is not above the current TI version {current}; publish a higher version")]
    NotNewer {
        /// The refused version.
        version: i64,
        /// The current (highest) TI version.
        current: i64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A sensor whose `ti_stale` condition holds and has no open (or operator-closed) `ti_stale`
/// issue: the status job opens one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiStaleSensor {
    /// The sensor's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The TI version it last reported (`None`: never reported one).
    pub ti_version: Option<i64>,
}

/// What the `ti_stale` condition is judged against: a sensor is stale when it is cloud
/// connected, activated, not decommissioned, heard from after `seen_after` (when given: not
/// disconnected) and its reported TI version (none counts as 0) is below `stale_below`, the
/// highest TI version published at least `ti_stale_after` ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TiStaleRule {
    /// Versions below this are stale; `None` when no package is that old (nothing is stale).
    pub stale_below: Option<i64>,
    /// Sensors last heard from at or before this are disconnected (raise only that); `None`
    /// during the grace period after the server started.
    pub seen_after: Option<Timestamp>,
}

/// How many sensors last reported one TI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TiVersionCount {
    /// The TI version they reported (`None`: none yet).
    pub ti_version: Option<i64>,
    /// How many sensors.
    pub sensors: u64,
}

/// TI packages in storage. `Store` requires this trait, so every backend implements it.
#[async_trait]
pub trait TiPackageStore: Send + Sync {
    /// Stores `package` metadata and its bytes, audited, in one transaction; `NotNewer` unless
    /// its version is above every stored one (checked under a lock, so concurrent publishes on
    /// several replicas cannot store a lower version after a higher one).
    async fn publish_ti_package(&self, package: &TiPackage, bytes: &[u8], audit: &Audit) -> Result<(), TiPublishError>;
    /// Every TI package, by version ascending (the last is current).
    async fn list_ti_packages(&self) -> StoreResult<Vec<TiPackage>>;
    /// The current (highest) TI package.
    async fn current_ti_package(&self) -> StoreResult<Option<TiPackage>>;
    /// The TI package of this version.
    async fn ti_package_by_version(&self, version: i64) -> StoreResult<Option<TiPackage>>;
    /// The TI package whose file has this SHA-256.
    async fn ti_package_by_sha256(&self, sha256: &str) -> StoreResult<Option<TiPackage>>;
    /// The highest TI version published at or before `at` (what `ti_stale` compares with).
    async fn ti_version_published_by(&self, at: Timestamp) -> StoreResult<Option<i64>>;
    /// Up to `len` bytes of the TI package with this SHA-256, from `offset` (fewer at its end,
    /// none past it or for an unknown digest).
    async fn read_ti_package(&self, sha256: &str, offset: u64, len: usize) -> StoreResult<Vec<u8>>;
    /// At most `limit` sensors whose `ti_stale` condition holds under `rule` with no open or
    /// operator-closed `ti_stale` issue.
    async fn ti_stale_candidates(&self, rule: &TiStaleRule, limit: u32) -> StoreResult<Vec<TiStaleSensor>>;
    /// Ids of the sensors with an open `ti_stale` issue whose condition no longer holds under
    /// `rule` (the caller resolves them); also forgets operator closes whose condition ended,
    /// so a new start opens a new issue.
    async fn ti_stale_ended(&self, rule: &TiStaleRule) -> StoreResult<Vec<String>>;
    /// The cloud-connected, activated, not decommissioned sensors in `scope`, counted by the
    /// TI version they last reported: `None` (none yet) first, then by version ascending;
    /// versions no sensor reports are absent. Locally managed sensors are not counted (their
    /// TI version stays on the host). Read from the counts the database keeps per
    /// (subscription, TI version) (migration 0022), not from the sensor rows.
    async fn sensors_by_ti_version(&self, scope: &Scope) -> StoreResult<Vec<TiVersionCount>>;
}

/// The SQL both backends share for TI packages (`$N` dialect).
pub mod sql {
    use super::*;
    use crate::health::sql::{IndexHints, blocked_bit};
    use crate::query::{SqlParam, SqlQuery};
    use picket_domain::issues::HealthIssueKind;

    /// The highest stored version.
    pub const SELECT_CURRENT_VERSION: &str = "SELECT MAX(version) FROM ti_packages";
    /// Stores a TI package row.
    pub const INSERT_PACKAGE: &str = "INSERT INTO ti_packages \
(version, created_at, sha256, size, manifest, indicator_count, signing_key_id, published_by, signed_at) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// Stores one chunk (`$3` is the bytes).
    pub const INSERT_CHUNK: &str = "INSERT INTO ti_package_chunks (sha256, seq, data) VALUES ($1, $2, $3)";
    const COLUMNS: &str =
        "version, created_at, sha256, size, manifest, indicator_count, signing_key_id, published_by, signed_at";
    /// Every package by version.
    pub fn select_all() -> String {
        format!("SELECT {COLUMNS} FROM ti_packages ORDER BY version")
    }
    /// The highest-versioned package.
    pub fn select_current() -> String {
        format!("SELECT {COLUMNS} FROM ti_packages ORDER BY version DESC LIMIT 1")
    }
    /// The package of version `$1`.
    pub fn select_by_version() -> String {
        format!("SELECT {COLUMNS} FROM ti_packages WHERE version = $1")
    }
    /// The package with digest `$1`.
    pub fn select_by_sha256() -> String {
        format!("SELECT {COLUMNS} FROM ti_packages WHERE sha256 = $1")
    }
    /// The highest version published at or before `$1`.
    pub const SELECT_PUBLISHED_BY: &str = "SELECT MAX(version) FROM ti_packages WHERE created_at <= $1";
    /// Chunks `$2..=$3` of package `$1`, in order.
    pub const SELECT_CHUNKS: &str =
        "SELECT seq, data FROM ti_package_chunks WHERE sha256 = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq";

    /// Reads a package row.
    pub fn decode(r: &impl Columns) -> StoreResult<TiPackage> {
        let nonneg = |c: &str, v: i64| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {c} {v}")));
        Ok(TiPackage {
            version: r.int("version")?,
            sha256: r.text("sha256")?,
            size: nonneg("size", r.int("size")?)?,
            manifest_json: r.text("manifest")?,
            indicator_count: nonneg("indicator_count", r.int("indicator_count")?)?,
            signing_key_id: r.text("signing_key_id")?,
            published_by: r.text("published_by")?,
            created_at: Timestamp(r.int("created_at")?),
            signed_at: Timestamp(r.int("signed_at")?),
        })
    }

    /// The predicate, over unqualified `sensors` columns, "the `ti_stale` condition holds
    /// under `rule`" (`FALSE` when nothing is stale).
    pub fn condition_sql(rule: &TiStaleRule, q: &mut SqlQuery) -> String {
        let Some(below) = rule.stale_below else { return "FALSE".to_string() };
        let below = q.bind(SqlParam::Int(below));
        let seen = match rule.seen_after {
            Some(t) => format!(" AND last_seen_at > {}", q.bind(SqlParam::Int(t.0))),
            None => String::new(),
        };
        format!(
            "(mode = 'cloud_connected' AND activated_at IS NOT NULL AND decommissioned_at IS NULL \
AND last_seen_at IS NOT NULL{seen} AND COALESCE(ti_version, 0) < {below})"
        )
    }

    /// Sensors to open a `ti_stale` issue for: `id, name, ti_version` (PostgreSQL's text;
    /// SQLite uses [`candidates_sql_with`] and `IndexHints::IndexedBy`).
    pub fn candidates_sql(rule: &TiStaleRule, limit: u32) -> SqlQuery {
        candidates_sql_with(rule, limit, IndexHints::None)
    }

    /// Sensors to open a `ti_stale` issue for, read through the partial index
    /// `sensors_unblocked_ti_stale` (migration 0024: cloud-connected sensors without an open or
    /// muted `ti_stale` issue, by `COALESCE(ti_version, 0)`), so a tick reads the sensors
    /// behind the stale version that have no issue yet, not the fleet.
    pub fn candidates_sql_with(rule: &TiStaleRule, limit: u32, hints: IndexHints) -> SqlQuery {
        let mut q = SqlQuery::default();
        let cond = condition_sql(rule, &mut q);
        let limit = q.bind(SqlParam::Int(i64::from(limit)));
        let from = match hints {
            IndexHints::None => "sensors",
            IndexHints::IndexedBy => "sensors INDEXED BY sensors_unblocked_ti_stale",
        };
        let bit = blocked_bit(HealthIssueKind::TiStale).unwrap_or(0);
        q.sql = format!(
            "SELECT id, name, ti_version FROM {from} WHERE mode = 'cloud_connected' AND (blocked_kinds & {bit}) = 0 \
AND {cond} AND NOT EXISTS (SELECT 1 FROM health_issues h \
WHERE h.sensor_id = sensors.id AND h.kind = 'ti_stale' AND (h.status = 'open' OR h.muted)) LIMIT {limit}"
        );
        q
    }

    /// Sensor ids of open `ti_stale` issues whose condition ended.
    pub fn ended_sql(rule: &TiStaleRule) -> SqlQuery {
        let mut q = SqlQuery::default();
        let cond = condition_sql(rule, &mut q);
        q.sql = format!(
            "SELECT h.sensor_id FROM health_issues h WHERE h.kind = 'ti_stale' AND h.status = 'open' \
AND NOT EXISTS (SELECT 1 FROM sensors WHERE sensors.id = h.sensor_id AND {cond})"
        );
        q
    }

    /// Forgets operator closes of `ti_stale` whose condition ended.
    pub fn unmute_sql(rule: &TiStaleRule) -> SqlQuery {
        let mut q = SqlQuery::default();
        let cond = condition_sql(rule, &mut q);
        q.sql = format!(
            "UPDATE health_issues SET muted = FALSE WHERE muted AND kind = 'ti_stale' \
AND NOT EXISTS (SELECT 1 FROM sensors WHERE sensors.id = health_issues.sensor_id AND {cond})"
        );
        q
    }

    /// `subscription IN (...)` for a narrow scope (`TRUE` / `FALSE` otherwise).
    fn scope_clause(scope: &Scope, q: &mut SqlQuery) -> String {
        match scope {
            Scope::All => "TRUE".to_string(),
            Scope::Subscriptions(subs) if subs.is_empty() => "FALSE".to_string(),
            Scope::Subscriptions(subs) => {
                let list: Vec<String> = subs.iter().map(|s| q.bind(SqlParam::Text(s.clone()))).collect();
                format!("subscription IN ({})", list.join(", "))
            }
        }
    }

    /// `ti_version, n` for [`TiPackageStore::sensors_by_ti_version`] in `scope` (unordered:
    /// SQLite and PostgreSQL sort `NULL` differently; [`sort_counts`] orders the rows), from
    /// the counts the triggers of migration 0022 keep (-1 there: no TI version yet).
    pub fn sensors_by_version_sql(scope: &Scope) -> SqlQuery {
        let mut q = SqlQuery::default();
        let scope = scope_clause(scope, &mut q);
        q.sql = format!(
            "SELECT CASE WHEN ti_version = -1 THEN NULL ELSE ti_version END AS ti_version, \
CAST(SUM(n) AS BIGINT) AS n FROM ti_version_counts WHERE {scope} GROUP BY ti_version HAVING SUM(n) > 0"
        );
        q
    }

    /// Reads a row of [`sensors_by_version_sql`].
    pub fn decode_version_count(r: &impl Columns) -> StoreResult<TiVersionCount> {
        let n = r.int("n")?;
        let sensors = u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))?;
        Ok(TiVersionCount { ti_version: r.opt_int("ti_version")?, sensors })
    }

    /// Orders counts as [`TiPackageStore::sensors_by_ti_version`] returns them.
    pub fn sort_counts(mut counts: Vec<TiVersionCount>) -> Vec<TiVersionCount> {
        counts.sort_by_key(|c| c.ti_version);
        counts
    }

    /// Reads a row of [`candidates_sql`].
    pub fn decode_stale(r: &impl Columns) -> StoreResult<TiStaleSensor> {
        Ok(TiStaleSensor { id: r.text("id")?, name: r.text("name")?, ti_version: r.opt_int("ti_version")? })
    }

    /// The chunk count of a package of `len` bytes.
    pub fn chunks(bytes: &[u8]) -> impl Iterator<Item = (i64, &[u8])> {
        bytes.chunks(PACKAGE_CHUNK).enumerate().map(|(i, c)| (i as i64, c))
    }
}

// ---- conformance ----

/// Expands into one `#[tokio::test]` per TI package conformance function; `$make` as for
/// `conformance_tests!`.
#[macro_export]
macro_rules! ti_package_conformance_tests {
    ($make:expr) => {
        $crate::ti_package_conformance_tests!(@each $make;
            ti_packages_publish_in_version_order,
            ti_packages_read_by_range,
            ti_stale_candidates_follow_the_rule,
            sensors_are_counted_by_ti_version_in_scope,
            ti_version_counts_follow_writes,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::ti_packages::conformance::$name(store).await;
            }
        )+
    };
}

/// The TI package part of the conformance suite.
pub mod conformance {
    use super::*;
    use crate::health::NewHealthIssue;
    use crate::{Audit, NewSensor, Scope, Store, Subscription};
    use picket_domain::issues::HealthIssueKind;
    use picket_domain::{Mode, SensorType};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn audit() -> Audit {
        Audit { actor: "token:t1".into(), action: "ti.publish".into(), at: NOW }
    }

    /// A TI package of `version` whose file is `bytes`.
    pub fn package(version: i64, bytes: &[u8]) -> TiPackage {
        TiPackage {
            version,
            sha256: format!("{:064x}", version),
            size: bytes.len() as u64,
            manifest_json: format!("{{\"version\":{version}}}"),
            indicator_count: 3,
            signing_key_id: "0123456789abcdef".into(),
            published_by: "token:t1".into(),
            created_at: Timestamp(NOW.0 + version),
            signed_at: Timestamp(NOW.0 - 1000),
        }
    }

    /// Versions only go up; lookups by version and digest; audited; the "published by" query.
    pub async fn ti_packages_publish_in_version_order(store: Arc<dyn Store>) {
        assert!(store.list_ti_packages().await.expect("list").is_empty());
        assert_eq!(store.current_ti_package().await.expect("current"), None);
        let p3 = package(3, b"three");
        store.publish_ti_package(&p3, b"three", &audit()).await.expect("publish 3");
        for (v, why) in [(3, "the same version"), (2, "a lower version")] {
            let e = store.publish_ti_package(&package(v, b"x"), b"x", &audit()).await;
            assert!(matches!(e, Err(TiPublishError::NotNewer { current: 3, .. })), "{why}: {e:?}");
        }
        let p10 = package(10, b"ten");
        store.publish_ti_package(&p10, b"ten", &audit()).await.expect("publish 10");
        assert_eq!(store.list_ti_packages().await.expect("list"), vec![p3.clone(), p10.clone()]);
        assert_eq!(store.current_ti_package().await.expect("current"), Some(p10.clone()));
        assert_eq!(store.ti_package_by_version(3).await.expect("by version"), Some(p3.clone()));
        assert_eq!(store.ti_package_by_version(4).await.expect("by version"), None);
        assert_eq!(store.ti_package_by_sha256(&p10.sha256).await.expect("by sha"), Some(p10.clone()));
        assert_eq!(store.ti_package_by_sha256("00").await.expect("by sha"), None);
        assert_eq!(store.ti_version_published_by(Timestamp(NOW.0)).await.expect("by"), None);
        assert_eq!(store.ti_version_published_by(p3.created_at).await.expect("by"), Some(3));
        assert_eq!(store.ti_version_published_by(Timestamp(NOW.0 + 100)).await.expect("by"), Some(10));
        // The bar of `ti_stale` is the domain's rule.
        let published = [(3, p3.created_at), (10, p10.created_at)];
        for at in [NOW.0 - 1, NOW.0 + 3, NOW.0 + 9, NOW.0 + 10, NOW.0 + 11] {
            let want = picket_domain::ti::stale_below(published, Timestamp(at), std::time::Duration::ZERO);
            assert_eq!(store.ti_version_published_by(Timestamp(at)).await.expect("by"), want, "at {at}");
        }
        assert_eq!(store.read_ti_package(&p10.sha256, 0, 100).await.expect("read"), b"ten");
        // TI packages are not releases, nor the reverse.
        assert!(store.list_releases().await.expect("releases").is_empty());
        assert!(store.read_package(&p10.sha256, 0, 100).await.expect("read").is_empty());
        let log = store.list_audit(None, 100).await.expect("audit");
        let published: Vec<&str> =
            log.iter().filter(|a| a.target_kind == "ti_package").map(|a| a.target_id.as_str()).collect();
        assert_eq!(published, ["10", "3"], "each publish is audited, refusals are not");
    }

    /// Bytes come back whole and by any range, across chunk boundaries.
    pub async fn ti_packages_read_by_range(store: Arc<dyn Store>) {
        let bytes: Vec<u8> = (0..(2 * PACKAGE_CHUNK + 777)).map(|i| (i * 13 % 251) as u8).collect();
        let p = package(1, &bytes);
        store.publish_ti_package(&p, &bytes, &audit()).await.expect("publish");
        let n = bytes.len() as u64;
        let c = PACKAGE_CHUNK as u64;
        for (offset, len) in
            [(0, bytes.len()), (0, 10), (c - 5, 10), (c - 5, PACKAGE_CHUNK + 10), (n - 3, 100), (n, 10)]
        {
            let got = store.read_ti_package(&p.sha256, offset, len).await.expect("read");
            let from = (offset as usize).min(bytes.len());
            let to = (offset as usize).saturating_add(len).min(bytes.len());
            assert_eq!(got, bytes[from..to.max(from)], "offset {offset} len {len}");
        }
        assert!(store.read_ti_package("ff", 0, 10).await.expect("read").is_empty(), "unknown package");
    }

    async fn sensor(store: &Arc<dyn Store>, id: &str, mode: Mode, seen: Option<Timestamp>, ti: Option<i64>) {
        let mut row = crate::sql::new_sensor_row(&NewSensor {
            id: id.into(),
            name: format!("S-{id}"),
            sensor_type: SensorType::DomainController,
            domain: String::new(),
            subscription: "default".into(),
            site: String::new(),
            zone: "default".into(),
            tags: Vec::new(),
            mode,
            auto_ti_updates: true,
            description: String::new(),
            capture_setting: None,
            delayed_update: false,
            created_at: Timestamp(NOW.0 - 10_000),
        });
        row.activated_at = Some(Timestamp(NOW.0 - 9_000));
        row.last_seen_at = seen;
        row.ti_version = ti;
        store.import_sensors(&[row]).await.expect("import");
    }

    fn ids(v: Vec<TiStaleSensor>) -> Vec<String> {
        let mut ids: Vec<String> = v.into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    }

    /// Who is stale: cloud connected, heard from, below the version; an open or operator-closed
    /// issue hides a sensor; ended issues are found and operator closes forgotten.
    pub async fn ti_stale_candidates_follow_the_rule(store: Arc<dyn Store>) {
        let seen = Some(Timestamp(NOW.0 - 1000));
        sensor(&store, "behind", Mode::CloudConnected, seen, Some(4)).await;
        sensor(&store, "never", Mode::CloudConnected, seen, None).await;
        sensor(&store, "current", Mode::CloudConnected, seen, Some(5)).await;
        sensor(&store, "ahead", Mode::CloudConnected, seen, Some(6)).await;
        sensor(&store, "local", Mode::LocallyManaged, seen, Some(1)).await;
        sensor(&store, "silent", Mode::CloudConnected, None, Some(1)).await;
        sensor(&store, "gone", Mode::CloudConnected, Some(Timestamp(NOW.0 - 600_000)), Some(1)).await;
        let rule = TiStaleRule { stale_below: Some(5), seen_after: Some(Timestamp(NOW.0 - 300_000)) };
        let none = TiStaleRule { stale_below: None, seen_after: rule.seen_after };
        assert!(store.ti_stale_candidates(&none, 100).await.expect("none").is_empty());
        let c = store.ti_stale_candidates(&rule, 100).await.expect("candidates");
        assert_eq!(ids(c.clone()), ["behind", "never"]);
        assert!(c.iter().any(|s| s.id == "never" && s.ti_version.is_none() && s.name == "S-never"));
        assert_eq!(store.ti_stale_candidates(&rule, 1).await.expect("limit").len(), 1);
        let grace = TiStaleRule { seen_after: None, ..rule };
        assert_eq!(ids(store.ti_stale_candidates(&grace, 100).await.expect("grace")), ["behind", "gone", "never"]);

        for id in ["behind", "never"] {
            let new = NewHealthIssue {
                id: format!("issue-{id}"),
                sensor_id: id.into(),
                kind: HealthIssueKind::TiStale,
                opened_at: NOW,
                title: "t".into(),
                detail: "d".into(),
                recommendation: "r".into(),
            };
            store.open_health_issue(&new, None).await.expect("open").expect("opened");
        }
        assert!(store.ti_stale_candidates(&rule, 100).await.expect("after open").is_empty());
        assert!(store.ti_stale_ended(&rule).await.expect("ended").is_empty());
        // An operator closes one: it stays hidden while the condition holds.
        let a = Audit { actor: "token:t1".into(), action: "health_issue.close".into(), at: NOW };
        store.close_health_issue("issue-never", &Scope::All, &a).await.expect("close");
        assert!(store.ti_stale_candidates(&rule, 100).await.expect("muted").is_empty());
        // A newer rule (version 4 is enough now): "behind" ended; the operator close of
        // "never" still holds.
        let lower = TiStaleRule { stale_below: Some(4), ..rule };
        assert_eq!(store.ti_stale_ended(&lower).await.expect("ended"), ["behind"]);
        store.resolve_health_issue("behind", HealthIssueKind::TiStale, NOW).await.expect("resolve");
        assert!(store.ti_stale_candidates(&lower, 100).await.expect("still muted").is_empty());
        // Nothing stale: the operator close is forgotten, so the next start opens anew.
        assert!(store.ti_stale_ended(&none).await.expect("ended").is_empty());
        assert_eq!(ids(store.ti_stale_candidates(&lower, 100).await.expect("unmuted")), ["never"]);
    }
    /// Counts by reported TI version: only activated, not decommissioned, cloud-connected
    /// sensors; `None` first; a subscription scope counts only its sensors.
    pub async fn sensors_are_counted_by_ti_version_in_scope(store: Arc<dyn Store>) {
        let count = |v: Option<i64>, n: u64| TiVersionCount { ti_version: v, sensors: n };
        assert!(store.sensors_by_ti_version(&Scope::All).await.expect("empty").is_empty());
        let sub = Subscription { name: "plant".into(), description: String::new(), created_at: NOW };
        let a = Audit { actor: "token:t1".into(), action: "subscription.create".into(), at: NOW };
        store.create_subscription(&sub, &a).await.expect("subscription");
        let seen = Some(Timestamp(NOW.0 - 1000));
        sensor(&store, "a", Mode::CloudConnected, seen, Some(5)).await;
        sensor(&store, "b", Mode::CloudConnected, seen, Some(5)).await;
        sensor(&store, "c", Mode::CloudConnected, seen, Some(3)).await;
        sensor(&store, "d", Mode::CloudConnected, None, None).await;
        sensor(&store, "e", Mode::CloudConnected, seen, None).await;
        // Not counted: locally managed, decommissioned, never activated.
        sensor(&store, "local", Mode::LocallyManaged, seen, Some(5)).await;
        let mut gone = crate::sql::new_sensor_row(&NewSensor {
            id: "gone".into(),
            name: "S-gone".into(),
            sensor_type: SensorType::DomainController,
            domain: String::new(),
            subscription: "default".into(),
            site: String::new(),
            zone: "default".into(),
            tags: Vec::new(),
            mode: Mode::CloudConnected,
            auto_ti_updates: true,
            description: String::new(),
            capture_setting: None,
            delayed_update: false,
            created_at: Timestamp(NOW.0 - 10_000),
        });
        gone.activated_at = Some(Timestamp(NOW.0 - 9_000));
        gone.decommissioned_at = Some(Timestamp(NOW.0 - 100));
        gone.ti_version = Some(3);
        let mut pending = gone.clone();
        (pending.id, pending.name, pending.activated_at, pending.decommissioned_at) =
            ("pending".into(), "S-pending".into(), None, None);
        // In the other subscription: one at 5, one at 7.
        let mut plant = gone.clone();
        (plant.id, plant.name, plant.subscription, plant.decommissioned_at, plant.ti_version) =
            ("p1".into(), "S-p1".into(), "plant".into(), None, Some(5));
        let mut plant2 = plant.clone();
        (plant2.id, plant2.name, plant2.ti_version) = ("p2".into(), "S-p2".into(), Some(7));
        store.import_sensors(&[gone, pending, plant, plant2]).await.expect("import");

        let all = store.sensors_by_ti_version(&Scope::All).await.expect("all");
        assert_eq!(all, [count(None, 2), count(Some(3), 1), count(Some(5), 3), count(Some(7), 1)]);
        let plant = store.sensors_by_ti_version(&Scope::Subscriptions(vec!["plant".into()])).await.expect("plant");
        assert_eq!(plant, [count(Some(5), 1), count(Some(7), 1)]);
        let both = Scope::Subscriptions(vec!["default".into(), "plant".into()]);
        assert_eq!(store.sensors_by_ti_version(&both).await.expect("both"), all);
        let default = store.sensors_by_ti_version(&Scope::Subscriptions(vec!["default".into()])).await.expect("dflt");
        assert_eq!(default, [count(None, 2), count(Some(3), 1), count(Some(5), 2)]);
        for nothing in [Scope::Subscriptions(Vec::new()), Scope::Subscriptions(vec!["nope".into()])] {
            assert!(store.sensors_by_ti_version(&nothing).await.expect("nothing").is_empty(), "{nothing:?}");
        }
    }

    /// The kept counts (migration 0022) stay equal to counting the rows through heartbeats
    /// that change or clear a TI version, decommission, delete and re-activation by import.
    pub async fn ti_version_counts_follow_writes(store: Arc<dyn Store>) {
        use crate::identity::Heartbeat;
        use picket_domain::ServiceStatus;
        let seen = Some(Timestamp(NOW.0 - 1000));
        for (i, ti) in [Some(1), Some(1), Some(2), None, Some(2)].into_iter().enumerate() {
            sensor(&store, &format!("s{i}"), Mode::CloudConnected, seen, ti).await;
        }
        sensor(&store, "local", Mode::LocallyManaged, seen, Some(1)).await;
        let expected = |pairs: &[(Option<i64>, u64)]| -> Vec<TiVersionCount> {
            pairs.iter().map(|(v, n)| TiVersionCount { ti_version: *v, sensors: *n }).collect()
        };
        assert_eq!(
            store.sensors_by_ti_version(&Scope::All).await.expect("counts"),
            expected(&[(None, 1), (Some(1), 2), (Some(2), 2)])
        );
        let beat = |id: &str, ti: Option<i64>| Heartbeat {
            sensor_id: id.into(),
            at: NOW,
            service_status: ServiceStatus::Running,
            version: None,
            config_version_applied: 0,
            ti_version: ti,
            service_started_at: None,
            rss_bytes: None,
            cpu_permille: None,
        };
        // s0 moves to 3, s3 gets its first, s4 loses its version, s1 repeats the same.
        store
            .record_heartbeats(&[beat("s0", Some(3)), beat("s3", Some(3)), beat("s4", None), beat("s1", Some(1))])
            .await
            .expect("heartbeats");
        assert_eq!(
            store.sensors_by_ti_version(&Scope::All).await.expect("counts"),
            expected(&[(None, 1), (Some(1), 1), (Some(2), 1), (Some(3), 2)])
        );
        let a = Audit { actor: "token:t1".into(), action: "sensor.decommission".into(), at: NOW };
        store.decommission_sensor("s2", &Scope::All, &a).await.expect("decommission");
        store.delete_sensor("s0", &Scope::All, &a).await.expect("delete");
        store.delete_sensor("local", &Scope::All, &a).await.expect("delete local");
        assert_eq!(
            store.sensors_by_ti_version(&Scope::All).await.expect("counts"),
            expected(&[(None, 1), (Some(1), 1), (Some(3), 1)])
        );
        sensor(&store, "s0", Mode::CloudConnected, seen, Some(3)).await;
        assert_eq!(
            store.sensors_by_ti_version(&Scope::All).await.expect("counts"),
            expected(&[(None, 1), (Some(1), 1), (Some(3), 2)])
        );
    }
}
