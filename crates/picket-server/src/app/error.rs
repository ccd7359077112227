//! What a use case can refuse or fail with, in terms of the domain; `api` maps these to
//! HTTP statuses and the `{"error": {"code", "message"}}` body.

use picket_domain::ValidationError;
use picket_store::StoreError;

/// Why a use case did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The record does not exist, or is outside the caller's scope (indistinguishable).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule or a state forbids it (duplicate name, sensor already activated).
    #[error("{0}")]
    Conflict(String),
    /// A field value is refused; the message names the field and what is accepted.
    #[error("{0}")]
    Validation(String),
    /// A request parameter is malformed (a filter value, a cursor, a limit).
    #[error("{0}")]
    BadRequest(String),
    /// The caller's role or scope does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed; details go to the log, not to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand for use-case results.
pub type AppResult<T> = Result<T, AppError>;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound("record"),
            StoreError::Conflict(m) => AppError::Conflict(m),
            StoreError::InvalidReference(m) => AppError::Validation(m),
            e @ (StoreError::Backend(_) | StoreError::Corrupt(_)) => AppError::Internal(e.to_string()),
        }
    }
}

impl From<ValidationError> for AppError {
    fn from(e: ValidationError) -> Self {
        AppError::Validation(e.to_string())
    }
}

impl AppError {
    /// Replaces a store `NotFound` with one naming the record kind.
    pub(crate) fn not_found_as(self, kind: &'static str) -> AppError {
        match self {
            AppError::NotFound(_) => AppError::NotFound(kind),
            e => e,
        }
    }
}
