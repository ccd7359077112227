//! What rollout orchestration persists: one `rollouts` row per release that became current
//! (paused flag, failure count) and the `update_grants` given to sensors (migration 0009).
//! Grant decisions run in one transaction that locks the rollout row (`FOR UPDATE` on
//! PostgreSQL, the single writer on SQLite) and apply the pure rules of
//! `picket_domain::rollout`, so several replicas never grant more than the concurrency.
//! Reports finish a grant at most once (by `update_id`).

use async_trait::async_trait;
use picket_domain::rollout::{
    Candidate, GrantState, RolloutPolicy, delayed_ring_due, first_pending, free_slots, is_paused, next_grants,
};
use picket_domain::{Timestamp, Version};

use crate::sql::Columns;
use crate::{Audit, Scope, StoreError, StoreResult};

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The release it rolls out.
    pub version: Version,
    /// When it started (the release became current).
    pub started_at: Timestamp,
    /// Paused by an operator or by failures.
    pub paused: bool,
    /// Failed grants counted since the start or the last resume.
    pub failures: u32,
}

/// One update grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its id (`upd_...`).
    pub update_id: String,
    /// The rollout it belongs to.
    pub rollout_version: Version,
    /// The sensor it was given to.
    pub sensor_id: String,
    /// The version to run.
    pub version: String,
    /// `update` or `rollback`.
    pub action: String,
    /// SHA-256 (hex) of the package (empty for a rollback).
    pub sha256: String,
    /// Size of the package in bytes.
    pub size: u64,
    /// When it was given.
    pub granted_at: Timestamp,
    /// Past this with no clearance it fails.
    pub deadline: Timestamp,
    /// `granted`, `succeeded` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// A sensor a rollout concerns (cloud connected, activated, not decommissioned), with its
/// latest grant in that rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSensor {
    /// The sensor's id.
    pub sensor_id: String,
    /// Its name.
    pub name: String,
    /// Its subscription (for scoping).
    pub subscription: String,
    /// `delayed_update`.
    pub delayed: bool,
    /// The version it last reported.
    pub version: Option<String>,
    /// Its latest grant in the rollout, if any.
    pub grant: Option<Grant>,
    /// When that grant finished.
    pub finished_at: Option<Timestamp>,
}

/// Sensors a rollout concerns that look alike to it, counted: same subscription, ring,
/// reported version and latest grant (state and action) in the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutGroup {
    /// Their subscription (for scoping).
    pub subscription: String,
    /// `delayed_update`.
    pub delayed: bool,
    /// The version they last reported.
    pub version: Option<String>,
    /// State of their latest grant in the rollout (`granted`, `succeeded`, `failed`); `None`
    /// when they hold none.
    pub grant_state: Option<String>,
    /// Action of that grant (`update`, `rollback`).
    pub grant_action: Option<String>,
    /// How many sensors.
    pub n: u64,
}

