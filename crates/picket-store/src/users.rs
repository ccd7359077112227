//! What the portal persists: users (argon2id password hashes only), browser sessions (only
//! the SHA-256 of their token), and sign-in failures (counted here, in the database, so a
//! rate limit holds across every replica). The `PortalStore` trait, its records, the SQL both
//! backends share, and its conformance suite.

use std::sync::Arc;

use async_trait::async_trait;
use picket_domain::{Role, Timestamp};
use serde::Serialize;

use crate::sql::{Columns, Value};
use crate::{Audit, StoreError, StoreResult};

/// A portal user as stored.
#[derive(Clone, PartialEq, Serialize)]
pub struct User {
    /// Unique name (lower case), what people sign in with.
    pub username: String,
    /// Argon2id hash in PHC string form; never the password.
    #[serde(skip)]
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// Subscriptions the user is limited to; `None` = all.
    pub subscriptions: Option<Vec<String>>,
    /// When created.
    pub created_at: Timestamp,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("subscriptions", &self.subscriptions)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A signed-in browser session; the cookie's token is kept only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the session token.
    pub token_hash: String,
    /// Whose session.
    pub username: String,
    /// When signed in.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token_hash", &"<redacted>")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Users, sessions and sign-in failures. Every change to a user is audited in its
/// transaction; removing a user or changing a password ends the user's sessions.
#[async_trait]
pub trait PortalStore: Send + Sync {
    /// Creates a user; `Conflict` if the name exists.
    async fn create_user(&self, user: &User, audit: &Audit) -> StoreResult<()>;
    /// One user.
    async fn get_user(&self, username: &str) -> StoreResult<Option<User>>;
    /// All users, by name.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces a user's password hash and ends their sessions; `NotFound` if no such user.
    async fn set_user_password(&self, username: &str, password_hash: &str, audit: &Audit) -> StoreResult<()>;
    /// Deletes a user and their sessions; `NotFound` if no such user.
    async fn delete_user(&self, username: &str, audit: &Audit) -> StoreResult<()>;

    /// Stores a new session (and audits the sign-in).
    async fn create_session(&self, session: &Session, audit: &Audit) -> StoreResult<()>;
    /// The unexpired session with this token hash, with its user.
    async fn find_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<(Session, User)>>;
    /// Ends a session (sign-out); ending a missing one is not an error.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// Deletes sessions that expired before `now`; returns how many.
    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    /// Records a failed sign-in for `key` (the lower-cased username tried).
    async fn record_sign_in_failure(&self, key: &str, at: Timestamp) -> StoreResult<()>;
    /// How many failed sign-ins for `key` happened at or after `since`.
    async fn count_sign_in_failures(&self, key: &str, since: Timestamp) -> StoreResult<u64>;
    /// Forgets the failures of `key` (after a successful sign-in).
    async fn clear_sign_in_failures(&self, key: &str) -> StoreResult<()>;
}

/// The SQL both backends share for users, sessions and sign-in failures (`$N` dialect).
pub mod sql {
    use super::*;

    /// Creates a user unless the name exists (then no row is affected).
    pub const INSERT_USER: &str = "INSERT INTO users (username, password_hash, role, subscriptions, created_at) \
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING";
    /// The user named `$1`.
    pub const SELECT_USER: &str =
        "SELECT username, password_hash, role, subscriptions, created_at FROM users WHERE username = $1";
    /// All users, by name.
    pub const SELECT_USERS: &str =
        "SELECT username, password_hash, role, subscriptions, created_at FROM users ORDER BY username";
    /// Sets user `$1`'s hash to `$2`.
    pub const UPDATE_PASSWORD: &str = "UPDATE users SET password_hash = $2 WHERE username = $1";
    /// Deletes user `$1`.
    pub const DELETE_USER: &str = "DELETE FROM users WHERE username = $1";
    /// Ends every session of user `$1`.
    pub const DELETE_USER_SESSIONS: &str = "DELETE FROM sessions WHERE username = $1";
    /// Stores a session.
    pub const INSERT_SESSION: &str =
        "INSERT INTO sessions (token_hash, username, created_at, expires_at) VALUES ($1, $2, $3, $4)";
    /// The session with hash `$1` unexpired at `$2`, joined with its user.
    pub const SELECT_SESSION: &str = "SELECT s.token_hash, s.username, s.created_at AS session_created_at, \
s.expires_at, u.password_hash, u.role, u.subscriptions, u.created_at \
FROM sessions s JOIN users u ON u.username = s.username WHERE s.token_hash = $1 AND s.expires_at > $2";
    /// Ends the session with hash `$1`.
    pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = $1";
    /// Deletes sessions expired at `$1`.
    pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";
    /// Records a failure of key `$1` at `$2`.
    pub const INSERT_FAILURE: &str = "INSERT INTO sign_in_failures (key, at) VALUES ($1, $2)";
    /// Counts failures of key `$1` at or after `$2`.
    pub const COUNT_FAILURES: &str = "SELECT COUNT(*) AS n FROM sign_in_failures WHERE key = $1 AND at >= $2";
    /// Forgets the failures of key `$1`.
    pub const CLEAR_FAILURES: &str = "DELETE FROM sign_in_failures WHERE key = $1";

