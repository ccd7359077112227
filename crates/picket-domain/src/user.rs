//! Rules for portal users: what a username and a password may be, how long a browser session
//! lasts, and when repeated sign-in failures lock a username for a while.

use crate::validate::ValidationError;

/// Longest username.
pub const MAX_USERNAME_LEN: usize = 64;
/// Shortest password: long passphrases beat composition rules (NIST SP 800-63B).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password, in bytes (argon2 accepts more; nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// How long a browser session lasts after sign-in (12 hours: one working day).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Failed sign-ins for one username within `SIGN_IN_WINDOW_MS` before it is refused for a while.
pub const SIGN_IN_FAILURE_LIMIT: u64 = 5;
/// The window failures are counted in (15 minutes).
pub const SIGN_IN_WINDOW_MS: i64 = 15 * 60 * 1000;

fn refuse(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError { field, message: message.into() }
}

/// A username: 1 to 64 of lower-case letters, digits, `.`, `_`, `-`, `@`, starting with a
/// letter or digit (lower case only, so `Alice` and `alice` cannot be two people).
pub fn validate_username(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(refuse("username", "must not be empty"));
    }
    if name.chars().count() > MAX_USERNAME_LEN {
        return Err(refuse("username", format!("is longer than {MAX_USERNAME_LEN} characters")));
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@');
    if !name.chars().all(ok) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(refuse(
            "username",
            format!(
                "{name:?} is not accepted: use lower-case letters, digits, '.', '_', '-', '@', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// A password: at least 12 characters, at most 1024 bytes, no control characters.
pub fn validate_password(password: &str) -> Result<(), ValidationError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(refuse(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters (a passphrase works well)"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(refuse("password", format!("is longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    if password.chars().any(char::is_control) {
        return Err(refuse("password", "must not contain control characters (tabs, newlines)"));
    }
    Ok(())
}

/// Whether `failures` recent failed sign-ins mean the next attempt is refused unchecked.
pub fn sign_in_locked(failures: u64) -> bool {
    failures >= SIGN_IN_FAILURE_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "a", "ops.team-1", "j_doe@example.com", "0x"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "-x", ".x", "a b", "é", "<script>", &"a".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(validate_password("correct horse battery").is_ok());
        assert_eq!(validate_password("short").unwrap_err().field, "password");
        assert!(validate_password("twelve chars\n").is_err());
        assert!(validate_password(&"x".repeat(1025)).is_err());
        assert!(validate_password("ünïcödé-pässwörd").is_ok());
    }

    #[test]
    fn lock_after_five() {
        assert!(!sign_in_locked(4));
        assert!(sign_in_locked(5));
    }
}