/// Rollouts and update grants in storage.
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// Starts the rollout of `version` at `now` unless it exists; whether it was created.
    async fn start_rollout(&self, version: Version, now: Timestamp) -> StoreResult<bool>;
    /// The newest rollout.
    async fn current_rollout(&self) -> StoreResult<Option<Rollout>>;
    /// In one transaction locking the current rollout row: applies the rules and stores the
    /// new grants (deadline `now + deadline_ms`), marking those sensors `updating`.
    async fn decide_grants(&self, policy: RolloutPolicy, deadline_ms: i64, now: Timestamp) -> StoreResult<Vec<Grant>>;
    /// The sensors `decide_grants` would grant at `now` (read only, no lock): open grants
    /// counted, then per ring and version the first free sensors by id, through indexes.
    async fn planned_grants(&self, policy: RolloutPolicy, now: Timestamp) -> StoreResult<Vec<String>>;
    /// [`RolloutStore::planned_grants`] decided over every sensor the rollout concerns
    /// ([`sql::SELECT_CANDIDATES_SCAN`]): the reference the conformance suite compares it
    /// with. Seconds on a million sensors: not for the rollout job.
    async fn planned_grants_by_scan(&self, policy: RolloutPolicy, now: Timestamp) -> StoreResult<Vec<String>>;
    /// The sensor's open grant.
    async fn open_grant(&self, sensor_id: &str) -> StoreResult<Option<Grant>>;
    /// Every grant of the rollout of `version`.
    async fn rollout_grants(&self, version: Version) -> StoreResult<Vec<Grant>>;
    /// Finishes the open grant `update_id` of `sensor_id` (succeeded: sensor `idle`; failed:
    /// sensor `failed`, rollout failures + 1). False when it is unknown or already finished.
    async fn finish_grant(
        &self,
        sensor_id: &str,
        update_id: &str,
        succeeded: bool,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Fails every open grant past its deadline at `now`; the grants failed.
    async fn expire_grants(&self, now: Timestamp) -> StoreResult<Vec<Grant>>;
    /// Pauses or resumes the current rollout (resume clears the failure count); false when
    /// there is none.
    async fn set_rollout_paused(&self, paused: bool) -> StoreResult<bool>;
    /// Pauses or resumes the current rollout like `set_rollout_paused`, writing `audit` in the
    /// same transaction; the rollout after the change (`None` when there is none).
    async fn pause_rollout(&self, paused: bool, audit: &Audit) -> StoreResult<Option<Rollout>>;
    /// Every sensor rollout `version` concerns, with its latest grant in it, by id.
    async fn rollout_sensors(&self, version: Version) -> StoreResult<Vec<RolloutSensor>>;
    /// One sensor rollout `version` concerns, with its latest grant in it (`None` when it
    /// does not exist or the rollout does not concern it).
    async fn rollout_sensor(&self, version: Version, sensor_id: &str) -> StoreResult<Option<RolloutSensor>>;
    /// The sensors rollout `version` concerns that last reported `running`, with their latest
    /// grant in it, by id (read through the version index, not the whole fleet).
    async fn rollout_sensors_running(&self, version: Version, running: Version) -> StoreResult<Vec<RolloutSensor>>;
    /// The sensors rollout `version` concerns counted per [`RolloutGroup`] (a few dozen rows
    /// for any fleet: the counts kept per subscription, ring and version by migration 0017,
    /// and one aggregate over the sensors holding a grant).
    async fn rollout_groups(&self, version: Version) -> StoreResult<Vec<RolloutGroup>>;
    /// [`RolloutStore::rollout_groups`] counted by a scan of every sensor
    /// ([`sql::GROUP_SENSORS_SCAN`]) instead of the kept counts: the reference the
    /// conformance suite compares them with. Seconds on a million sensors: not for pages.
    async fn rollout_groups_by_scan(&self, version: Version) -> StoreResult<Vec<RolloutGroup>>;
    /// At most `2 * limit` sensors of rollout `version` in `scope`, with their latest grant:
    /// up to `limit` that hold an open grant or whose update failed in it, then the first
    /// `limit` by id; by id, each once.
    async fn rollout_sensor_page(&self, version: Version, scope: &Scope, limit: u32)
    -> StoreResult<Vec<RolloutSensor>>;
    /// In one transaction locking the current rollout row: stores `grants` (operator
    /// rollbacks, `action` `rollback`) and marks those sensors `updating`, pauses the rollout
    /// when `pause`, and writes `audit`. `Conflict` (and nothing stored) when a sensor
    /// already holds an open grant; `NotFound` when there is no rollout.
    async fn grant_rollbacks(&self, grants: &[Grant], pause: bool, audit: &Audit) -> StoreResult<()>;
    /// Records that the updater's watchdog restarted the service of `sensor_id` at `at`
    /// (migration 0014), unless that restart or a later one is recorded; whether it is new.
    async fn record_watchdog_restart(&self, sensor_id: &str, at: Timestamp) -> StoreResult<bool>;
    /// Sensors with an open `watchdog_restart` issue and no restart recorded since
    /// `quiet_since`: their issue may close.
    async fn quiet_watchdog_sensors(&self, quiet_since: Timestamp) -> StoreResult<Vec<String>>;
}

/// The SQL both backends share for rollouts (`$N` dialect).
pub mod sql {
    use super::*;

