//! SQLite implementation of `NotificationStore`: webhooks, the outbox and delivery state,
//! with the SQL shared in `picket_store::notify::sql`. Claims are one `UPDATE` on the single
//! writer connection, so they are exclusive without row locks.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::notify::{
    Claim, ClaimedDelivery, DeliveryCounts, DeliveryOutcome, DeliveryRow, NewDelivery, Notification, Webhook,
    WebhookStats, sql,
};
use picket_store::sql::{self as common, Value};
use picket_store::{Audit, NotificationStore, StoreError, StoreResult};

use crate::{Cols, SqliteStore, audit, bind, db_err, dynamic};

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn create_webhook(&self, w: &Webhook, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        bind(sqlx::query(sql::INSERT_WEBHOOK), sql::webhook_values(w)).execute(&mut *tx).await.map_err(db_err)?;
        audit(&mut tx, common::audit_values(a, "webhook", &w.id, None, Some(w))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>> {
        let rows = sqlx::query(sql::SELECT_WEBHOOKS).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_webhook(&Cols(r))).collect()
    }

    async fn delete_webhook(&self, id: &str, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sql::SELECT_WEBHOOK)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
        let before = sql::decode_webhook(&Cols(&row))?;
        sqlx::query(sql::DELETE_WEBHOOK_DELIVERIES).bind(id.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query(sql::DELETE_WEBHOOK).bind(id.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        audit(&mut tx, common::audit_values::<Webhook>(a, "webhook", id, Some(&before), None)?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn enqueue_notification(&self, at: Timestamp, event: &str, payload: &str) -> StoreResult<i64> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sql::INSERT_NOTIFICATION)
            .bind(at.0)
            .bind(event.to_string())
            .bind(payload.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let id = common::Columns::int(&Cols(&row), "id")?;
        tx.commit().await.map_err(db_err)?;
        Ok(id)
    }

    async fn unfanned_notifications(&self, limit: u32) -> StoreResult<Vec<Notification>> {
        let rows = sqlx::query(sql::SELECT_UNFANNED)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_notification(&Cols(r))).collect()
    }

    async fn fan_out(&self, notifications: &[i64], deliveries: &[NewDelivery], at: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for d in deliveries {
            bind(sqlx::query(sql::INSERT_DELIVERY), sql::delivery_values(d, at))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for id in notifications {
            sqlx::query(sql::MARK_FANNED).bind(*id).bind(at.0).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn claim_deliveries(&self, c: &Claim) -> StoreResult<Vec<ClaimedDelivery>> {
        let mut tx = self.write().await?;
        let done = bind(dynamic(sql::claim_sql("")), sql::claim_values(c)).execute(&mut *tx).await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            tx.commit().await.map_err(db_err)?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql::SELECT_CLAIMED).bind(c.lease.clone()).fetch_all(&mut *tx).await.map_err(db_err)?;
        let claimed = rows.iter().map(|r| sql::decode_claimed(&Cols(r))).collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(db_err)?;
        Ok(claimed)
    }

    async fn finish_delivery(&self, id: &str, lease: &str, outcome: &DeliveryOutcome) -> StoreResult<bool> {
        let (statement, values) = sql::finish(id, lease, outcome);
        let mut tx = self.write().await?;
        let done = bind(sqlx::query(statement), values).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_deliveries(&self, notification_id: Option<i64>) -> StoreResult<Vec<DeliveryRow>> {
        let values = notification_id.map(Value::Int).into_iter().collect();
        let rows = bind(dynamic(sql::select_deliveries_sql(notification_id.is_some())), values)
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| sql::decode_delivery(&Cols(r))).collect()
    }

    async fn delivery_counts(&self) -> StoreResult<DeliveryCounts> {
        let row = sqlx::query(sql::COUNTS).fetch_one(&mut *self.read().await?).await.map_err(db_err)?;
        sql::decode_counts(&Cols(&row))
    }

    async fn webhook_stats(&self) -> StoreResult<Vec<WebhookStats>> {
        let rows = sqlx::query(sql::WEBHOOK_STATS).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_webhook_stats(&Cols(r))).collect()
    }

    async fn purge_notifications(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let a = sqlx::query(sql::PURGE_DELIVERIES).bind(before.0).execute(&mut *tx).await.map_err(db_err)?;
        let b = sqlx::query(sql::PURGE_OUTBOX).bind(before.0).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(a.rows_affected() + b.rows_affected())
    }
}
