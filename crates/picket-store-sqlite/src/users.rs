//! SQLite implementation of `PortalStore`: users, sessions and sign-in failures, with the
//! SQL shared in `picket_store::users::sql`.

use async_trait::async_trait;
use picket_domain::Timestamp;
use picket_store::sql::{self as common, Columns};
use picket_store::users::sql;
use picket_store::{Audit, PortalStore, Session, StoreError, StoreResult, User};

use crate::{Cols, SqliteStore, audit, bind, db_err};

#[async_trait]
impl PortalStore for SqliteStore {
    async fn create_user(&self, user: &User, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let done =
            bind(sqlx::query(sql::INSERT_USER), sql::user_values(user)?).execute(&mut *tx).await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(sql::user_exists(&user.username));
        }
        audit(&mut tx, common::audit_values(a, "user", &user.username, None, Some(user))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(sql::SELECT_USER)
            .bind(username.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_user(&Cols(&r))).transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(sql::SELECT_USERS).fetch_all(&mut *self.read().await?).await.map_err(db_err)?;
        rows.iter().map(|r| sql::decode_user(&Cols(r))).collect()
    }

    async fn set_user_password(&self, username: &str, password_hash: &str, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sql::SELECT_USER)
            .bind(username.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
        let before = sql::decode_user(&Cols(&row))?;
        sqlx::query(sql::UPDATE_PASSWORD)
            .bind(username.to_string())
            .bind(password_hash.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(sql::DELETE_USER_SESSIONS).bind(username.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        audit(&mut tx, common::audit_values(a, "user", username, Some(&before), Some(&before))?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn delete_user(&self, username: &str, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sql::SELECT_USER)
            .bind(username.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
        let before = sql::decode_user(&Cols(&row))?;
        sqlx::query(sql::DELETE_USER_SESSIONS).bind(username.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        sqlx::query(sql::DELETE_USER).bind(username.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        audit(&mut tx, common::audit_values::<User>(a, "user", username, Some(&before), None)?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn create_session(&self, s: &Session, a: &Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql::INSERT_SESSION)
            .bind(s.token_hash.clone())
            .bind(s.username.clone())
            .bind(s.created_at.0)
            .bind(s.expires_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        audit(&mut tx, common::audit_values::<()>(a, "user", &s.username, None, None)?).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<(Session, User)>> {
        let row = sqlx::query(sql::SELECT_SESSION)
            .bind(token_hash.to_string())
            .bind(now.0)
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| sql::decode_session(&Cols(&r))).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql::DELETE_SESSION).bind(token_hash.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let done = sqlx::query(sql::PURGE_SESSIONS).bind(now.0).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn record_sign_in_failure(&self, key: &str, at: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql::INSERT_FAILURE).bind(key.to_string()).bind(at.0).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn count_sign_in_failures(&self, key: &str, since: Timestamp) -> StoreResult<u64> {
        let row = sqlx::query(sql::COUNT_FAILURES)
            .bind(key.to_string())
            .bind(since.0)
            .fetch_one(&mut *self.read().await?)
            .await
            .map_err(db_err)?;
        let n = Cols(&row).int("n")?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
    }

    async fn clear_sign_in_failures(&self, key: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(sql::CLEAR_FAILURES).bind(key.to_string()).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}
