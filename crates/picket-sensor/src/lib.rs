//! The Picket sensor service on a monitored host: `activate` (make a self-signed client
//! certificate, activate over TLS pinned to the activation file's CA), `run` (heartbeats and
//! configuration pulls over mutual TLS, surviving a control plane that is down), `status`.
//!
//! Layout: `core` is the sans-IO decision logic (what to send next, how long to wait, backoff
//! with jitter) driven by events and a random number; `identity` makes and reads the client
//! certificate; `state` owns the state dir; `client` speaks the sensor API; `run` is the tokio
//! shell that does the IO the core asks for. Detection: `engine` starts, beside `run`'s loop,
//! the event sources of `detect` (followed JSON-lines files, syslog listeners) matching against
//! the active TI of `ti`, the durable alert store of `alerts`, and `uplink` (alert upload, TI
//! packages offered by heartbeats).
//!
//! This crate must not depend on `picket-server` or the store (a sensor talks to the control
//! plane only through the sensor API), and the sensor must not write outside its state dir.

pub mod alerts;
pub mod client;
pub mod core;
pub mod detect;
pub mod engine;
pub mod identity;
pub mod rotate;
pub mod run;
pub mod state;
pub mod ti;
pub mod updates;
pub mod uplink;

/// The version this build reports unless `--version` says otherwise.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
