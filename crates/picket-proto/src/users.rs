//! Wire types of the portal users endpoints (`/api/v1/users`).

use picket_domain::{Role, Timestamp};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/users`: a new portal user.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Sign-in name.
    pub username: String,
    /// The password (sent once, stored only as an argon2id hash).
    pub password: String,
    /// Role.
    pub role: Role,
    /// Limit to these subscriptions; absent or null = all.
    #[serde(default)]
    pub subscriptions: Option<Vec<String>>,
}

impl std::fmt::Debug for CreateUserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUserRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("role", &self.role)
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

/// `PUT /api/v1/users/{name}/password`: a new password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    /// The new password.
    pub password: String,
}

impl std::fmt::Debug for SetPasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetPasswordRequest { password: <redacted> }")
    }
}

/// A portal user as listed (never with a password or hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    /// Sign-in name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Limited to these subscriptions; null = all.
    pub subscriptions: Option<Vec<String>>,
    /// When created.
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: Timestamp,
}
