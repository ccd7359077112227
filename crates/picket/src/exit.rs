//! Exit codes scripts can trust, and how an error maps to one.
//!
//! The codes are part of the CLI's contract (printed by `picket --help`): 0 ok, 1 generic
//! failure, 2 usage error, 3 not found, 4 not authenticated or not allowed, 5 refused input
//! (validation failed or conflict).

use picket_client::ClientError;

/// Something failed that has no more specific code.
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// The sensor, token or other record does not exist.
pub const NOT_FOUND: u8 = 3;
/// No token, a bad token, or a token without the right (401/403).
pub const AUTH: u8 = 4;
/// The server refused the input: validation (400/422) or conflict (409).
pub const REFUSED: u8 = 5;

/// The text `picket --help` ends with.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  failure (server unreachable, server error, local file error, ...)
  2  usage error (bad flags or arguments, a missing --yes without a terminal)
  3  not found (404)
  4  not authenticated or not allowed (no token, 401, 403)
  5  input refused: validation failed or conflict (400, 409, 422)";

/// An error of the CLI itself that carries its exit code; its message is printed as is.
#[derive(Debug)]
pub enum CliError {
    /// The command was used wrongly in a way clap cannot see.
    Usage(String),
    /// There is no token to authenticate with.
    Auth(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Auth(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

/// A client error with a hint about how the token was found; shown as `<message> (<hint>)`.
#[derive(Debug)]
pub struct Hinted {
    /// The server's refusal.
    pub error: ClientError,
    /// What to tell the operator about it.
    pub hint: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.hint)
    }
}

impl std::error::Error for Hinted {}

fn client_code(e: &ClientError) -> u8 {
    match e.status() {
        Some(404) => NOT_FOUND,
        Some(401 | 403) => AUTH,
        Some(400 | 409 | 422) => REFUSED,
        _ => FAILURE,
    }
}

/// The exit code for an error: the first error in its chain that says.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return client_code(e);
        }
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            return client_code(&h.error);
        }
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return match e {
                CliError::Usage(_) => USAGE,
                CliError::Auth(_) => AUTH,
            };
        }
    }
    FAILURE
}

/// Whether the error is only that stdout's reader went away (`picket ... | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> anyhow::Error {
        anyhow::Error::new(ClientError::Api { status, code: "x".into(), message: "m".into() })
    }

    #[test]
    fn statuses_map_to_documented_codes() {
        assert_eq!(code_for(&api(404)), NOT_FOUND);
        assert_eq!(code_for(&api(401)), AUTH);
        assert_eq!(code_for(&api(403)), AUTH);
        for s in [400, 409, 422] {
            assert_eq!(code_for(&api(s)), REFUSED);
        }
        assert_eq!(code_for(&api(500)), FAILURE);
        assert_eq!(code_for(&api(404).context("showing sensor")), NOT_FOUND);
        assert_eq!(code_for(&anyhow::Error::new(CliError::Usage("u".into()))), USAGE);
        assert_eq!(code_for(&anyhow::anyhow!("other")), FAILURE);
        let hinted = Hinted {
            error: ClientError::Api { status: 401, code: "unauthorized".into(), message: "m".into() },
            hint: "h".into(),
        };
        assert_eq!(hinted.to_string(), "m (h)");
        assert_eq!(code_for(&anyhow::Error::new(hinted)), AUTH);
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("x")));
    }
}
