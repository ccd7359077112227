//! Browser tests of the portal in real headless Chromium over WebDriver (fantoccini), against
//! a real server (`picket_testkit::server::TestServer` on SQLite, portal mounted). They need
//! a running chromedriver named by `PICKET_TEST_WEBDRIVER`, which `./scripts/test.sh` starts;
//! without it they fail with that advice (they never skip).

// Helpers outside #[test] functions panic on purpose: a failed fixture is a failed test.
#![allow(clippy::unwrap_used)]

mod alerts;
mod browser;

mod health;
mod live;
mod releases;
mod security;
mod sensors;
mod setup;
mod sites;
mod ti;
