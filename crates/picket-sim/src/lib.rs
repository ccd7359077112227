//! The fleet simulator behind `picket simulate` and `picket-bench heartbeats`: onboards sensors
//! through the REST API, activates each with its own self-signed certificate over the real
//! sensor API, then heartbeats them at an interval over mutual-TLS keep-alive connections,
//! measuring rate, errors and latency (HDR histograms).
//!
//! Layout: `identity` makes the per-sensor certificates; `tls` builds each sensor's rustls
//! client configuration (the certificate is the identity, so no two sensors share a
//! connection or a TLS session); `conn` is one HTTP/1.1 connection over mutual TLS;
//! `fleet` onboards, activates, saves and loads simulated sensors; `run` schedules the
//! heartbeats within a bounded number of open connections; `stats` counts and measures;
//! `update` runs sensors that carry out update grants (download, check, simulated restart,
//! report) for the fleet-update benchmark.
//!
//! This crate must not depend on `picket-server` or a store: like a real sensor it talks to
//! the control plane only through the REST API (onboarding) and the sensor API.

pub mod conn;
pub mod fleet;
pub mod identity;
pub mod run;
pub mod stats;
pub mod tls;
pub mod update;

pub use fleet::{Fleet, OnboardOptions, SimSensor};
pub use run::{RunOptions, open_files_limit};
pub use stats::{Stats, Summary};

/// Why the simulator could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The REST API refused or could not be reached.
    #[error("{what}")]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: picket_client::ClientError,
    },
    /// A bad option or input.
    #[error("{0}")]
    Setup(String),
    /// TCP connect failed.
    #[error("cannot connect to the sensor listener at {addr}")]
    Connect {
        /// Where.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with the sensor listener failed: {0}")]
    Tls(String),
    /// HTTP failed on an open connection.
    #[error("HTTP: {0}")]
    Http(String),
    /// The sensor API answered with an error status.
    #[error("the sensor API refused ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// A call took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// Reading or writing a file.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SimError {
    /// The message with its causes, `a: b: c`.
    pub fn message(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(c) = src {
            let t = c.to_string();
            if !s.contains(&t) {
                s.push_str(": ");
                s.push_str(&t);
            }
            src = c.source();
        }
        s
    }

    /// A short label for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SimError::Api { .. } => "api",
            SimError::Setup(_) => "setup",
            SimError::Connect { .. } => "connect",
            SimError::Tls(_) => "tls",
            SimError::Http(_) => "http",
            SimError::Refused { status: 401, .. } => "401 unauthorized",
            SimError::Refused { status, .. } if *status >= 500 => "5xx",
            SimError::Refused { .. } => "4xx",
            SimError::Timeout(_) => "timeout",
            SimError::Io { .. } => "io",
        }
    }
}