    /// The values of [`INSERT_USER`].
    pub fn user_values(u: &User) -> StoreResult<Vec<Value>> {
        let subs = u
            .subscriptions
            .as_ref()
            .map(|s| serde_json::to_string(s).map_err(|e| StoreError::Corrupt(format!("subscriptions: {e}"))))
            .transpose()?;
        Ok(vec![
            Value::Text(u.username.clone()),
            Value::Text(u.password_hash.clone()),
            Value::Text(u.role.as_str().to_string()),
            Value::OptText(subs),
            Value::Int(u.created_at.0),
        ])
    }

    /// Reads a user row (`created_at` is the user's).
    pub fn decode_user(r: &impl Columns) -> StoreResult<User> {
        let subscriptions = r
            .opt_text("subscriptions")?
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("column subscriptions: {e}"))))
            .transpose()?;
        let role_text = r.text("role")?;
        let role = role_text.parse::<Role>().map_err(|e| StoreError::Corrupt(format!("column role: {e}")))?;
        Ok(User {
            username: r.text("username")?,
            password_hash: r.text("password_hash")?,
            role,
            subscriptions,
            created_at: Timestamp(r.int("created_at")?),
        })
    }

    /// Reads a row of [`SELECT_SESSION`].
    pub fn decode_session(r: &impl Columns) -> StoreResult<(Session, User)> {
        let user = decode_user(r)?;
        let session = Session {
            token_hash: r.text("token_hash")?,
            username: user.username.clone(),
            created_at: Timestamp(r.int("session_created_at")?),
            expires_at: Timestamp(r.int("expires_at")?),
        };
        Ok((session, user))
    }

    /// The conflict of a duplicate user name.
    pub fn user_exists(name: &str) -> StoreError {
        StoreError::Conflict(format!("a user named {name:?} already exists"))
    }
}

// ---- conformance ----

/// Expands into one `#[tokio::test]` per portal conformance function; `$make` as for
/// `conformance_tests!`.
#[macro_export]
macro_rules! portal_conformance_tests {
    ($make:expr) => {
        $crate::portal_conformance_tests!(@each $make; users_crud, sessions_expire_and_end, sign_in_failures);
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::users::conformance::$name(store).await;
            }
        )+
    };
}

/// The portal part of the conformance suite.
pub mod conformance {
    use super::*;
    use crate::Store;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn audit(action: &str) -> Audit {
        Audit { actor: "test".into(), action: action.into(), at: NOW }
    }

    fn user(name: &str, role: Role, subs: Option<&[&str]>) -> User {
        User {
            username: name.into(),
            password_hash: format!("$argon2id$fake${name}"),
            role,
            subscriptions: subs.map(|s| s.iter().map(|x| x.to_string()).collect()),
            created_at: NOW,
        }
    }

