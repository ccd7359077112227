//! End-to-end tests of `picket-sensor` against a real `picket serve`, both as processes on
//! loopback, on SQLite and on PostgreSQL (through `./scripts/test.sh`).

mod detection;
mod harness;
mod health;
mod lifecycle;
mod modes;
mod notify;
mod refusals;
mod rotation;
mod ti_alerts;
