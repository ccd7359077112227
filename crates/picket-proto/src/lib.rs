//! Wire types of Picket: the REST API's requests and answers, activation files, and the CSV
//! columns. Field names are the public contract of DESIGN.md: add fields, never repurpose one.
//!
//! This crate must not hold logic beyond formatting: rules live in `picket-domain`.

pub mod activation;
pub mod api;
pub mod health;
pub mod releases;
pub mod rollouts;
pub mod sensor;
pub mod ti;
pub mod time;
pub mod updates;
pub mod users;
pub mod webhooks;

pub use activation::ActivationFile;
pub use api::*;
