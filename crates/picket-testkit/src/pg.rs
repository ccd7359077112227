//! Throw-away PostgreSQL databases for tests.
