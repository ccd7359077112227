//! The portal's first run: while no portal user exists, whoever proves possession of an
//! unrestricted admin API token (the bootstrap token printed at first start and kept in
//! `<data-dir>/bootstrap-token`, or `PICKET_BOOTSTRAP_TOKEN`) creates the first admin user.
//!
//! The store creates that user only into an empty users table that never held a user, so the
//! first run happens once, even when two submissions race, and never again after every user
//! was removed (then `picket users add` with an admin token is the way back in)
//! (`FirstRunStore::create_first_user`). When the token
//! proved is the bootstrap token, the same transaction revokes it and stores a new admin
//! token whose secret is returned once, to be shown on the page: the bootstrap token has been
//! printed to a terminal and written to a file, so it is replaced by a credential only the
//! new admin has seen. Any other unrestricted admin token (created through the API) is left
//! alone: whoever made it is using it for automation.

use picket_domain::Role;
use picket_domain::user::{validate_password, validate_username};
use picket_store::{Audit, TokenSwap, User};

use super::users::hash_password;
use super::{App, AppError, AppResult};
use crate::auth::{BOOTSTRAP_DESCRIPTION, new_token_secret, token_record};
use crate::ids::sha256_hex;

/// Description of the admin token that replaces the bootstrap token.
pub const REPLACEMENT_DESCRIPTION: &str = "admin token made at the portal's first run (replaced the bootstrap token)";

/// What the first run did.
pub struct FirstAdmin {
    /// The new admin's username.
    pub username: String,
    /// The secret of the token that replaced the revoked bootstrap token, shown only once;
    /// `None` when the token proved was not the bootstrap token (nothing was revoked).
    pub replacement_token: Option<String>,
}

impl std::fmt::Debug for FirstAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstAdmin")
            .field("username", &self.username)
            .field("replacement_token", &self.replacement_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl App {
    /// Whether the first run is still to do (no portal user exists or ever existed).
    pub async fn first_run_pending(&self) -> AppResult<bool> {
        Ok(!self.store.any_user().await?)
    }

    /// Creates the first admin user, once, for the holder of an unrestricted admin token;
    /// revokes and replaces the token when it is the bootstrap token.
    #[tracing::instrument(skip_all)]
    pub async fn create_first_admin(&self, token: &str, username: &str, password: String) -> AppResult<FirstAdmin> {
        const DONE: &str = "the first admin user already exists: sign in, or ask an admin for an account";
        if !self.first_run_pending().await? {
            return Err(AppError::Conflict(DONE.to_string()));
        }
        let proved = match self.store.find_api_token(&sha256_hex(token.trim())).await? {
            Some(t) if t.revoked_at.is_none() && t.role == Role::Admin && t.subscriptions.is_none() => t,
            _ => {
                return Err(AppError::Forbidden(
                    "that is not the bootstrap token (or another unrestricted admin API token): copy it from \
                     <data-dir>/bootstrap-token on the server, or from the PICKET_BOOTSTRAP_TOKEN setting"
                        .to_string(),
                ));
            }
        };
        validate_username(username)?;
        validate_password(&password)?;
        let now = self.now();
        let user = User {
            username: username.to_string(),
            password_hash: hash_password(password).await?,
            role: Role::Admin,
            subscriptions: None,
            created_at: now,
        };
        let (swap, replacement_token) = if proved.description == BOOTSTRAP_DESCRIPTION {
            let secret = new_token_secret();
            let replacement = token_record(&secret, Role::Admin, None, REPLACEMENT_DESCRIPTION, now);
            (Some(TokenSwap { revoke: proved.id.clone(), replacement }), Some(secret))
        } else {
            (None, None)
        };
        let audit = Audit { actor: format!("token:{}", proved.id), action: "user.first_run".to_string(), at: now };
        if !self.store.create_first_user(&user, swap.as_ref(), &audit).await? {
            return Err(AppError::Conflict(DONE.to_string()));
        }
        tracing::info!(username = %user.username, revoked_bootstrap = swap.is_some(), "first admin user created");
        Ok(FirstAdmin { username: user.username, replacement_token })
    }
}