    /// Creates a rollout unless it exists.
    pub const INSERT_ROLLOUT: &str = "INSERT INTO rollouts (version, version_key, started_at, paused, failures) \
VALUES ($1, $2, $3, 0, 0) ON CONFLICT (version) DO NOTHING";
    /// The newest rollout.
    pub const SELECT_CURRENT: &str =
        "SELECT version, started_at, paused, failures FROM rollouts ORDER BY version_key DESC LIMIT 1";
    /// The release row (package) of a version.
    pub const SELECT_PACKAGE: &str = "SELECT sha256, size FROM releases WHERE version = $1";
    /// Eligible sensors and their latest grant state in rollout `$1`; a grant still open from an
    /// earlier rollout counts as open (the sensor is busy and uses up concurrency). Every
    /// sensor the rollout concerns, each with a grant lookup: seconds on a million sensors.
    /// The reference [`RolloutStore::planned_grants_by_scan`] decides from; `decide_grants`
    /// reads [`COUNT_OPEN`], [`RING_VERSIONS`] and [`pick_pending`] instead.
    pub const SELECT_CANDIDATES_SCAN: &str = "SELECT s.id, CASE WHEN s.delayed_update THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS delayed, \
s.version, (SELECT g.state FROM update_grants g WHERE g.sensor_id = s.id \
AND (g.rollout_version = $1 OR g.state = 'granted') \
ORDER BY CASE WHEN g.state = 'granted' THEN 1 ELSE 0 END DESC, g.granted_at DESC LIMIT 1) AS grant_state FROM sensors s \
WHERE s.mode = 'cloud_connected' AND s.activated_at IS NOT NULL AND s.decommissioned_at IS NULL";
    /// How many sensors a rollout concerns hold an open grant (of any rollout): read from the
    /// open grants through migration 0021's `(state, deadline)` index, not the fleet.
    pub const COUNT_OPEN: &str = "SELECT COUNT(DISTINCT g.sensor_id) AS n FROM update_grants g \
JOIN sensors s ON s.id = g.sensor_id WHERE g.state = 'granted' \
AND s.mode || '' = 'cloud_connected' AND s.activated_at IS NOT NULL AND s.decommissioned_at IS NULL";
    /// The rings and reported versions among the sensors a rollout concerns, from the counts
    /// migration 0017 keeps (a few dozen rows; `''`, no version reported, is left out).
    pub const RING_VERSIONS: &str = "SELECT DISTINCT CAST(delayed AS BIGINT) AS delayed, version \
FROM rollout_group_counts WHERE n > 0 AND version <> ''";

    /// The first `$3` sensors by id of one ring (`delayed`) that the rollout of `$1` concerns,
    /// run the version whose key is `$2` and hold no grant in the rollout nor an open one:
    /// pending when that version is below the rollout's. Reads the
    /// `(COALESCE(version_key, -1), id)` index in id order and stops at `$3`; `mode` is
    /// compared as `mode || ''` so neither planner walks the `(mode, id)` index over every
    /// cloud-connected sensor instead (PostgreSQL did, on a million rows).
    pub fn pick_pending(delayed: bool) -> String {
        let ring = if delayed { "s.delayed_update" } else { "NOT s.delayed_update" };
        format!(
            "SELECT s.id, CASE WHEN s.delayed_update THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS delayed, \
s.version, CAST(NULL AS TEXT) AS grant_state FROM sensors s \
WHERE COALESCE(s.version_key, -1) = $2 AND {ring} \
AND s.mode || '' = 'cloud_connected' AND s.activated_at IS NOT NULL AND s.decommissioned_at IS NULL \
AND NOT EXISTS (SELECT 1 FROM update_grants g WHERE g.sensor_id = s.id \
AND (g.rollout_version = $1 OR g.state = 'granted')) ORDER BY s.id LIMIT $3"
        )
    }

    /// The version keys below `target` of each ring in rows of [`RING_VERSIONS`] (normal
    /// ring, then delayed; each ascending, once). A version that does not parse needs no
    /// update, like [`decode_candidate`]'s.
    pub fn ring_version_keys(rows: &[(bool, String)], target: Version) -> [Vec<i64>; 2] {
        let mut rings: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        for (delayed, text) in rows {
            if let Ok(v) = text.parse::<Version>()
                && v < target
            {
                rings[usize::from(*delayed)].push(v.key());
            }
        }
        for keys in &mut rings {
            keys.sort_unstable();
            keys.dedup();
        }
        rings
    }
    /// Stores a grant.
    pub const INSERT_GRANT: &str = "INSERT INTO update_grants (update_id, rollout_version, sensor_id, version, \
action, sha256, size, granted_at, deadline, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'granted')";
    /// Sets a sensor's update state.
    pub const SET_UPDATE_STATE: &str = "UPDATE sensors SET update_state = $2 WHERE id = $1";
    /// Columns of a grant.
    pub const GRANT_COLUMNS: &str = "update_id, rollout_version, sensor_id, version, action, sha256, size, \
granted_at, deadline, state, error";
    /// Finishes an open grant.
    pub const FINISH_GRANT: &str = "UPDATE update_grants SET state = $3, finished_at = $4, error = $5 \
WHERE update_id = $1 AND sensor_id = $2 AND state = 'granted'";
    /// Counts a failure.
    pub const COUNT_FAILURE: &str = "UPDATE rollouts SET failures = failures + 1 WHERE version = $1";
    /// Pauses or resumes.
    pub const SET_PAUSED: &str = "UPDATE rollouts SET paused = $2, failures = CASE WHEN $2 = 0 THEN 0 ELSE failures END \
WHERE version = $1";

