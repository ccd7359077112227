//! Portal users: create, list, change password, remove (admins), and the password hashing
//! they share with sign-in (`auth::session`).
//!
//! Passwords are hashed with Argon2id (the crate's default parameters, OWASP's minimum) on
//! the blocking pool, because a hash takes tens of milliseconds of CPU that must not stall
//! the async workers. Scoped admins manage only users whose scope lies inside their own,
//! as with tokens.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use picket_domain::user::{validate_password, validate_username};
use picket_proto::users::{CreateUserRequest, UserView};
use picket_store::{Scope, User};

use super::{App, AppError, AppResult};
use crate::auth::Admin;
use crate::ids::new_secret_hex;

fn user_view(u: User) -> UserView {
    UserView { username: u.username, role: u.role, subscriptions: u.subscriptions, created_at: u.created_at }
}

/// Whether a user's scope lies inside `scope`.
fn within(scope: &Scope, subs: &Option<Vec<String>>) -> bool {
    match (scope, subs) {
        (Scope::All, _) => true,
        (Scope::Subscriptions(_), None) => false,
        (Scope::Subscriptions(mine), Some(theirs)) => theirs.iter().all(|s| mine.contains(s)),
    }
}

/// Hashes a password with Argon2id on the blocking pool; the PHC string.
pub(crate) async fn hash_password(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| AppError::Internal(format!("hashing task: {e}")))?
}

/// A hash of a random password, verified against when the username is unknown so that an
/// unknown user takes as long to refuse as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(new_secret_hex().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_else(|e| panic!("argon2 cannot hash with its default parameters: {e}"))
    })
}

/// Checks `password` against `hash` (or the dummy hash when `None`) on the blocking pool.
pub(crate) async fn verify_password(password: String, hash: Option<String>) -> AppResult<bool> {
    tokio::task::spawn_blocking(move || {
        let hash: &str = match &hash {
            Some(h) => h,
            None => dummy_hash(),
        };
        Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
    })
    .await
    .map_err(|e| AppError::Internal(format!("verifying task: {e}")))
}

impl App {
    /// Creates a portal user (admins; scoped admins only inside their scope).
    pub async fn create_user(&self, who: &Admin, req: CreateUserRequest) -> AppResult<UserView> {
        let p = who.principal();
        validate_username(&req.username)?;
        validate_password(&req.password)?;
        if !within(&p.scope, &req.subscriptions) {
            return Err(AppError::Forbidden(
                "a token limited to some subscriptions can only create users limited to those subscriptions"
                    .to_string(),
            ));
        }
        if let Some(subs) = &req.subscriptions {
            let known = self.store.list_subscriptions(&Scope::All).await?;
            if let Some(s) = subs.iter().find(|s| !known.iter().any(|k| &k.name == *s)) {
                return Err(AppError::Validation(format!("subscriptions: unknown subscription {s:?}")));
            }
        }
        let hash = hash_password(req.password).await?;
        let now = self.now();
        let user = User {
            username: req.username,
            password_hash: hash,
            role: req.role,
            subscriptions: req.subscriptions,
            created_at: now,
        };
        self.store.create_user(&user, &p.audit("user.create", now)).await.map_err(|e| match AppError::from(e) {
            AppError::Conflict(_) => AppError::Conflict(format!("a user named {:?} already exists", user.username)),
            e => e,
        })?;
        Ok(user_view(user))
    }

    /// Users the caller may manage, by name.
    pub async fn list_users(&self, who: &Admin) -> AppResult<Vec<UserView>> {
        let scope = &who.principal().scope;
        let users = self.store.list_users().await?;
        Ok(users.into_iter().filter(|u| within(scope, &u.subscriptions)).map(user_view).collect())
    }

    /// Loads a user the caller may manage; others are indistinguishable from missing ones.
    async fn managed_user(&self, who: &Admin, username: &str) -> AppResult<User> {
        match self.store.get_user(username).await? {
            Some(u) if within(&who.principal().scope, &u.subscriptions) => Ok(u),
            _ => Err(AppError::NotFound("user")),
        }
    }

    /// Replaces a user's password; their sessions end.
    pub async fn set_user_password(&self, who: &Admin, username: &str, password: String) -> AppResult<()> {
        validate_password(&password)?;
        let user = self.managed_user(who, username).await?;
        let hash = hash_password(password).await?;
        let audit = who.principal().audit("user.passwd", self.now());
        self.store
            .set_user_password(&user.username, &hash, &audit)
            .await
            .map_err(|e| AppError::from(e).not_found_as("user"))
    }

    /// Removes a user; their sessions end.
    pub async fn delete_user(&self, who: &Admin, username: &str) -> AppResult<()> {
        let user = self.managed_user(who, username).await?;
        let audit = who.principal().audit("user.delete", self.now());
        self.store.delete_user(&user.username, &audit).await.map_err(|e| AppError::from(e).not_found_as("user"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash_password("correct horse battery".into()).await.unwrap();
        let b = hash_password("correct horse battery".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$") && a != b, "salted argon2id: {a}");
        assert!(verify_password("correct horse battery".into(), Some(a.clone())).await.unwrap());
        assert!(!verify_password("wrong horse battery".into(), Some(a)).await.unwrap());
        assert!(!verify_password("correct horse battery".into(), None).await.unwrap(), "dummy never matches");
    }
}
