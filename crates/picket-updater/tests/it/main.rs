#![allow(clippy::unwrap_used)]
//! End-to-end tests of `picket-updater` with real processes: `picket serve`, the updater and
//! the real `picket-sensor` inside signed packages, on SQLite and PostgreSQL.

mod harness;
mod install;
mod rollout;
mod update;
