//! The `picket-sensor` binary: clap → `activate`, `run` or `status`; errors print their chain
//! and exit 1 (`run` only exits on a signal or an unusable state dir, never on the network).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use picket_sensor::core::Timings;
use picket_sensor::identity::cert_info;
use picket_sensor::run::{self, RunOptions};
use picket_sensor::state::StateDir;
use serde::Serialize;

/// The Picket sensor service.
#[derive(Debug, Parser)]
#[command(name = "picket-sensor", about = "The Picket sensor service on a monitored host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    picket_domain::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this host's client certificate and activate it with a one-time activation file.
    Activate {
        /// The activation file downloaded from the control plane.
        #[arg(long, value_name = "FILE")]
        activation_file: PathBuf,
        /// Where the sensor keeps its identity and state.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Run the sensor: heartbeats and configuration pulls until SIGTERM.
    Run {
        /// The state dir of an activated sensor.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Time between heartbeats (jittered by ±10%).
        #[arg(long, value_parser = duration, default_value = "30s", value_name = "DURATION")]
        heartbeat_interval: Duration,
        /// Longest wait between retries while the control plane is unreachable.
        #[arg(long, value_parser = duration, default_value = "60s", value_name = "DURATION", hide = true)]
        max_backoff: Duration,
        /// The version to report (default: this build's).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    /// Print the sensor's identity, certificate expiry, last contact and last error.
    Status {
        /// The state dir.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
struct StatusOut {
    sensor_id: String,
    sensor_name: String,
    mode: picket_domain::Mode,
    control_plane_urls: Vec<String>,
    cert_fingerprint: String,
    #[serde(with = "picket_proto::time::rfc3339")]
    cert_expires_at: picket_domain::Timestamp,
    #[serde(with = "picket_proto::time::rfc3339")]
    activated_at: picket_domain::Timestamp,
    #[serde(with = "picket_proto::time::rfc3339_opt")]
    last_contact_at: Option<picket_domain::Timestamp>,
    last_error: Option<String>,
    #[serde(with = "picket_proto::time::rfc3339_opt")]
    last_error_at: Option<picket_domain::Timestamp>,
    config_version_applied: i64,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Completes on SIGTERM or SIGINT.
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
        _ = ctrl_c => tracing::info!("SIGINT received, stopping"),
        _ = terminate => tracing::info!("SIGTERM received, stopping"),
    }
}

fn status(state_dir: PathBuf, json: bool) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let me = state.read_sensor()?;
    let (cert_pem, _) = state.read_identity()?;
    let cert = cert_info(&cert_pem)?;
    let st = state.read_status()?;
    let out = StatusOut {
        sensor_id: me.sensor_id,
        sensor_name: st.sensor_name.unwrap_or(me.sensor_name),
        mode: me.mode,
        control_plane_urls: me.control_plane_urls,
        cert_fingerprint: cert.fingerprint,
        cert_expires_at: cert.not_after,
        activated_at: me.activated_at,
        last_contact_at: st.last_contact_at,
        last_error: st.last_error,
        last_error_at: st.last_error_at,
        config_version_applied: st.config_version_applied,
    };
    let text = if json {
        serde_json::to_string_pretty(&out).context("formatting the status")?
    } else {
        let ts = |t: Option<picket_domain::Timestamp>| t.map_or("never".to_string(), picket_proto::time::format_ts);
        let error = match (&out.last_error, out.last_error_at) {
            (Some(e), at) => format!("{e} (at {})", ts(at)),
            (None, _) => "none".to_string(),
        };
        format!(
            "sensor:            {} ({})\nmode:              {}\ncontrol plane:     {}\ncertificate:       SHA-256 {}\n\
             certificate until: {}\nlast contact:      {}\nlast error:        {error}\nconfig applied:    {}",
            out.sensor_name,
            out.sensor_id,
            out.mode.as_str(),
            out.control_plane_urls.join(", "),
            out.cert_fingerprint,
            picket_proto::time::format_ts(out.cert_expires_at),
            ts(out.last_contact_at),
            out.config_version_applied,
        )
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

async fn main_inner(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Activate { activation_file, state_dir } => {
            let file = run::read_activation_file(&activation_file)?;
            let state = StateDir::new(state_dir);
            let me = run::activate(&file, &state).await.context("activation failed")?;
            let (cert_pem, _) = state.read_identity()?;
            let cert = cert_info(&cert_pem)?;
            println!(
                "activated sensor {} ({}); certificate SHA-256 {} valid until {}",
                me.sensor_name,
                me.sensor_id,
                cert.fingerprint,
                picket_proto::time::format_ts(cert.not_after)
            );
            Ok(())
        }
        Command::Run { state_dir, heartbeat_interval, max_backoff, version } => {
            init_logging();
            if heartbeat_interval.is_zero() {
                anyhow::bail!("--heartbeat-interval must be above zero");
            }
            let version = version.unwrap_or_else(|| picket_sensor::BUILD_VERSION.to_string());
            version.parse::<picket_domain::Version>().with_context(|| format!("--version {version}"))?;
            let opts = RunOptions {
                timings: Timings { interval: heartbeat_interval, max_backoff: max_backoff.max(Duration::from_secs(1)) },
                version,
            };
            run::run(&StateDir::new(state_dir), opts, shutdown_signal()).await?;
            Ok(())
        }
        Command::Status { state_dir, json } => status(state_dir, json),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("picket-sensor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_inner(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-sensor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