    /// Sensors of rollout `$1` with their latest grant in it (a rollback comes after the
    /// update it undoes, also when both were given in the same millisecond), or the grant
    /// still open from an earlier rollout.
    pub const SELECT_ROLLOUT_SENSORS: &str = "SELECT s.id AS sensor_id, s.name AS sensor_name, s.subscription, \
CASE WHEN s.delayed_update THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS delayed, s.version AS sensor_version, \
g.update_id, g.rollout_version, g.sensor_id AS grant_sensor_id, g.version, g.action, g.sha256, g.size, g.granted_at, \
g.deadline, g.state, g.error, g.finished_at FROM sensors s LEFT JOIN update_grants g ON g.update_id = \
(SELECT g2.update_id FROM update_grants g2 WHERE g2.sensor_id = s.id \
AND (g2.rollout_version = $1 OR g2.state = 'granted') \
ORDER BY CASE WHEN g2.state = 'granted' THEN 1 ELSE 0 END DESC, g2.granted_at DESC, CASE WHEN g2.action = 'rollback' THEN 1 ELSE 0 END DESC, g2.update_id DESC LIMIT 1) \
WHERE s.mode = 'cloud_connected' AND s.activated_at IS NOT NULL AND s.decommissioned_at IS NULL ORDER BY s.id";
    /// Sensors a rollout concerns counted per subscription, ring and reported version, as kept
    /// by migration 0017's triggers in `rollout_group_counts` (a few dozen rows; `''` stands
    /// for no version reported, rows counted down to 0 stay). The same answer as
    /// [`GROUP_SENSORS_SCAN`] without reading the sensors.
    pub const GROUP_SENSORS: &str = "SELECT subscription, CAST(delayed AS BIGINT) AS delayed, \
NULLIF(version, '') AS sensor_version, n FROM rollout_group_counts WHERE n > 0 ORDER BY 1, 2, 3";
    /// [`GROUP_SENSORS`] by a `GROUP BY` over every sensor (the reference the conformance
    /// suite checks the kept counts against; seconds on a million sensors).
    pub const GROUP_SENSORS_SCAN: &str = "SELECT s.subscription, \
CASE WHEN s.delayed_update THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS delayed, s.version AS sensor_version, \
COUNT(*) AS n FROM sensors s \
WHERE s.mode = 'cloud_connected' AND s.activated_at IS NOT NULL AND s.decommissioned_at IS NULL GROUP BY 1, 2, 3";
    /// Sensors of rollout `$1` holding a grant in it (or one still open from an earlier
    /// rollout) counted per subscription, ring, reported version and latest grant.
    pub const GROUP_GRANTED: &str = "SELECT s.subscription, \
CASE WHEN s.delayed_update THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS delayed, s.version AS sensor_version, \
g.state AS grant_state, g.action AS grant_action, COUNT(*) AS n FROM sensors s JOIN update_grants g ON g.update_id = \
(SELECT g2.update_id FROM update_grants g2 WHERE g2.sensor_id = s.id \
AND (g2.rollout_version = $1 OR g2.state = 'granted') \
ORDER BY CASE WHEN g2.state = 'granted' THEN 1 ELSE 0 END DESC, g2.granted_at DESC, CASE WHEN g2.action = 'rollback' THEN 1 ELSE 0 END DESC, g2.update_id DESC LIMIT 1) \
WHERE s.id IN (SELECT g3.sensor_id FROM update_grants g3 WHERE g3.rollout_version = $1 OR g3.state = 'granted') \
AND s.mode = 'cloud_connected' AND s.activated_at IS NOT NULL AND s.decommissioned_at IS NULL GROUP BY 1, 2, 3, 4, 5";

