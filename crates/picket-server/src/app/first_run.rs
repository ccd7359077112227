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
//!
//! Wrong tokens are limited per client address like sign-ins per username (at most
//! `SIGN_IN_FAILURE_LIMIT` in `SIGN_IN_WINDOW_MS`, counted in the database so the limit holds
//! across replicas): a generated bootstrap token cannot be guessed, but `PICKET_BOOTSTRAP_TOKEN`
//! is chosen by a person and may be weak.

use std::net::IpAddr;

use picket_domain::user::{SIGN_IN_WINDOW_MS, sign_in_locked, validate_password, validate_username};
use picket_domain::{Role, Timestamp};
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

/// Why the first run refused a submission.
#[derive(Debug, thiserror::Error)]
pub enum FirstRunError {
    /// Too many wrong tokens from this client recently; the token was not even checked.
    #[error(
        "too many wrong tokens from your address: wait 15 minutes and try again (copy the token from \
         <data-dir>/bootstrap-token on the server rather than typing it)"
    )]
    TooManyGuesses,
    /// Refused or failed as any use case (`Forbidden` for a wrong token).
    #[error(transparent)]
    App(#[from] AppError),
}

/// The client a first-run submission came from, for counting its wrong tokens: its IP
/// address, or for IPv6 its /64 network (one host usually holds a whole /64, so counting
/// single addresses would give it billions of tries). Behind a reverse proxy every client
/// shares the proxy's address, which only makes the limit stricter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRunClient(String);

impl FirstRunClient {
    /// The client at `addr` (`None` when the listener does not say: they share one count).
    pub fn new(addr: Option<IpAddr>) -> FirstRunClient {
        // Upper case on purpose: `sign_in` keys its counts by lower-cased usernames, so no
        // sign-in attempt can add failures to (and lock) a first-run client's count.
        let key = match addr.map(|a| a.to_canonical()) {
            None => "FIRST-RUN unknown".to_string(),
            Some(IpAddr::V4(v4)) => format!("FIRST-RUN {v4}"),
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("FIRST-RUN {:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        FirstRunClient(key)
    }

    /// The key its wrong tokens are counted under.
    pub fn key(&self) -> &str {
        &self.0
    }
}

impl App {
    /// Whether the first run is still to do (no portal user exists or ever existed).
    pub async fn first_run_pending(&self) -> AppResult<bool> {
        Ok(!self.store.any_user().await?)
    }

    /// Creates the first admin user, once, for the holder of an unrestricted admin token;
    /// revokes and replaces the token when it is the bootstrap token. A `client` with
    /// `SIGN_IN_FAILURE_LIMIT` wrong tokens in the last 15 minutes is refused unchecked.
    #[tracing::instrument(skip_all)]
    pub async fn create_first_admin(
        &self,
        client: &FirstRunClient,
        token: &str,
        username: &str,
        password: String,
    ) -> Result<FirstAdmin, FirstRunError> {
        const DONE: &str = "the first admin user already exists: sign in, or ask an admin for an account";
        if !self.first_run_pending().await? {
            return Err(AppError::Conflict(DONE.to_string()).into());
        }
        let now = self.now();
        let since = Timestamp(now.0 - SIGN_IN_WINDOW_MS);
        let guesses = self.store.count_sign_in_failures(client.key(), since).await.map_err(AppError::from)?;
        if sign_in_locked(guesses) {
            tracing::warn!(client = %client.key(), "first-run submission refused: too many wrong tokens");
            return Err(FirstRunError::TooManyGuesses);
        }
        let found = self.store.find_api_token(&sha256_hex(token.trim())).await.map_err(AppError::from)?;
        let proved = match found {
            Some(t) if t.revoked_at.is_none() && t.role == Role::Admin && t.subscriptions.is_none() => t,
            _ => {
                self.store.record_sign_in_failure(client.key(), now).await.map_err(AppError::from)?;
                tracing::info!(client = %client.key(), "first-run submission with a wrong token");
                return Err(AppError::Forbidden(
                    "that is not the bootstrap token (or another unrestricted admin API token): copy it from \
                     <data-dir>/bootstrap-token on the server, or from the PICKET_BOOTSTRAP_TOKEN setting"
                        .to_string(),
                )
                .into());
            }
        };
        validate_username(username).map_err(AppError::from)?;
        validate_password(&password).map_err(AppError::from)?;
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
        if !self.store.create_first_user(&user, swap.as_ref(), &audit).await.map_err(AppError::from)? {
            return Err(AppError::Conflict(DONE.to_string()).into());
        }
        tracing::info!(username = %user.username, revoked_bootstrap = swap.is_some(), "first admin user created");
        Ok(FirstAdmin { username: user.username, replacement_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_addresses_or_ipv6_networks() {
        let key = |a: Option<&str>| FirstRunClient::new(a.map(|a| a.parse().unwrap())).key().to_string();
        assert_eq!(key(Some("192.0.2.7")), "FIRST-RUN 192.0.2.7");
        assert_eq!(key(Some("::ffff:192.0.2.7")), "FIRST-RUN 192.0.2.7", "a mapped IPv4 is that IPv4");
        assert_eq!(key(Some("2001:db8:1:2:3:4:5:6")), "FIRST-RUN 2001:db8:1:2::/64");
        assert_eq!(key(Some("2001:db8:1:2:ffff::1")), key(Some("2001:db8:1:2::9")), "one /64, one count");
        assert_ne!(key(Some("2001:db8:1:3::1")), key(Some("2001:db8:1:2::1")));
        assert_eq!(key(None), "FIRST-RUN unknown");
        // `sign_in` counts under lower-cased usernames: it can never reach these keys.
        assert_ne!(key(Some("192.0.2.7")).to_lowercase(), key(Some("192.0.2.7")));
    }
}
