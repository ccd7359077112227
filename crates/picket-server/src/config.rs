//! Settings of `picket serve`, already merged from flags, `PICKET_*` env vars and the TOML
//! file by the binary; this crate only consumes them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use picket_domain::StatusTimings;

/// Everything `picket serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// REST API, portal, `/metrics`, `/healthz` (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Mutual-TLS sensor listener (default `127.0.0.1:8443`).
    pub sensor_listen: SocketAddr,
    /// Data dir: SQLite file, CA copy, bootstrap token (default `./picket-data`).
    pub data_dir: PathBuf,
    /// Sensor-listener URLs written into activation files; empty = `https://<sensor_listen>`.
    pub sensor_urls: Vec<String>,
    /// Extra DNS names / IPs for the sensor listener's server certificate.
    pub sensor_hostnames: Vec<String>,
    /// `PICKET_BOOTSTRAP_TOKEN`: the first admin token; generated when absent.
    pub bootstrap_token: Option<String>,
    /// Status rule timings (`PICKET_DISCONNECT_AFTER`, `PICKET_START_FAILED_AFTER`).
    pub timings: StatusTimings,
    /// `PICKET_DELAY_RING_AFTER` (72h).
    pub delay_ring_after: Duration,
    /// `PICKET_UPDATE_DEADLINE` (30m).
    pub update_deadline: Duration,
    /// Update grants open at once in a rollout (`PICKET_ROLLOUT_CONCURRENCY`, 1).
    pub rollout_concurrency: u32,
    /// Failed updates that pause a rollout until resumed (`PICKET_ROLLOUT_MAX_FAILURES`, 1).
    pub rollout_max_failures: u32,
    /// `PICKET_CERT_ROTATE_BEFORE` (30d).
    pub cert_rotate_before: Duration,
    /// How long an activation token stays valid (7d).
    pub activation_ttl: Duration,
    /// Release public key files carried by activation files (`--release-key-pub`).
    pub release_key_pubs: Vec<PathBuf>,
    /// Largest release package `POST /api/v1/releases` accepts (`--max-release-size`, 512 MiB).
    pub max_release_bytes: u64,
    /// Syslog target for notifications (`udp://host:port` or `tcp://...`).
    pub syslog: Option<String>,
    /// How often the status job raises and auto-closes health issues
    /// (`PICKET_HEALTH_CHECK_EVERY`, 5s).
    pub health_check_every: Duration,
    /// A sensor whose TI version is below a TI package published longer ago than this gets a
    /// `ti_stale` health issue (`PICKET_TI_STALE_AFTER`, 7d).
    pub ti_stale_after: Duration,
}

impl ServerConfig {
    /// The defaults of DESIGN.md, with the data dir given.
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            sensor_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir,
            sensor_urls: Vec::new(),
            sensor_hostnames: Vec::new(),
            bootstrap_token: None,
            timings: StatusTimings::default(),
            delay_ring_after: Duration::from_secs(72 * 3600),
            update_deadline: Duration::from_secs(30 * 60),
            rollout_concurrency: 1,
            rollout_max_failures: 1,
            cert_rotate_before: Duration::from_secs(30 * 86400),
            activation_ttl: Duration::from_secs(7 * 86400),
            release_key_pubs: Vec::new(),
            max_release_bytes: 512 << 20,
            syslog: None,
            health_check_every: Duration::from_secs(5),
            ti_stale_after: Duration::from_secs(7 * 86400),
        }
    }
}