    /// [`SELECT_ROLLOUT_SENSORS`] for one sensor (`$2`, its id).
    pub fn select_rollout_sensor() -> String {
        format!("{} AND s.id = $2", SELECT_ROLLOUT_SENSORS.trim_end_matches(" ORDER BY s.id"))
    }

    /// [`SELECT_ROLLOUT_SENSORS`] for the sensors that last reported the version whose key is
    /// `$2` (through the `version_key` index: as many rows as run it, not the fleet). `mode`
    /// is compared as `mode || ''` so SQLite's planner cannot walk the `(mode, ...)` index in
    /// id order over every cloud-connected sensor instead (it did, on a million rows).
    pub fn select_rollout_sensors_running() -> String {
        let base = SELECT_ROLLOUT_SENSORS
            .trim_end_matches(" ORDER BY s.id")
            .replace("s.mode = 'cloud_connected'", "s.mode || '' = 'cloud_connected'");
        format!("{base} AND s.version_key = $2 ORDER BY s.id")
    }

    /// A bounded page of [`SELECT_ROLLOUT_SENSORS`] (`$1` the rollout, `$2` the limit, `$3`..
    /// the subscriptions of a narrow `scope`), by id: `attention` keeps only the sensors
    /// holding an open grant or whose update failed in the rollout.
    pub fn select_rollout_page(scope: &Scope, attention: bool) -> String {
        let mut q = SELECT_ROLLOUT_SENSORS.trim_end_matches(" ORDER BY s.id").to_string();
        if attention {
            q.push_str(
                " AND s.id IN (SELECT g3.sensor_id FROM update_grants g3 WHERE g3.state = 'granted' \
OR (g3.rollout_version = $1 AND g3.state = 'failed'))",
            );
        }
        if let Scope::Subscriptions(list) = scope {
            let marks: Vec<String> = (0..list.len()).map(|i| format!("${}", i + 3)).collect();
            q.push_str(&format!(" AND s.subscription IN ({})", marks.join(", ")));
        }
        q.push_str(" ORDER BY s.id LIMIT $2");
        q
    }

    /// Decodes a row of [`GROUP_SENSORS`], [`GROUP_SENSORS_SCAN`] or [`GROUP_GRANTED`].
    pub fn decode_group(r: &impl Columns, granted: bool) -> StoreResult<RolloutGroup> {
        Ok(RolloutGroup {
            subscription: r.text("subscription")?,
            delayed: r.int("delayed")? != 0,
            version: r.opt_text("sensor_version")?,
            grant_state: if granted { Some(r.text("grant_state")?) } else { None },
            grant_action: if granted { Some(r.text("grant_action")?) } else { None },
            n: u64::try_from(r.int("n")?).unwrap_or(0),
        })
    }

    /// Every sensor's group ([`GROUP_SENSORS`]) with those holding a grant
    /// ([`GROUP_GRANTED`]) moved out of their grant-less group into their own.
    pub fn merge_groups(mut all: Vec<RolloutGroup>, granted: Vec<RolloutGroup>) -> Vec<RolloutGroup> {
        for g in &granted {
            if let Some(base) = all
                .iter_mut()
                .find(|a| a.subscription == g.subscription && a.delayed == g.delayed && a.version == g.version)
            {
                base.n = base.n.saturating_sub(g.n);
            }
        }
        all.retain(|a| a.n > 0);
        all.extend(granted);
        all
    }

    /// Whether a sensor holds an open grant.
    pub const SELECT_OPEN_GRANT_ID: &str =
        "SELECT update_id FROM update_grants WHERE sensor_id = $1 AND state = 'granted'";
    /// Records a watchdog restart unless it (or a later one) is recorded.
    pub const RECORD_WATCHDOG: &str = "UPDATE sensors SET watchdog_restart_at = $2 WHERE id = $1 \
AND (watchdog_restart_at IS NULL OR watchdog_restart_at < $2)";
    /// Sensors whose open `watchdog_restart` issue saw no restart since `$1`.
    pub const SELECT_QUIET_WATCHDOG: &str = "SELECT h.sensor_id FROM health_issues h JOIN sensors s ON s.id = h.sensor_id \
WHERE h.kind = 'watchdog_restart' AND h.status = 'open' AND COALESCE(s.watchdog_restart_at, h.opened_at) < $1 \
ORDER BY h.sensor_id";
    /// Pauses the rollout `$1` (without touching its failure count).
    pub const PAUSE: &str = "UPDATE rollouts SET paused = 1 WHERE version = $1";

