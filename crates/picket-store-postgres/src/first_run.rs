//! PostgreSQL implementation of `FirstRunStore`. Under READ COMMITTED two transactions could
//! both see an empty users table and insert different users, so the first run first takes a
//! lock on the table that conflicts with itself (SHARE ROW EXCLUSIVE, which still lets
//! sessions be read): concurrent first runs, on any replica, wait and then see the winner.

use async_trait::async_trait;
use picket_store::first_run::{TokenSwap, sql};
use picket_store::sql::{self as common, Columns};
use picket_store::users::sql as users_sql;
use picket_store::{ApiToken, Audit, FirstRunStore, StoreError, StoreResult, User};

use crate::{Cols, PgStore, audit, bind, db_err};

/// Serialises first runs (and any other writer of `users`) until the transaction ends.
const LOCK_USERS: &str = "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE";

#[async_trait]
impl FirstRunStore for PgStore {
    async fn any_user(&self) -> StoreResult<bool> {
        let row = sqlx::query(sql::ANY_USER).fetch_one(&mut *self.read().await?).await.map_err(db_err)?;
        Ok(Cols(&row).int("n")? > 0)
    }

    async fn create_first_user(&self, user: &User, swap: Option<&TokenSwap>, a: &Audit) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        sqlx::query(LOCK_USERS).execute(&mut *tx).await.map_err(db_err)?;
        let done = bind(sqlx::query(sql::INSERT_FIRST_USER), users_sql::user_values(user)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(swap) = swap {
            let row = sqlx::query(common::SELECT_TOKEN_BY_ID)
                .bind(swap.revoke.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound)?;
            let before = common::decode_token(&Cols(&row))?;
            if before.revoked_at.is_some() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(common::REVOKE_TOKEN)
                .bind(swap.revoke.clone())
                .bind(a.at.0)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let after = ApiToken { revoked_at: Some(a.at), ..before.clone() };
            let revoke = Audit { action: "token.revoke".to_string(), ..a.clone() };
            audit(&mut tx, common::audit_values(&revoke, "token", &swap.revoke, Some(&before), Some(&after))?).await?;
            let new = &swap.replacement;
            bind(sqlx::query(common::INSERT_TOKEN), common::token_values(new)?)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let create = Audit { action: "token.create".to_string(), ..a.clone() };
            audit(&mut tx, common::audit_values(&create, "token", &new.id, None, Some(new))?).await?;
        }
        audit(&mut tx, common::audit_values(a, "user", &user.username, None, Some(user))?).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }
}
