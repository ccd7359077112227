//! PostgreSQL implementation of `RolloutStore`, with the SQL shared in
//! `picket_store::rollouts::sql`. Grant decisions lock the current rollout row (`FOR UPDATE`),
//! so decisions of several replicas on one database are serialised.

use async_trait::async_trait;
use picket_domain::rollout::{RolloutPolicy, delayed_ring_due, free_slots, is_paused};
use picket_domain::{Timestamp, Version};
use picket_store::rollouts::{
    Grant, Rollout, RolloutGroup, RolloutSensor, RolloutStore, make_grants, planned_bounded, planned_by_scan, sql,
};
use picket_store::sql::Columns;
use picket_store::{Audit, Scope, StoreError, StoreResult};
use sqlx::PgConnection;

use crate::{Cols, PgStore, audit, db_err, dynamic};

const LOCK_CURRENT: &str =
    "SELECT version, started_at, paused, failures FROM rollouts ORDER BY version_key DESC LIMIT 1 FOR UPDATE";

#[async_trait]
impl RolloutStore for PgStore {
    async fn start_rollout(&self, version: Version, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql::INSERT_ROLLOUT)
            .bind(version.to_string())
            .bind(version.key())
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn current_rollout(&self) -> StoreResult<Option<Rollout>> {
        let row = sqlx::query(sql::SELECT_CURRENT).fetch_optional(&mut *self.read().await?).await.map_err(db_err)?;
        row.map(|r| sql::decode_rollout(&Cols(&r))).transpose()
    }

    async fn decide_grants(&self, policy: RolloutPolicy, deadline_ms: i64, now: Timestamp) -> StoreResult<Vec<Grant>> {
        let mut tx = self.write().await?;
        let Some((rollout, package, sensors)) = plan(&mut tx, LOCK_CURRENT, policy, now, false).await? else {
            return Ok(Vec::new());
        };
        if sensors.is_empty() {
            return Ok(Vec::new());
        }
        let grants = make_grants(&rollout, package, sensors, deadline_ms, now)?;
        for g in &grants {
            sqlx::query(sql::INSERT_GRANT)
                .bind(g.update_id.clone())
                .bind(g.rollout_version.to_string())
                .bind(g.sensor_id.clone())
                .bind(g.version.clone())
                .bind(g.action.clone())
                .bind(g.sha256.clone())
                .bind(g.size as i64)
                .bind(g.granted_at.0)
                .bind(g.deadline.0)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query(sql::SET_UPDATE_STATE)
                .bind(g.sensor_id.clone())
                .bind("updating")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(grants)
    }

    async fn planned_grants(&self, policy: RolloutPolicy, now: Timestamp) -> StoreResult<Vec<String>> {
        let planned = plan(&mut *self.read().await?, sql::SELECT_CURRENT, policy, now, false).await?;
        Ok(planned.map(|p| p.2).unwrap_or_default())
    }

    async fn planned_grants_by_scan(&self, policy: RolloutPolicy, now: Timestamp) -> StoreResult<Vec<String>> {
        let planned = plan(&mut *self.read().await?, sql::SELECT_CURRENT, policy, now, true).await?;
        Ok(planned.map(|p| p.2).unwrap_or_default())
    }

    async fn open_grant(&self, sensor_id: &str) -> StoreResult<Option<Grant>> {
        let row = dynamic(sql::select_open_grant())
            .bind(sensor_id.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_grant(&Cols(&r))).transpose()
    }

    async fn rollout_grants(&self, version: Version) -> StoreResult<Vec<Grant>> {
        let rows = dynamic(sql::select_rollout_grants())
            .bind(version.to_string())
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_grant(&Cols(r))).collect()
    }