    /// The open grant of a sensor.
    pub fn select_open_grant() -> String {
        format!("SELECT {GRANT_COLUMNS} FROM update_grants WHERE sensor_id = $1 AND state = 'granted'")
    }
    /// A grant by id.
    pub fn select_grant() -> String {
        format!("SELECT {GRANT_COLUMNS} FROM update_grants WHERE update_id = $1")
    }
    /// Every grant of a rollout.
    pub fn select_rollout_grants() -> String {
        format!("SELECT {GRANT_COLUMNS} FROM update_grants WHERE rollout_version = $1 ORDER BY granted_at, sensor_id")
    }
    /// Open grants past their deadline.
    pub fn select_expired() -> String {
        format!("SELECT {GRANT_COLUMNS} FROM update_grants WHERE state = 'granted' AND deadline < $1")
    }

    fn version(s: &str) -> StoreResult<Version> {
        s.parse().map_err(|e| StoreError::Corrupt(format!("column version: {e}")))
    }

    /// Decodes a rollout row.
    pub fn decode_rollout(r: &impl Columns) -> StoreResult<Rollout> {
        Ok(Rollout {
            version: version(&r.text("version")?)?,
            started_at: Timestamp(r.int("started_at")?),
            paused: r.int("paused")? != 0,
            failures: u32::try_from(r.int("failures")?).unwrap_or(u32::MAX),
        })
    }

    /// Decodes a grant row.
    pub fn decode_grant(r: &impl Columns) -> StoreResult<Grant> {
        Ok(Grant {
            update_id: r.text("update_id")?,
            rollout_version: version(&r.text("rollout_version")?)?,
            sensor_id: r.text("sensor_id")?,
            version: r.text("version")?,
            action: r.text("action")?,
            sha256: r.text("sha256")?,
            size: u64::try_from(r.int("size")?).unwrap_or(0),
            granted_at: Timestamp(r.int("granted_at")?),
            deadline: Timestamp(r.int("deadline")?),
            state: r.text("state")?,
            error: r.opt_text("error")?,
        })
    }

    /// Decodes a row of [`SELECT_ROLLOUT_SENSORS`].
    pub fn decode_rollout_sensor(r: &impl Columns) -> StoreResult<RolloutSensor> {
        let grant = match r.opt_text("update_id")? {
            None => None,
            Some(update_id) => Some(Grant {
                update_id,
                rollout_version: version(&r.text("rollout_version")?)?,
                sensor_id: r.text("grant_sensor_id")?,
                version: r.text("version")?,
                action: r.text("action")?,
                sha256: r.text("sha256")?,
                size: u64::try_from(r.int("size")?).unwrap_or(0),
                granted_at: Timestamp(r.int("granted_at")?),
                deadline: Timestamp(r.int("deadline")?),
                state: r.text("state")?,
                error: r.opt_text("error")?,
            }),
        };
        Ok(RolloutSensor {
            sensor_id: r.text("sensor_id")?,
            name: r.text("sensor_name")?,
            subscription: r.text("subscription")?,
            delayed: r.int("delayed")? != 0,
            version: r.opt_text("sensor_version")?,
            finished_at: r.opt_int("finished_at")?.map(Timestamp),
            grant,
        })
    }

    /// Decodes a candidate row.
    pub fn decode_candidate(r: &impl Columns) -> StoreResult<Candidate> {
        let grant = match r.opt_text("grant_state")?.as_deref() {
            None => GrantState::None,
            Some("granted") => GrantState::Granted,
            Some("succeeded") => GrantState::Succeeded,
            Some(_) => GrantState::Failed,
        };
        Ok(Candidate {
            sensor_id: r.text("id")?,
            eligible: true,
            delayed: r.int("delayed")? != 0,
            version: r.opt_text("version")?.and_then(|v| v.parse().ok()),
            grant,
        })
    }
}

/// The sensors `decide_grants` grants in `rollout` among `candidates`, every sensor the
/// rollout concerns (the reference: [`sql::SELECT_CANDIDATES_SCAN`]).
pub fn planned_by_scan(
    rollout: &Rollout,
    candidates: &[Candidate],
    policy: RolloutPolicy,
    now: Timestamp,
) -> Vec<String> {
    let paused = is_paused(rollout.paused, rollout.failures, policy.max_failures);
    let due = delayed_ring_due(rollout.started_at, now, policy.delay_ring_after_ms);
    next_grants(candidates, rollout.version, policy, paused, due)
}