    /// Create, read, list, change password, delete; duplicates conflict; changes are audited.
    pub async fn users_crud(store: Arc<dyn Store>) {
        let alice = user("alice", Role::Admin, None);
        let bob = user("bob", Role::Viewer, Some(&["default", "emea"]));
        store.create_user(&bob, &audit("user.create")).await.expect("create bob");
        store.create_user(&alice, &audit("user.create")).await.expect("create alice");
        assert_eq!(store.get_user("bob").await.expect("get"), Some(bob.clone()), "subscriptions round-trip");
        assert_eq!(store.get_user("nobody").await.expect("get"), None);
        assert_eq!(store.list_users().await.expect("list"), vec![alice.clone(), bob.clone()], "by name");
        let e = store.create_user(&alice, &audit("user.create")).await;
        assert!(matches!(e, Err(StoreError::Conflict(_))), "duplicate user: {e:?}");
        store.set_user_password("bob", "$argon2id$new", &audit("user.passwd")).await.expect("passwd");
        assert_eq!(store.get_user("bob").await.expect("get").map(|u| u.password_hash), Some("$argon2id$new".into()));
        let e = store.set_user_password("nobody", "x", &audit("user.passwd")).await;
        assert!(matches!(e, Err(StoreError::NotFound)), "passwd of a missing user: {e:?}");
        store.delete_user("bob", &audit("user.delete")).await.expect("delete");
        assert_eq!(store.get_user("bob").await.expect("get"), None);
        let e = store.delete_user("bob", &audit("user.delete")).await;
        assert!(matches!(e, Err(StoreError::NotFound)), "second delete: {e:?}");
        let log = store.list_audit(None, 100).await.expect("audit");
        let actions: Vec<&str> = log.iter().filter(|a| a.target_kind == "user").map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["user.delete", "user.passwd", "user.create", "user.create"], "every change audited");
        assert!(
            !log.iter().any(|a| format!("{:?}{:?}", a.before, a.after).contains("argon2id")),
            "hashes stay out of the audit log"
        );
    }

    /// Sessions are found until they expire, end on sign-out, on a password change and when
    /// their user is removed.
    pub async fn sessions_expire_and_end(store: Arc<dyn Store>) {
        store.create_user(&user("carol", Role::Operator, None), &audit("user.create")).await.expect("create");
        let s = |h: &str, exp: i64| Session {
            token_hash: h.into(),
            username: "carol".into(),
            created_at: NOW,
            expires_at: Timestamp(NOW.0 + exp),
        };
        for (h, exp) in [("h1", 1000), ("h2", 1000), ("h3", 10)] {
            store.create_session(&s(h, exp), &audit("user.sign_in")).await.expect("create session");
        }
        let (found, u) = store.find_session("h1", NOW).await.expect("find").expect("session h1");
        assert_eq!((found, u.username.as_str(), u.role), (s("h1", 1000), "carol", Role::Operator));
        assert!(store.find_session("h3", Timestamp(NOW.0 + 10)).await.expect("find").is_none(), "expired");
        assert!(store.find_session("zz", NOW).await.expect("find").is_none(), "unknown");
        assert_eq!(store.purge_expired_sessions(Timestamp(NOW.0 + 10)).await.expect("purge"), 1);
        store.delete_session("h1").await.expect("sign out");
        store.delete_session("h1").await.expect("sign out twice");
        assert!(store.find_session("h1", NOW).await.expect("find").is_none(), "signed out");
        store.set_user_password("carol", "$argon2id$other", &audit("user.passwd")).await.expect("passwd");
        assert!(store.find_session("h2", NOW).await.expect("find").is_none(), "a new password ends sessions");
        store.create_session(&s("h4", 1000), &audit("user.sign_in")).await.expect("create session");
        store.delete_user("carol", &audit("user.delete")).await.expect("delete");
        assert!(store.find_session("h4", NOW).await.expect("find").is_none(), "removing a user ends sessions");
    }

    /// Failures are counted per key within a window and cleared on success.
    pub async fn sign_in_failures(store: Arc<dyn Store>) {
        for i in 0..3 {
            store.record_sign_in_failure("dave", Timestamp(NOW.0 + i)).await.expect("record");
        }
        store.record_sign_in_failure("erin", NOW).await.expect("record");
        assert_eq!(store.count_sign_in_failures("dave", NOW).await.expect("count"), 3);
        assert_eq!(store.count_sign_in_failures("dave", Timestamp(NOW.0 + 1)).await.expect("count"), 2);
        store.clear_sign_in_failures("dave").await.expect("clear");
        assert_eq!(store.count_sign_in_failures("dave", NOW).await.expect("count"), 0);
        assert_eq!(store.count_sign_in_failures("erin", NOW).await.expect("count"), 1);
    }
}
