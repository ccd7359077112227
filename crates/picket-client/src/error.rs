//! `ClientError`: what can go wrong talking to the REST API, keeping the server's error code,
//! message and HTTP status so callers (the CLI) can print the message and pick an exit code.

/// Why a call to the Picket REST API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (`{"error": {"code", "message"}}`).
    #[error("{message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The server's stable error code (`not_found`, `unauthorized`, ...).
        code: String,
        /// The server's message for people.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    // The reqwest error is the source, printed by `{:#}` after this: not repeated here.
    #[error("cannot reach the Picket server at {url}")]
    Transport {
        /// The URL that was called.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    Decode {
        /// The URL that was called.
        url: String,
        /// HTTP status of the answer.
        status: u16,
        /// What could not be read.
        detail: String,
    },
    /// The base URL given to `Client::new` is not usable.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// Writing streamed output (the CSV export) failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The HTTP status of an error answer, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code, if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the server said the thing does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the server refused the credentials or the right (401 or 403).
    pub fn is_auth(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
}
