//! `picket serve`: merges its settings (flag > `PICKET_*` env > `--config` TOML file >
//! default), opens the store once, prepares the server (CA, bootstrap token), prints a
//! generated token once, binds the listener and serves until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use picket_domain::{StatusTimings, parse_duration};
use picket_server::ServerConfig;
use serde::Deserialize;

use crate::store;

/// Env var with the first admin token (read from the environment only, never a flag).
const BOOTSTRAP_ENV: &str = "PICKET_BOOTSTRAP_TOKEN";

/// How `picket serve` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Settings of `picket serve`; each may also come from its env var or the `--config` file.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of these settings, keys in snake_case, e.g. disconnect_after = "5m" (flags and env vars win over it).
    #[arg(long, env = "PICKET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the REST API and portal [default: 127.0.0.1:8080].
    #[arg(long, env = "PICKET_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the mutual-TLS sensor API [default: 127.0.0.1:8443].
    #[arg(long, env = "PICKET_SENSOR_LISTEN", value_name = "ADDR")]
    pub sensor_listen: Option<SocketAddr>,
    /// Data dir: SQLite database, CA copy, bootstrap token [default: ./picket-data].
    #[arg(long, env = "PICKET_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// postgres://USER:PASSWORD@HOST/DB for PostgreSQL [default: SQLite at <data-dir>/picket.db].
    #[arg(long, env = "PICKET_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Sensor-API URL written into activation files (repeatable, or comma separated)
    /// [default: https://<sensor-listen>].
    #[arg(long = "sensor-url", env = "PICKET_SENSOR_URLS", value_delimiter = ',', value_name = "URL")]
    pub sensor_url: Vec<String>,
    /// Extra DNS name or IP for the sensor listener's certificate (repeatable, or comma separated).
    #[arg(long = "sensor-hostname", env = "PICKET_SENSOR_HOSTNAMES", value_delimiter = ',', value_name = "NAME")]
    pub sensor_hostname: Vec<String>,
    /// Silence after which a sensor is disconnected [default: 10m].
    #[arg(long, env = "PICKET_DISCONNECT_AFTER", value_parser = duration, value_name = "DURATION")]
    pub disconnect_after: Option<Duration>,
    /// Time after start without a config pull after which a sensor is start_failed [default: 30m].
    #[arg(long, env = "PICKET_START_FAILED_AFTER", value_parser = duration, value_name = "DURATION")]
    pub start_failed_after: Option<Duration>,
    /// Delay of the delayed update ring after a release [default: 72h].
    #[arg(long, env = "PICKET_DELAY_RING_AFTER", value_parser = duration, value_name = "DURATION")]
    pub delay_ring_after: Option<Duration>,
    /// Time a sensor has to report an update healthy [default: 30m].
    #[arg(long, env = "PICKET_UPDATE_DEADLINE", value_parser = duration, value_name = "DURATION")]
    pub update_deadline: Option<Duration>,
    /// Sensors updating at once in a rollout; the next starts only after one of them is cleared
    /// (reports the new version healthy) or fails [default: 1].
    #[arg(long, env = "PICKET_ROLLOUT_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub rollout_concurrency: Option<u32>,
    /// Failed updates after which a rollout pauses until an operator resumes it [default: 1].
    #[arg(long, env = "PICKET_ROLLOUT_MAX_FAILURES", value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub rollout_max_failures: Option<u32>,
    /// How long before expiry sensor certificates are rotated [default: 30d].
    #[arg(long, env = "PICKET_CERT_ROTATE_BEFORE", value_parser = duration, value_name = "DURATION")]
    pub cert_rotate_before: Option<Duration>,
    /// How long an activation file's one-time token stays valid [default: 7d].
    #[arg(long, env = "PICKET_ACTIVATION_TTL", value_parser = duration, value_name = "DURATION")]
    pub activation_ttl: Option<Duration>,
    /// Release public key file that activation files carry and publishes are checked against
    /// (repeatable, or comma separated).
    #[arg(long = "release-key-pub", env = "PICKET_RELEASE_KEY_PUBS", value_delimiter = ',', value_name = "FILE")]
    pub release_key_pub: Vec<PathBuf>,
    /// Largest release package an upload may be, e.g. 512MiB, 2GiB or a number of bytes [default: 512MiB].
    #[arg(long, env = "PICKET_MAX_RELEASE_SIZE", value_parser = byte_size, value_name = "SIZE")]
    pub max_release_size: Option<u64>,
    /// Syslog target for notifications: udp://HOST:PORT or tcp://HOST:PORT.
    #[arg(long, env = "PICKET_SYSLOG", value_name = "URL")]
    pub syslog: Option<String>,
    /// How often health issues are raised and auto-closed [default: 5s, or a fifth of
    /// --disconnect-after when that is shorter].
    #[arg(long, env = "PICKET_HEALTH_CHECK_EVERY", value_parser = duration, value_name = "DURATION")]
    pub health_check_every: Option<Duration>,
    /// A sensor whose threat-intelligence version is below a TI package published longer ago
    /// than this gets a ti_stale health issue [default: 7d].
    #[arg(long, env = "PICKET_TI_STALE_AFTER", value_parser = duration, value_name = "DURATION")]
    pub ti_stale_after: Option<Duration>,
    /// Log format (levels from RUST_LOG, default info) [default: text].
    #[arg(long, env = "PICKET_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Browsers reach the portal over HTTPS through a TLS-terminating proxy: mark session
    /// cookies Secure (named __Host-picket_session) on every answer. Requests the proxy marks
    /// X-Forwarded-Proto: https get Secure cookies without it.
    #[arg(long, env = "PICKET_SECURE_COOKIES", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub secure_cookies: Option<bool>,
}

