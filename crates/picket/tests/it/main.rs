//! Integration tests of the real `picket` binary: `picket serve` runs as a process on free
//! loopback ports with a temp data dir, and the admin commands drive it as an operator would,
//! checking output and exit codes.

mod harness;

mod alerts;
mod cli;
mod demo;
mod health;
mod release;
mod rollout;
mod serve;
mod simulate;
mod ti;
mod users;
mod webhooks;
