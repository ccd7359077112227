//! The one error type every backend returns; driver errors are flattened to text here so no
//! backend type leaks into callers.

/// What went wrong in storage, in terms the use cases can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist (or is outside the caller's scope, which must look the same).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken (e.g. a duplicate sensor name); the text names it.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A reference to something missing (an unknown zone or subscription); the text names it.
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Backend(String),
    /// Stored data could not be read back (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;