/// The `--config` file: the same settings as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    sensor_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    #[serde(alias = "sensor_urls")]
    sensor_url: Option<Vec<String>>,
    #[serde(alias = "sensor_hostnames")]
    sensor_hostname: Option<Vec<String>>,
    disconnect_after: Option<String>,
    start_failed_after: Option<String>,
    delay_ring_after: Option<String>,
    update_deadline: Option<String>,
    rollout_concurrency: Option<u32>,
    rollout_max_failures: Option<u32>,
    cert_rotate_before: Option<String>,
    activation_ttl: Option<String>,
    #[serde(alias = "release_key_pubs")]
    release_key_pub: Option<Vec<PathBuf>>,
    max_release_size: Option<String>,
    syslog: Option<String>,
    health_check_every: Option<String>,
    ti_stale_after: Option<String>,
    log_format: Option<LogFormat>,
    secure_cookies: Option<bool>,
}

impl FileConfig {
    fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
    }
}

/// Settings after merging, ready to start with.
#[derive(Debug)]
pub struct Resolved {
    /// What the server crate consumes.
    pub config: ServerConfig,
    /// PostgreSQL URL, or `None` for SQLite.
    pub database_url: Option<String>,
    /// How to log.
    pub log_format: LogFormat,
    /// Portal session cookies are always `Secure` (`--secure-cookies`).
    pub secure_cookies: bool,
}

/// A duration from the flag/env, else from the file (parsed, naming the key), else `default`.
fn pick_duration(flag: Option<Duration>, file: Option<&str>, key: &str, default: Duration) -> anyhow::Result<Duration> {
    match (flag, file) {
        (Some(d), _) => Ok(d),
        (None, Some(s)) => parse_duration(s).with_context(|| format!("config file key {key}")),
        (None, None) => Ok(default),
    }
}

/// A size like `512MiB`, `2GiB`, `100KiB` (or KB/MB/GB, the same powers of 1024) or a number of bytes.
fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}: use e.g. 512MiB, 2GiB or a number of bytes"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("invalid size {s:?}: use e.g. 512MiB, 2GiB or a number of bytes")),
    };
    n.checked_mul(1 << shift).filter(|n| *n > 0).ok_or_else(|| format!("invalid size {s:?}"))
}

fn pick_list<T>(flag: Vec<T>, file: Option<Vec<T>>) -> Vec<T> {
    if flag.is_empty() { file.unwrap_or_default() } else { flag }
}

