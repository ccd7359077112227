//! Portal sign-in and browser sessions: a session user acts with their role and
//! subscriptions exactly as an API token with the same would, through the same permission
//! types (`Viewer`, `Operator`, `Admin`), which only this module and the bearer extractors
//! can make.
//!
//! A session token is 32 random bytes (hex) in an HttpOnly cookie; the store keeps only its
//! SHA-256. The form token against cross-site request forgery is derived from the session
//! token (SHA-256 of a label and the token), so it needs no storage, differs per session, and
//! cannot be computed by a page that cannot read the cookie. Failed sign-ins are counted per
//! username in the database, so the limit holds across replicas; unknown usernames are
//! verified against a dummy hash so they take as long to refuse as a wrong password.

use picket_domain::Timestamp;
use picket_domain::user::{SESSION_TTL_MS, SIGN_IN_WINDOW_MS, sign_in_locked};
use picket_store::{Audit, Scope, Session, User};

use super::{Admin, Operator, Principal, Viewer};
use crate::app::users::verify_password;
use crate::app::{App, AppError};
use crate::ids::{new_secret_hex, sha256_hex};

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown user or wrong password (never say which).
    #[error("wrong username or password")]
    Invalid,
    /// Too many recent failures for this username.
    #[error("too many failed sign-ins for this user; wait 15 minutes and try again")]
    Locked,
    /// The store failed.
    #[error(transparent)]
    App(#[from] AppError),
}

/// A new session: the secret for the cookie, shown only this once, and when it expires.
pub struct NewSession {
    /// The cookie value.
    pub token: String,
    /// When it stops working.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession").field("token", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

/// A signed-in user, found by their session cookie.
#[derive(Debug, Clone)]
pub struct SessionUser {
    username: String,
    principal: Principal,
    csrf: String,
    token_hash: String,
}

impl SessionUser {
    /// The sign-in name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Who it is (actor `user:<name>`, role, scope).
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The per-session token every form must carry.
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether `token` is this session's form token (constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Read permission (every role).
    pub fn viewer(&self) -> Viewer {
        Viewer(self.principal.clone())
    }

    /// Operator permission, if the role has it.
    pub fn operator(&self) -> Option<Operator> {
        self.principal.role.can_operate().then(|| Operator(self.principal.clone()))
    }

    /// Admin permission, if the role has it.
    pub fn admin(&self) -> Option<Admin> {
        self.principal.role.can_administer().then(|| Admin(self.principal.clone()))
    }
}

/// The form token of the session whose cookie is `token`.
fn csrf_for(token: &str) -> String {
    sha256_hex(&format!("picket-csrf:{token}"))
}

fn principal_of(user: &User) -> Principal {
    let scope = match &user.subscriptions {
        None => Scope::All,
        Some(s) => Scope::Subscriptions(s.clone()),
    };
    Principal { actor: format!("user:{}", user.username), role: user.role, scope }
}

/// Checks a username and password and starts a session. Refuses without checking once the
/// username has `SIGN_IN_FAILURE_LIMIT` failures in the last 15 minutes.
#[tracing::instrument(skip_all)]
pub async fn sign_in(app: &App, username: &str, password: &str) -> Result<NewSession, SignInError> {
    let key = username.trim().to_lowercase();
    let now = app.now();
    let store = app.store();
    let failures =
        store.count_sign_in_failures(&key, Timestamp(now.0 - SIGN_IN_WINDOW_MS)).await.map_err(AppError::from)?;
    if sign_in_locked(failures) {
        return Err(SignInError::Locked);
    }
    let user = store.get_user(&key).await.map_err(AppError::from)?;
    let ok = verify_password(password.to_string(), user.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match user {
        Some(u) if ok => u,
        _ => {
            store.record_sign_in_failure(&key, now).await.map_err(AppError::from)?;
            tracing::info!(username = %key, "failed sign-in");
            return Err(SignInError::Invalid);
        }
    };
    store.clear_sign_in_failures(&key).await.map_err(AppError::from)?;
    // Expired sessions authenticate nothing already; sign-ins sweep them so the table stays small.
    store.purge_expired_sessions(now).await.map_err(AppError::from)?;
    let token = new_secret_hex();
    let expires_at = Timestamp(now.0 + SESSION_TTL_MS);
    let session =
        Session { token_hash: sha256_hex(&token), username: user.username.clone(), created_at: now, expires_at };
    let audit = Audit { actor: format!("user:{}", user.username), action: "user.sign_in".to_string(), at: now };
    store.create_session(&session, &audit).await.map_err(AppError::from)?;
    Ok(NewSession { token, expires_at })
}

/// The signed-in user of a session cookie; `None` for unknown, expired or ended sessions.
#[tracing::instrument(skip_all)]
pub async fn authenticate_session(app: &App, token: &str) -> Result<Option<SessionUser>, AppError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let token_hash = sha256_hex(token);
    let found = app.store().find_session(&token_hash, app.now()).await?;
    Ok(found.map(|(_, user)| SessionUser {
        username: user.username.clone(),
        principal: principal_of(&user),
        csrf: csrf_for(token),
        token_hash,
    }))
}

/// Ends a session (sign-out).
pub async fn sign_out(app: &App, user: &SessionUser) -> Result<(), AppError> {
    Ok(app.store().delete_session(&user.token_hash).await?)
}
