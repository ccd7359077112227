//! Test harness shared by every crate's integration tests: throw-away PostgreSQL databases,
//! SQLite stores in temp dirs, and real `picket serve` instances on `127.0.0.1:0`.
//!
//! This crate must not be a dependency of anything but tests and benchmarks.

pub mod pg;
pub mod server;