    async fn finish_grant(
        &self,
        sensor_id: &str,
        update_id: &str,
        succeeded: bool,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql::FINISH_GRANT)
            .bind(update_id.to_string())
            .bind(sensor_id.to_string())
            .bind(if succeeded { "succeeded" } else { "failed" })
            .bind(now.0)
            .bind(error.map(str::to_string))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let row = dynamic(sql::select_grant()).bind(update_id.to_string()).fetch_one(&mut *tx).await.map_err(db_err)?;
        let grant = sql::decode_grant(&Cols(&row))?;
        sqlx::query(sql::SET_UPDATE_STATE)
            .bind(sensor_id.to_string())
            .bind(if succeeded { "idle" } else { "failed" })
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if !succeeded {
            sqlx::query(sql::COUNT_FAILURE)
                .bind(grant.rollout_version.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn expire_grants(&self, now: Timestamp) -> StoreResult<Vec<Grant>> {
        let rows =
            dynamic(sql::select_expired()).bind(now.0).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        let expired = rows.iter().map(|r| sql::decode_grant(&Cols(r))).collect::<StoreResult<Vec<_>>>()?;
        let mut failed = Vec::new();
        for g in expired {
            if self
                .finish_grant(&g.sensor_id, &g.update_id, false, Some("no clearance before the deadline"), now)
                .await?
            {
                failed.push(g);
            }
        }
        Ok(failed)
    }

    async fn set_rollout_paused(&self, paused: bool) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let Some(row) = sqlx::query(LOCK_CURRENT).fetch_optional(&mut *tx).await.map_err(db_err)? else {
            return Ok(false);
        };
        let rollout = sql::decode_rollout(&Cols(&row))?;
        sqlx::query(sql::SET_PAUSED)
            .bind(rollout.version.to_string())
            .bind(i64::from(paused))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }
    async fn pause_rollout(&self, paused: bool, who: &Audit) -> StoreResult<Option<Rollout>> {
        let mut tx = self.write().await?;
        let Some(row) = sqlx::query(LOCK_CURRENT).fetch_optional(&mut *tx).await.map_err(db_err)? else {
            return Ok(None);
        };
        let before = sql::decode_rollout(&Cols(&row))?;
        sqlx::query(sql::SET_PAUSED)
            .bind(before.version.to_string())
            .bind(i64::from(paused))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let after = Rollout { paused, failures: if paused { before.failures } else { 0 }, ..before.clone() };
        let version = before.version.to_string();
        let state = |r: &Rollout| serde_json::json!({"version": version, "paused": r.paused, "failures": r.failures});
        audit(
            &mut tx,
            picket_store::sql::audit_values(who, "rollout", &version, Some(&state(&before)), Some(&state(&after)))?,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(after))
    }

    async fn rollout_sensors(&self, version: Version) -> StoreResult<Vec<RolloutSensor>> {
        let rows = sqlx::query(sql::SELECT_ROLLOUT_SENSORS)
            .bind(version.to_string())
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_rollout_sensor(&Cols(r))).collect()
    }

    async fn rollout_sensor(&self, version: Version, sensor_id: &str) -> StoreResult<Option<RolloutSensor>> {
        let row = dynamic(sql::select_rollout_sensor())
            .bind(version.to_string())
            .bind(sensor_id.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_rollout_sensor(&Cols(&r))).transpose()
    }

