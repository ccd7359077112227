//! The storage trait of Picket (`Store`), its records and error type, the dialect-neutral SQL
//! both backends share, and the conformance suite every backend must pass.
//!
//! This crate must not name sqlx, SQLite or PostgreSQL types in its API: callers hold an
//! `Arc<dyn Store>` chosen once at start, and a backend's errors arrive as `StoreError`.

pub mod alerts;
pub mod alerts_conformance;
pub mod conformance;
pub mod error;
pub mod export;
pub mod first_run;
pub mod health;
pub mod health_conformance;
pub mod identity;
pub mod identity_conformance;
pub mod model;
pub mod notify;
pub mod notify_conformance;
pub mod query;
pub mod releases;
pub mod rollouts;
pub mod rollouts_conformance;
pub mod rotation;
pub mod rotation_conformance;
pub mod sql;
pub mod ti_packages;
pub mod users;

use async_trait::async_trait;
use picket_domain::{StatusContext, Timestamp, Version};

pub use alerts::AlertStore;
pub use error::{StoreError, StoreResult};
pub use export::{ExportCells, ExportChunks, ExportEncoder, ExportRow, SensorExportStore};
pub use first_run::{FirstRunStore, TokenSwap};
pub use health::{HealthIssue, HealthIssueFilter, HealthIssueQuery, HealthIssueStore, NewHealthIssue};
pub use identity::{ActivationError, Heartbeat, SensorIdentityStore};
pub use model::*;
pub use notify::NotificationStore;
pub use query::{CursorPos, SensorFilter, SensorQuery, Sort, SortKey, SortValue};
pub use releases::{PublishError, Release, ReleaseStore};
pub use rollouts::RolloutStore;
pub use rotation::{CertRotationStore, CertState, RotationError};
pub use ti_packages::{TiPackage, TiPackageStore, TiPublishError};
pub use users::{PortalStore, Session, User};

/// A sensor row with the value of the sort column, so the caller can build the next cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSensor {
    /// The record.
    pub row: SensorRow,
    /// Its value of the sort column.
    pub sort_value: SortValue,
}

/// Everything Picket persists. Mutations take an `Audit` and write it in the same
/// transaction, so the audit log cannot miss a change that happened.
#[async_trait]
pub trait Store:
    SensorIdentityStore
    + PortalStore
    + FirstRunStore
    + CertRotationStore
    + NotificationStore
    + HealthIssueStore
    + ReleaseStore
    + RolloutStore
    + AlertStore
    + TiPackageStore
    + SensorExportStore
    + Send
    + Sync
    + 'static
{
    /// Which backend this is (`sqlite`, `postgres`), for logs and `/healthz`.
    fn backend(&self) -> &'static str;

    /// A cheap round trip, for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Returns the stored value of a cluster-wide secret (e.g. the sensor CA), storing
    /// `value` first if none exists. Replicas racing here all get the same winner.
    async fn get_or_init_secret(&self, name: &str, value: &str) -> StoreResult<String>;

    // ---- API tokens ----

    /// Stores a new token (already hashed).
    async fn create_api_token(&self, token: &ApiToken, audit: &Audit) -> StoreResult<()>;
    /// The unrevoked token with this secret hash.
    async fn find_api_token(&self, secret_hash: &str) -> StoreResult<Option<ApiToken>>;
    /// All tokens, revoked ones included, oldest first.
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a token; `NotFound` if it does not exist or is already revoked.
    async fn revoke_api_token(&self, id: &str, audit: &Audit) -> StoreResult<()>;

    // ---- subscriptions and zones ----

    /// All subscriptions visible in `scope`, by name.
    async fn list_subscriptions(&self, scope: &Scope) -> StoreResult<Vec<Subscription>>;
    /// Creates one; `Conflict` if the name exists.
    async fn create_subscription(&self, s: &Subscription, audit: &Audit) -> StoreResult<()>;
    /// All zones, by name.
    async fn list_zones(&self) -> StoreResult<Vec<Zone>>;
    /// Creates one; `Conflict` if the name exists.
    async fn create_zone(&self, z: &Zone, audit: &Audit) -> StoreResult<()>;

    // ---- sensors ----

    /// Onboards a sensor; `Conflict` on a duplicate name, `InvalidReference` for an unknown
    /// zone or subscription.
    async fn create_sensor(&self, s: &NewSensor, audit: &Audit) -> StoreResult<SensorRow>;
    /// Inserts complete records without audit, in batches (the seeding command and tests).
    async fn import_sensors(&self, rows: &[SensorRow]) -> StoreResult<()>;
    /// One sensor, if it exists in `scope`.
    async fn get_sensor(&self, id: &str, scope: &Scope) -> StoreResult<Option<SensorRow>>;
    /// Applies a patch; `NotFound` outside `scope`, `Conflict` on a duplicate name.
    async fn update_sensor(
        &self,
        id: &str,
        scope: &Scope,
        patch: &SensorPatch,
        audit: &Audit,
    ) -> StoreResult<SensorRow>;
    /// Deletes a sensor (which revokes its certificate); `NotFound` outside `scope`.
    async fn delete_sensor(&self, id: &str, scope: &Scope, audit: &Audit) -> StoreResult<()>;
    /// Marks its host as gone from the directory (`unreachable`).
    async fn decommission_sensor(&self, id: &str, scope: &Scope, audit: &Audit) -> StoreResult<SensorRow>;
    /// Replaces the activation token (hash and expiry) of a sensor that is not activated yet;
    /// `Conflict` if it already is.
    async fn set_activation_token(
        &self,
        id: &str,
        scope: &Scope,
        secret_hash: &str,
        expires_at: Timestamp,
        audit: &Audit,
    ) -> StoreResult<SensorRow>;
    /// One page of a list.
    async fn list_sensors(&self, query: &SensorQuery) -> StoreResult<Vec<ListedSensor>>;
    /// One page of a list when the caller knows how many sensors match (it counted them for
    /// `total`), so a backend can choose its plan; by default the same as `list_sensors`.
    async fn list_sensors_matching(&self, query: &SensorQuery, matches: u64) -> StoreResult<Vec<ListedSensor>> {
        let _ = matches;
        self.list_sensors(query).await
    }
    /// How many sensors match.
    async fn count_sensors(&self, scope: &Scope, filter: &SensorFilter, ctx: &StatusContext) -> StoreResult<u64>;
    /// Fleet counts.
    async fn summary(&self, scope: &Scope, ctx: &StatusContext) -> StoreResult<SummaryCounts>;

    // ---- releases ----

    /// Versions of all published releases (for the `outdated` rule).
    async fn release_versions(&self) -> StoreResult<Vec<Version>>;

    // ---- audit ----

    /// Audit entries, newest first, older than `before_id` if given.
    async fn list_audit(&self, before_id: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}