/// The sensors to grant now in `rollout` while `open` sensors it concerns hold an open grant,
/// among `pending`: for each ring and version below the rollout's, the first `free` sensors
/// by id without a grant ([`sql::pick_pending`]; `free` from [`free_slots`]). The same as
/// [`planned_by_scan`] over every sensor (`picket_domain::rollout::first_pending`).
pub fn planned_bounded(
    rollout: &Rollout,
    open: usize,
    pending: &[Candidate],
    policy: RolloutPolicy,
    now: Timestamp,
) -> Vec<String> {
    if is_paused(rollout.paused, rollout.failures, policy.max_failures) {
        return Vec::new();
    }
    let due = delayed_ring_due(rollout.started_at, now, policy.delay_ring_after_ms);
    first_pending(pending, rollout.version, free_slots(open, policy), due)
}

/// New `update` grants of `rollout` (package `sha256`/`size`) for `sensors`, given at `now`.
pub fn make_grants(
    rollout: &Rollout,
    package: (String, u64),
    sensors: Vec<String>,
    deadline_ms: i64,
    now: Timestamp,
) -> StoreResult<Vec<Grant>> {
    sensors
        .into_iter()
        .map(|sensor_id| {
            Ok(Grant {
                update_id: new_update_id()?,
                rollout_version: rollout.version,
                sensor_id,
                version: rollout.version.to_string(),
                action: "update".to_string(),
                sha256: package.0.clone(),
                size: package.1,
                granted_at: now,
                deadline: Timestamp(now.0.saturating_add(deadline_ms)),
                state: "granted".to_string(),
                error: None,
            })
        })
        .collect()
}

/// A fresh random update id (`upd_` + 16 hex bytes).
pub fn new_update_id() -> StoreResult<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| StoreError::Backend(format!("OS random numbers: {e}")))?;
    Ok(format!("upd_{}", hex::encode(b)))
}

#[cfg(test)]
mod tests {
    use super::sql;

    /// The rollback reads narrow `SELECT_ROLLOUT_SENSORS`: the version one must keep SQLite off
    /// the mode index (a silent no-op of the `replace` would read every sensor again).
    #[test]
    fn rollback_reads_narrow_the_rollout_sensors() {
        let running = sql::select_rollout_sensors_running();
        assert!(running.contains("s.mode || '' = 'cloud_connected'"), "{running}");
        assert!(!running.contains("s.mode = "), "{running}");
        assert!(running.ends_with(" AND s.version_key = $2 ORDER BY s.id"), "{running}");
        let one = sql::select_rollout_sensor();
        assert!(one.ends_with(" AND s.id = $2") && !one.contains("ORDER BY s.id"), "{one}");
    }

    /// The bounded candidate read keeps SQLite and PostgreSQL on the version index (a silent
    /// `mode = ` would let them walk every cloud-connected sensor in id order), and takes each
    /// ring's versions below the target once, in order, skipping what does not parse.
    #[test]
    fn pending_reads_narrow_to_a_ring_and_a_version() {
        for delayed in [false, true] {
            let q = sql::pick_pending(delayed);
            assert!(q.contains("s.mode || '' = 'cloud_connected'") && !q.contains("s.mode = "), "{q}");
            assert!(q.contains("COALESCE(s.version_key, -1) = $2") && q.ends_with("ORDER BY s.id LIMIT $3"), "{q}");
            assert_eq!(q.contains("NOT s.delayed_update"), !delayed, "{q}");
        }
        assert!(sql::COUNT_OPEN.contains("s.mode || ''") && sql::COUNT_OPEN.contains("g.state = 'granted'"));
        let v = |s: &str| s.parse::<picket_domain::Version>().expect("version");
        let rows: Vec<(bool, String)> = [
            (true, "1.0.0"),
            (false, "1.1.0"),
            (false, "1.0.0"),
            (false, "1.01.0"),
            (false, "2.0.0"),
            (true, "1.2.0"),
            (false, "garbage"),
            (true, "1.0.0"),
        ]
        .into_iter()
        .map(|(d, s)| (d, s.to_string()))
        .collect();
        let [normal, delayed] = sql::ring_version_keys(&rows, v("1.2.0"));
        assert_eq!(normal, [v("1.0.0").key(), v("1.1.0").key()]);
        assert_eq!(delayed, [v("1.0.0").key()]);
    }
}