/// Merges flags/env (already merged by clap) over the file over the defaults.
pub fn resolve(args: ServeArgs, bootstrap_token: Option<String>) -> anyhow::Result<Resolved> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./picket-data"));
    let d = ServerConfig::new(data_dir);
    let timings = StatusTimings {
        disconnect_after: pick_duration(
            args.disconnect_after,
            file.disconnect_after.as_deref(),
            "disconnect_after",
            d.timings.disconnect_after,
        )?,
        start_failed_after: pick_duration(
            args.start_failed_after,
            file.start_failed_after.as_deref(),
            "start_failed_after",
            d.timings.start_failed_after,
        )?,
    };
    let config = ServerConfig {
        listen: args.listen.or(file.listen).unwrap_or(d.listen),
        sensor_listen: args.sensor_listen.or(file.sensor_listen).unwrap_or(d.sensor_listen),
        sensor_urls: pick_list(args.sensor_url, file.sensor_url),
        sensor_hostnames: pick_list(args.sensor_hostname, file.sensor_hostname),
        bootstrap_token: bootstrap_token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        timings,
        delay_ring_after: pick_duration(
            args.delay_ring_after,
            file.delay_ring_after.as_deref(),
            "delay_ring_after",
            d.delay_ring_after,
        )?,
        update_deadline: pick_duration(
            args.update_deadline,
            file.update_deadline.as_deref(),
            "update_deadline",
            d.update_deadline,
        )?,
        rollout_concurrency: args
            .rollout_concurrency
            .or(file.rollout_concurrency)
            .unwrap_or(d.rollout_concurrency)
            .max(1),
        rollout_max_failures: args
            .rollout_max_failures
            .or(file.rollout_max_failures)
            .unwrap_or(d.rollout_max_failures)
            .max(1),
        cert_rotate_before: pick_duration(
            args.cert_rotate_before,
            file.cert_rotate_before.as_deref(),
            "cert_rotate_before",
            d.cert_rotate_before,
        )?,
        activation_ttl: pick_duration(
            args.activation_ttl,
            file.activation_ttl.as_deref(),
            "activation_ttl",
            d.activation_ttl,
        )?,
        release_key_pubs: pick_list(args.release_key_pub, file.release_key_pub),
        max_release_bytes: match (args.max_release_size, file.max_release_size.as_deref()) {
            (Some(n), _) => n,
            (None, Some(s)) => byte_size(s).map_err(anyhow::Error::msg).context("config file key max_release_size")?,
            (None, None) => d.max_release_bytes,
        },
        syslog: args.syslog.or(file.syslog).filter(|s| !s.trim().is_empty()),
        // Shortened timings (tests, demos) shorten the job's period with them.
        health_check_every: pick_duration(
            args.health_check_every,
            file.health_check_every.as_deref(),
            "health_check_every",
            d.health_check_every.min(timings.disconnect_after / 5),
        )?
        .max(Duration::from_millis(100)),
        ti_stale_after: pick_duration(
            args.ti_stale_after,
            file.ti_stale_after.as_deref(),
            "ti_stale_after",
            d.ti_stale_after,
        )?,
        data_dir: d.data_dir,
    };
    let database_url = args.database_url.or(file.database_url).filter(|u| !u.trim().is_empty());
    store::backend_for(database_url.as_deref())?;
    let log_format = args.log_format.or(file.log_format).unwrap_or(LogFormat::Text);
    let secure_cookies = args.secure_cookies.or(file.secure_cookies).unwrap_or(false);
    Ok(Resolved { config, database_url, log_format, secure_cookies })
}

/// Starts tracing to stderr; levels from `RUST_LOG` (default `info`, and only errors of sqlx,
/// whose slow-statement warnings print whole bulk inserts).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The banner that shows a generated bootstrap token once.
fn token_banner(token: &str, saved_at: &Path) -> String {
    let rule = "=".repeat(72);
    format!(
        "{rule}\nPicket generated the first admin API token. It is shown only this once:\n\n    {token}\n\n\
         It is saved in {} (mode 0600), where the picket CLI finds it when run from this directory.\n\
         Create your own tokens with `picket tokens create`, then revoke this one.\n{rule}\n",
        saved_at.display()
    )
}

