//! The portal's first run: while no portal user exists, whoever holds an admin API token may
//! create the first admin user, exactly once. `FirstRunStore` makes "exactly once" hold
//! against concurrent submissions and across replicas: the user is inserted only if the users
//! table is empty, in one transaction that also swaps the bootstrap API token for a new one
//! when asked. Its SQL and its conformance suite.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{ApiToken, Audit, StoreResult, User};

/// What the first run does to the API token used to prove possession: revoke the token
/// `revoke` and store `replacement` (already hashed) in its place.
#[derive(Debug, Clone)]
pub struct TokenSwap {
    /// Id of the token to revoke (the bootstrap token).
    pub revoke: String,
    /// The new admin token.
    pub replacement: ApiToken,
}

/// The first admin user, created at most once.
#[async_trait]
pub trait FirstRunStore: Send + Sync {
    /// Whether a portal user exists or ever existed (the audit log remembers users created,
    /// signed in or removed), so the first run never comes back.
    async fn any_user(&self) -> StoreResult<bool>;
    /// Creates `user` only if no portal user exists or ever existed, and applies `swap` in the same
    /// transaction; `Ok(false)` (and nothing changed) when a user already exists. Audited as
    /// `audit.action` for the user, `token.revoke` and `token.create` for the swap.
    async fn create_first_user(&self, user: &User, swap: Option<&TokenSwap>, audit: &Audit) -> StoreResult<bool>;
}

/// The SQL both backends share (`$N` dialect).
pub mod sql {
    /// 1 if a user exists or ever existed, else 0. The users table is looked at first; the
    /// audit log (not indexed by kind) only while it is empty, which is rare.
    pub const ANY_USER: &str = "SELECT CASE WHEN EXISTS (SELECT 1 FROM users) THEN 1 \
WHEN EXISTS (SELECT 1 FROM audit_log WHERE target_kind = 'user') THEN 1 ELSE 0 END AS n";
    /// Inserts the user only into an empty users table that never held a user (the backend
    /// serialises writers to the table first, so two first runs cannot both see it empty).
    pub const INSERT_FIRST_USER: &str = "INSERT INTO users (username, password_hash, role, subscriptions, created_at) \
SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM users) \
AND NOT EXISTS (SELECT 1 FROM audit_log WHERE target_kind = 'user')";
}

// ---- conformance ----

/// Expands into one `#[tokio::test]` per first-run conformance function; `$make` as for
/// `conformance_tests!`.
#[macro_export]
macro_rules! first_run_conformance_tests {
    ($make:expr) => {
        $crate::first_run_conformance_tests!(@each $make; first_user_is_created_once, concurrent_first_runs_have_one_winner);
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::first_run::conformance::$name(store).await;
            }
        )+
    };
}

/// The first-run part of the conformance suite.
pub mod conformance {
    use super::*;
    use crate::Store;
    use picket_domain::{Role, Timestamp};

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn audit(action: &str) -> Audit {
        Audit { actor: "test".into(), action: action.into(), at: NOW }
    }

    fn user(name: &str) -> User {
        User {
            username: name.into(),
            password_hash: format!("$argon2id$fake${name}"),
            role: Role::Admin,
            subscriptions: None,
            created_at: NOW,
        }
    }

    fn token(id: &str) -> ApiToken {
        ApiToken {
            id: id.into(),
            role: Role::Admin,
            subscriptions: None,
            description: id.into(),
            secret_hash: format!("{id:0>64}"),
            created_at: NOW,
            revoked_at: None,
        }
    }

    /// The first user is created and the token swapped in one go; once a user exists (or
    /// existed: even after every user is removed) the first run changes nothing.
    pub async fn first_user_is_created_once(store: Arc<dyn Store>) {
        assert!(!store.any_user().await.expect("any_user"));
        store.create_api_token(&token("boot"), &audit("token.bootstrap")).await.expect("bootstrap token");
        let swap = TokenSwap { revoke: "boot".into(), replacement: token("fresh") };
        let created = store.create_first_user(&user("root"), Some(&swap), &audit("user.first_run")).await;
        assert!(created.expect("first run"), "the first user is created");
        assert!(store.any_user().await.expect("any_user"));
        assert_eq!(store.get_user("root").await.expect("get"), Some(user("root")));
        let tokens = store.list_api_tokens().await.expect("tokens");
        let boot = tokens.iter().find(|t| t.id == "boot").expect("boot");
        let fresh = tokens.iter().find(|t| t.id == "fresh").expect("fresh");
        assert_eq!((boot.revoked_at, fresh.revoked_at), (Some(NOW), None), "swapped");
        let again = store.create_first_user(&user("second"), None, &audit("user.first_run")).await;
        assert!(!again.expect("second run"), "refused once a user exists");
        assert_eq!(store.get_user("second").await.expect("get"), None);
        let log = store.list_audit(None, 100).await.expect("audit");
        let actions: Vec<&str> = log.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["user.first_run", "token.create", "token.revoke", "token.bootstrap"], "{actions:?}");
        assert!(!format!("{log:?}").contains("argon2id"), "hashes stay out of the audit log");
        store.delete_user("root", &audit("user.delete")).await.expect("delete");
        assert!(store.list_users().await.expect("users").is_empty());
        assert!(store.any_user().await.expect("any_user"), "a removed user still counts");
        let after_removal = store.create_first_user(&user("third"), None, &audit("user.first_run")).await;
        assert!(!after_removal.expect("third run"), "the first run never comes back");
    }

    /// Many concurrent first runs with different usernames: exactly one user results.
    pub async fn concurrent_first_runs_have_one_winner(store: Arc<dyn Store>) {
        let users: Vec<User> = (0..8).map(|n| user(&format!("admin{n}"))).collect();
        let a = audit("user.first_run");
        let runs = users.iter().map(|u| store.create_first_user(u, None, &a));
        let results = futures_util::future::join_all(runs).await;
        let winners = results.into_iter().map(|r| r.expect("first run")).filter(|won| *won).count();
        assert_eq!(winners, 1, "exactly one first admin");
        assert_eq!(store.list_users().await.expect("users").len(), 1);
    }
}
