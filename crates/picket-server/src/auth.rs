//! Who is calling and what they may do.
//!
//! API tokens are `pkt_` + 32 random bytes in hex, stored only as their SHA-256 (hex). A
//! request's `Authorization: Bearer <token>` becomes a `Principal`; the extractors `Viewer`,
//! `Operator` and `Admin` are the permissions as types: their fields are private, the
//! extractors are the only way to get one, and use cases that change things take an
//! `&Operator` or `&Admin`, so a handler without the right type cannot call them. Missing,
//! unknown and revoked tokens get 401; a role too low gets 403.
//!
//! Tokens are looked up on every request (no cache), so a revocation takes effect at once.

pub mod session;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use picket_domain::{Role, Timestamp};
use picket_store::{ApiToken, Audit, Scope, Store};

use crate::api::error::ApiError;
use crate::app::App;
use crate::ids::{new_secret_hex, new_uuid, sha256_hex};
use crate::{ServerConfig, ServerError};

/// Prefix of every API token, so leaked ones are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "pkt_";
/// Description of the bootstrap admin token.
pub const BOOTSTRAP_DESCRIPTION: &str = "bootstrap";
/// File the generated bootstrap token is written to, under the data dir.
pub const BOOTSTRAP_FILE: &str = "bootstrap-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Audit name: `token:<id>`.
    pub actor: String,
    /// Its role.
    pub role: Role,
    /// The sensors it may see.
    pub scope: Scope,
}

impl Principal {
    /// The principal of a stored token.
    pub fn from_token(t: &ApiToken) -> Principal {
        let scope = match &t.subscriptions {
            None => Scope::All,
            Some(s) => Scope::Subscriptions(s.clone()),
        };
        Principal { actor: format!("token:{}", t.id), role: t.role, scope }
    }

    /// An audit record for `action` by this principal at `at`.
    pub fn audit(&self, action: &str, at: Timestamp) -> Audit {
        Audit { actor: self.actor.clone(), action: action.to_string(), at }
    }
}

/// A caller allowed to read (any role).
#[derive(Debug, Clone)]
pub struct Viewer(Principal);
/// A caller allowed to onboard, edit, delete and decommission sensors and create zones.
#[derive(Debug, Clone)]
pub struct Operator(Principal);
/// A caller allowed everything, including tokens, subscriptions and the audit log.
#[derive(Debug, Clone)]
pub struct Admin(Principal);

impl Viewer {
    /// Who it is.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

impl Operator {
    /// Who it is.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

impl Admin {
    /// Who it is.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

/// Reads the bearer token of a request; `None` if there is none or it is malformed.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Finds the principal of a request's bearer token.
#[tracing::instrument(skip_all)]
async fn authenticate(parts: &Parts, app: &App) -> Result<Principal, ApiError> {
    let Some(secret) = bearer(parts) else {
        return Err(ApiError::unauthorized("missing bearer token: send Authorization: Bearer <token>"));
    };
    match app.store().find_api_token(&sha256_hex(secret)).await {
        Ok(Some(token)) if token.revoked_at.is_none() => Ok(Principal::from_token(&token)),
        Ok(_) => Err(ApiError::unauthorized("unknown or revoked token")),
        Err(e) => Err(ApiError::from(crate::app::AppError::from(e))),
    }
}

fn forbidden(needed: Role, had: Role) -> ApiError {
    ApiError::forbidden(format!("this needs the {needed} role; the token has {had}"))
}

impl<S> FromRequestParts<S> for Viewer
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = Arc::<App>::from_ref(state);
        Ok(Viewer(authenticate(parts, &app).await?))
    }
}

impl<S> FromRequestParts<S> for Operator
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = Arc::<App>::from_ref(state);
        let p = authenticate(parts, &app).await?;
        if !p.role.can_operate() {
            return Err(forbidden(Role::Operator, p.role));
        }
        Ok(Operator(p))
    }
}

impl<S> FromRequestParts<S> for Admin
where
    Arc<App>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = Arc::<App>::from_ref(state);
        let p = authenticate(parts, &app).await?;
        if !p.role.can_administer() {
            return Err(forbidden(Role::Admin, p.role));
        }
        Ok(Admin(p))
    }
}

/// A new token secret: `pkt_` + 64 hex digits.
pub fn new_token_secret() -> String {
    format!("{TOKEN_PREFIX}{}", new_secret_hex())
}

/// A stored token (hash only) for `secret`.
#[tracing::instrument(skip_all)]
pub fn token_record(
    secret: &str,
    role: Role,
    subscriptions: Option<Vec<String>>,
    description: &str,
    now: Timestamp,
) -> ApiToken {
    ApiToken {
        id: new_uuid(),
        role,
        subscriptions,
        description: description.to_string(),
        secret_hash: sha256_hex(secret),
        created_at: now,
        revoked_at: None,
    }
}

/// Makes sure an admin token exists at start. With `bootstrap_token` set, a token with that
/// secret is created unless one exists (restarts are idempotent; a revoked one stays
/// revoked). Without it, on the very first start (no tokens at all) one is generated,
/// written to `<data_dir>/bootstrap-token` (0600) and returned to be printed once.
#[tracing::instrument(skip_all)]
pub async fn ensure_bootstrap_token(
    config: &ServerConfig,
    store: &dyn Store,
    now: Timestamp,
) -> Result<Option<String>, ServerError> {
    let audit = Audit { actor: "system".to_string(), action: "token.bootstrap".to_string(), at: now };
    if let Some(secret) = config.bootstrap_token.as_deref() {
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(ServerError::Config(
                "PICKET_BOOTSTRAP_TOKEN must be at least 16 characters (e.g. pkt_ and 64 hex digits)".to_string(),
            ));
        }
        let hash = sha256_hex(secret);
        let existing = store.list_api_tokens().await?;
        match existing.iter().find(|t| t.secret_hash == hash) {
            Some(t) if t.revoked_at.is_some() => {
                tracing::warn!(token_id = %t.id, "PICKET_BOOTSTRAP_TOKEN was revoked; not recreating it");
            }
            Some(_) => {}
            None => {
                let token = token_record(secret, Role::Admin, None, BOOTSTRAP_DESCRIPTION, now);
                store.create_api_token(&token, &audit).await?;
                tracing::info!(token_id = %token.id, "created the bootstrap admin token from PICKET_BOOTSTRAP_TOKEN");
            }
        }
        return Ok(None);
    }
    if !store.list_api_tokens().await?.is_empty() {
        return Ok(None);
    }
    let secret = new_token_secret();
    let token = token_record(&secret, Role::Admin, None, BOOTSTRAP_DESCRIPTION, now);
    store.create_api_token(&token, &audit).await?;
    crate::tls::write_secret_file(&config.data_dir.join(BOOTSTRAP_FILE), &format!("{secret}\n"))?;
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = Request::builder().uri("/");
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(&parts(Some("Bearer pkt_abc"))), Some("pkt_abc"));
        assert_eq!(bearer(&parts(Some("bearer  pkt_abc "))), Some("pkt_abc"));
        assert_eq!(bearer(&parts(Some("Basic abc"))), None);
        assert_eq!(bearer(&parts(Some("Bearer "))), None);
        assert_eq!(bearer(&parts(None)), None);
    }

    #[test]
    fn secrets_are_prefixed_and_stored_hashed() {
        let s = new_token_secret();
        assert!(s.starts_with("pkt_") && s.len() == 68);
        let t = token_record(&s, Role::Viewer, None, "x", Timestamp(0));
        assert_eq!(t.secret_hash, sha256_hex(&s));
        assert!(!format!("{t:?}").contains(&s));
    }
}