    async fn rollout_sensors_running(&self, version: Version, running: Version) -> StoreResult<Vec<RolloutSensor>> {
        let rows = dynamic(sql::select_rollout_sensors_running())
            .bind(version.to_string())
            .bind(running.key())
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_rollout_sensor(&Cols(r))).collect()
    }

    async fn rollout_groups(&self, version: Version) -> StoreResult<Vec<RolloutGroup>> {
        self.groups(sql::GROUP_SENSORS, version).await
    }

    async fn rollout_groups_by_scan(&self, version: Version) -> StoreResult<Vec<RolloutGroup>> {
        self.groups(sql::GROUP_SENSORS_SCAN, version).await
    }

    async fn rollout_sensor_page(
        &self,
        version: Version,
        scope: &Scope,
        limit: u32,
    ) -> StoreResult<Vec<RolloutSensor>> {
        if matches!(scope, Scope::Subscriptions(list) if list.is_empty()) {
            return Ok(Vec::new());
        }
        let mut conn = self.read().await?;
        let mut out: Vec<RolloutSensor> = Vec::new();
        for attention in [true, false] {
            let mut q =
                dynamic(sql::select_rollout_page(scope, attention)).bind(version.to_string()).bind(i64::from(limit));
            if let Scope::Subscriptions(list) = scope {
                for s in list {
                    q = q.bind(s.clone());
                }
            }
            for r in q.fetch_all(&mut *conn).await.map_err(db_err)? {
                let s = sql::decode_rollout_sensor(&Cols(&r))?;
                if !out.iter().any(|o| o.sensor_id == s.sensor_id) {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
        Ok(out)
    }

    async fn grant_rollbacks(&self, grants: &[Grant], pause: bool, who: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let Some(row) = sqlx::query(LOCK_CURRENT).fetch_optional(&mut *tx).await.map_err(db_err)? else {
            return Err(StoreError::NotFound);
        };
        let rollout = sql::decode_rollout(&Cols(&row))?;
        for g in grants {
            let open = sqlx::query(sql::SELECT_OPEN_GRANT_ID)
                .bind(g.sensor_id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if open.is_some() {
                return Err(StoreError::Conflict(format!(
                    "sensor {} has an update in progress; wait for it to finish (or fail at its deadline) and roll \
                     back then",
                    g.sensor_id
                )));
            }
            sqlx::query(sql::INSERT_GRANT)
                .bind(g.update_id.clone())
                .bind(rollout.version.to_string())
                .bind(g.sensor_id.clone())
                .bind(g.version.clone())
                .bind(g.action.clone())
                .bind(g.sha256.clone())
                .bind(g.size as i64)
                .bind(g.granted_at.0)
                .bind(g.deadline.0)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query(sql::SET_UPDATE_STATE)
                .bind(g.sensor_id.clone())
                .bind("updating")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let after = serde_json::json!({"update_id": g.update_id, "action": g.action, "version": g.version});
            audit(&mut tx, picket_store::sql::audit_values(who, "sensor", &g.sensor_id, None, Some(&after))?).await?;
        }
        if pause {
            sqlx::query(sql::PAUSE).bind(rollout.version.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
    async fn record_watchdog_restart(&self, sensor_id: &str, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql::RECORD_WATCHDOG)
            .bind(sensor_id.to_string())
            .bind(at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn quiet_watchdog_sensors(&self, quiet_since: Timestamp) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(sql::SELECT_QUIET_WATCHDOG)
            .bind(quiet_since.0)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| picket_store::sql::Columns::text(&Cols(r), "sensor_id")).collect()
    }
}

impl PgStore {
    /// Every sensor's group (`sensor_groups`: the kept counts or the scan) merged with the
    /// groups of those holding a grant in rollout `version`, read on one connection.
    async fn groups(&self, sensor_groups: &'static str, version: Version) -> StoreResult<Vec<RolloutGroup>> {
        let mut conn = self.read().await?;
        let all = sqlx::query(sensor_groups).fetch_all(&mut *conn).await.map_err(db_err)?;
        let granted =
            sqlx::query(sql::GROUP_GRANTED).bind(version.to_string()).fetch_all(&mut *conn).await.map_err(db_err)?;
        let all = all.iter().map(|r| sql::decode_group(&Cols(r), false)).collect::<StoreResult<Vec<_>>>()?;
        let granted = granted.iter().map(|r| sql::decode_group(&Cols(r), true)).collect::<StoreResult<Vec<_>>>()?;
        Ok(sql::merge_groups(all, granted))
    }
}

/// What `decide_grants` decides in `conn`: the current rollout (read by `current`, which
/// locks it in the deciding transaction), its package and the sensors to grant now; `None`
/// when there is no rollout or no package. A paused rollout or no free concurrency reads no
/// sensor; otherwise the pending sensors come through indexes, per ring and version at most
/// as many as may be granted ([`sql::pick_pending`]), or from every sensor when `scan` (the
/// reference, [`sql::SELECT_CANDIDATES_SCAN`]).
async fn plan(
    conn: &mut PgConnection,
    current: &str,
    policy: RolloutPolicy,
    now: Timestamp,
    scan: bool,
) -> StoreResult<Option<(Rollout, (String, u64), Vec<String>)>> {
    let Some(row) = dynamic(current.to_string()).fetch_optional(&mut *conn).await.map_err(db_err)? else {
        return Ok(None);
    };
    let rollout = sql::decode_rollout(&Cols(&row))?;
    // A paused rollout grants nothing: no need to read any sensor (the job asks once a second).
    if is_paused(rollout.paused, rollout.failures, policy.max_failures) {
        return Ok(Some((rollout, (String::new(), 0), Vec::new())));
    }
    let target = rollout.version.to_string();
    let Some(pkg) =
        sqlx::query(sql::SELECT_PACKAGE).bind(target.clone()).fetch_optional(&mut *conn).await.map_err(db_err)?
    else {
        return Ok(None);
    };
    let pkg = Cols(&pkg);
    let package = (pkg.opt_text("sha256")?.unwrap_or_default(), u64::try_from(pkg.int("size")?).unwrap_or(0));
    if scan {
        let rows = sqlx::query(sql::SELECT_CANDIDATES_SCAN).bind(target).fetch_all(&mut *conn).await.map_err(db_err)?;
        let candidates = rows.iter().map(|r| sql::decode_candidate(&Cols(r))).collect::<StoreResult<Vec<_>>>()?;
        let sensors = planned_by_scan(&rollout, &candidates, policy, now);
        return Ok(Some((rollout, package, sensors)));
    }
    let open = sqlx::query(sql::COUNT_OPEN).fetch_one(&mut *conn).await.map_err(db_err)?;
    let open = usize::try_from(Cols(&open).int("n")?).unwrap_or(0);
    let free = free_slots(open, policy);
    if free == 0 {
        return Ok(Some((rollout, package, Vec::new())));
    }
    let rows = sqlx::query(sql::RING_VERSIONS).fetch_all(&mut *conn).await.map_err(db_err)?;
    let versions = rows
        .iter()
        .map(|r| Ok((Cols(r).int("delayed")? != 0, Cols(r).text("version")?)))
        .collect::<StoreResult<Vec<_>>>()?;
    let due = delayed_ring_due(rollout.started_at, now, policy.delay_ring_after_ms);
    let mut pending = Vec::new();
    for (ring, keys) in sql::ring_version_keys(&versions, rollout.version).iter().enumerate() {
        let delayed = ring == 1;
        // The normal ring goes first: the delayed one only when due and slots are left.
        if delayed && (!due || pending.len() >= free) {
            break;
        }
        let pick = sql::pick_pending(delayed);
        for key in keys {
            let rows = dynamic(pick.clone())
                .bind(target.clone())
                .bind(*key)
                .bind(i64::try_from(free).unwrap_or(i64::MAX))
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            for r in &rows {
                pending.push(sql::decode_candidate(&Cols(r))?);
            }
        }
    }
    let sensors = planned_bounded(&rollout, open, &pending, policy, now);
    Ok(Some((rollout, package, sensors)))
}