/// Runs `picket serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let bootstrap = std::env::var(BOOTSTRAP_ENV).ok();
    let Resolved { config, database_url, log_format, secure_cookies } = resolve(args, bootstrap)?;
    init_logging(log_format);
    let store = store::open(database_url.as_deref(), &config.data_dir).await?;
    tracing::info!(backend = store.backend(), data_dir = %config.data_dir.display(), "store opened");
    let listen = config.listen;
    let sensor_listen = config.sensor_listen;
    let token_file = config.data_dir.join(picket_server::auth::BOOTSTRAP_FILE);
    let prepared = picket_server::prepare(config, store).await.context("preparing the server")?;
    // The web portal shares the API listener (`/`, `/login`, `/sensors`, `/static/...`).
    let portal = picket_portal::PortalOptions { secure_cookies };
    let prepared = prepared.mount(move |app| picket_portal::router(app, portal));
    if let Some(token) = &prepared.generated_bootstrap_token {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the server: the token is in the file as well.
        let _ = out.write_all(token_banner(token, &token_file).as_bytes()).and_then(|()| out.flush());
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen} (--listen)"))?;
    let api_addr = listener.local_addr().context("reading the listener's address")?;
    let sensor_listener = tokio::net::TcpListener::bind(sensor_listen)
        .await
        .with_context(|| format!("listening on {sensor_listen} (--sensor-listen)"))?;
    let sensor_addr = sensor_listener.local_addr().context("reading the sensor listener's address")?;
    tracing::info!(
        portal = %format!("http://{api_addr}/"),
        api = %format!("http://{api_addr}/api/v1"),
        healthz = %format!("http://{api_addr}/healthz"),
        sensors = %format!("https://{sensor_addr}/sensor/v1"),
        "picket serve is ready"
    );
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let sensors = picket_server::serve_sensors(
        sensor_listener,
        prepared.app().clone(),
        prepared.tls.clone(),
        stopped(stop_rx.clone()),
    );
    let api = picket_server::serve(listener, prepared, stopped(stop_rx));
    let (api, sensors) = tokio::join!(api, sensors);
    api.context("serving the API")?;
    sensors.context("serving the sensor API")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["picket", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => *a,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let r = resolve(serve_args(&[]), None).unwrap();
        assert_eq!(r.config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(r.config.sensor_listen.to_string(), "127.0.0.1:8443");
        assert_eq!(r.config.data_dir, PathBuf::from("./picket-data"));
        assert_eq!(r.config.timings.disconnect_after, Duration::from_secs(600));
        assert_eq!(r.config.delay_ring_after, Duration::from_secs(72 * 3600));
        assert_eq!(r.database_url, None);
        assert_eq!(r.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("picket.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nsensor_listen = \"127.0.0.1:9443\"\ndisconnect_after = \"5m\"\n\
             sensor_url = [\"https://a:1\", \"https://b:2\"]\nlog_format = \"json\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let r = resolve(serve_args(&["--config", p, "--listen", "127.0.0.1:7000", "--update-deadline", "90s"]), None)
            .unwrap();
        assert_eq!(r.config.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(r.config.sensor_listen.to_string(), "127.0.0.1:9443");
        assert_eq!(r.config.timings.disconnect_after, Duration::from_secs(300));
        assert_eq!(r.config.update_deadline, Duration::from_secs(90));
        assert_eq!(r.config.sensor_urls, vec!["https://a:1", "https://b:2"]);
        assert_eq!(r.log_format, LogFormat::Json);
        let r = resolve(serve_args(&["--config", p, "--sensor-url", "https://c:3"]), Some(" tok ".into())).unwrap();
        assert_eq!(r.config.sensor_urls, vec!["https://c:3"]);
        assert_eq!(r.config.bootstrap_token.as_deref(), Some("tok"));
    }

    #[test]
    fn secure_cookies_from_the_flag_or_the_file() {
        assert!(!resolve(serve_args(&[]), None).unwrap().secure_cookies, "off by default");
        assert!(resolve(serve_args(&["--secure-cookies"]), None).unwrap().secure_cookies);
        assert!(!resolve(serve_args(&["--secure-cookies=false"]), None).unwrap().secure_cookies);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("picket.toml");
        std::fs::write(&path, "secure_cookies = true\n").unwrap();
        assert!(resolve(serve_args(&["--config", path.to_str().unwrap()]), None).unwrap().secure_cookies);
    }

    #[test]
    fn rollout_settings_from_flags_or_file_default_one() {
        let r = resolve(serve_args(&[]), None).unwrap();
        assert_eq!((r.config.rollout_concurrency, r.config.rollout_max_failures), (1, 1));
        let r = resolve(serve_args(&["--rollout-concurrency", "3", "--rollout-max-failures", "2"]), None).unwrap();
        assert_eq!((r.config.rollout_concurrency, r.config.rollout_max_failures), (3, 2));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("picket.toml");
        std::fs::write(&path, "rollout_concurrency = 4\nrollout_max_failures = 5\n").unwrap();
        let r = resolve(serve_args(&["--config", path.to_str().unwrap()]), None).unwrap();
        assert_eq!((r.config.rollout_concurrency, r.config.rollout_max_failures), (4, 5));
        assert!(Cli::try_parse_from(["picket", "serve", "--rollout-concurrency", "0"]).is_err(), "at least 1");
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "disconnect_after = \"10 minutes\"\n").unwrap();
        let e = resolve(serve_args(&["--config", path.to_str().unwrap()]), None).unwrap_err();
        assert!(format!("{e:#}").contains("disconnect_after"), "{e:#}");
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let e = resolve(serve_args(&["--config", path.to_str().unwrap()]), None).unwrap_err();
        assert!(format!("{e:#}").contains("no_such_key"), "{e:#}");
        assert!(Cli::try_parse_from(["picket", "serve", "--disconnect-after", "soon"]).is_err());
        let e = resolve(serve_args(&["--database-url", "sqlite://x.db"]), None).unwrap_err();
        assert!(e.to_string().contains("unsupported database URL"), "{e}");
    }
}
