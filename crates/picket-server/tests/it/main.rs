//! Integration tests of the REST API: each test starts a real server on `127.0.0.1:0` and
//! runs once against SQLite (`sqlite::`) and once against PostgreSQL (`postgres::`, which
//! needs the throw-away cluster of `./scripts/test.sh`).

// Helpers outside #[test] functions panic on purpose: a failed fixture is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

mod activation;
mod admin;
mod alerts;
mod auth;
mod errors;
mod export;
mod health_issues;
mod listing;
mod notify;
mod ops;
mod releases;
mod rollouts;
mod scope;
mod sensors;
mod service_status;
mod ti;
mod users;
