//! The `picket-sensor` binary: clap → `activate`, `run`, `status`, `rotate-cert`, `rename` or
//! `reactivate`; errors print their chain and exit 1 (`run` only exits on a signal or an
//! unusable state dir, never on the network).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use picket_sensor::core::Timings;
use picket_sensor::identity::{CERT_VALIDITY, cert_info};
use picket_sensor::rotate::{self, Outcome, Phase};
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

/// `rotate-cert --phase`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PhaseArg {
    /// Make the new certificate and propose it (the old one keeps working).
    Propose,
    /// Confirm the proposed certificate and make it current (the old one is retired).
    Confirm,
    /// Both.
    All,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this host's client certificate and activate it with a one-time activation file
    /// (a locally managed sensor's file only sets up the state dir: no network call).
    Activate {
        /// The activation file downloaded from the control plane.
        #[arg(long, value_name = "FILE")]
        activation_file: PathBuf,
        /// Where the sensor keeps its identity and state.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Validity of the certificate made (tests of rotation use a short one).
        #[arg(long, value_parser = duration, value_name = "DURATION", hide = true)]
        cert_validity: Option<Duration>,
    },
    /// Rotate the client certificate in two phases: propose a new one with the current
    /// certificate, then confirm it with the new one. Safe to interrupt: run it again to finish.
    RotateCert {
        /// The state dir of an activated sensor.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Run only one phase (`propose`, `confirm`) or both (`all`).
        #[arg(long, value_enum, default_value = "all")]
        phase: PhaseArg,
    },
    /// Rename a locally managed sensor on this host (a cloud-connected sensor's name is set in
    /// the control plane).
    Rename {
        /// The new name (letters, digits and hyphens).
        name: String,
        /// The state dir.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Switch mode or control plane after the sensor was deleted and onboarded again: a new
    /// identity, activated with the new activation file; the rest of the state dir is kept.
    Reactivate {
        /// The new activation file.
        #[arg(long, value_name = "FILE")]
        activation_file: PathBuf,
        /// The state dir of the sensor activated before.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Validity of the certificate made.
        #[arg(long, value_parser = duration, value_name = "DURATION", hide = true)]
        cert_validity: Option<Duration>,
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
        /// Rotate the certificate when it expires within this long.
        #[arg(long, value_parser = duration, default_value = "30d", value_name = "DURATION")]
        cert_rotate_before: Duration,
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
    rotation_pending: bool,
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
    let local = me.mode == picket_domain::Mode::LocallyManaged;
    let out = StatusOut {
        sensor_id: me.sensor_id,
        // A cloud-connected sensor shows the control plane's name (the last one it heard); a
        // locally managed one its name on this host.
        sensor_name: if local { me.sensor_name } else { st.sensor_name.unwrap_or(me.sensor_name) },
        rotation_pending: state.has_pending(),
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
        let (mode, control_plane) = if local {
            ("locally managed".to_string(), "none (locally managed: this sensor does not contact it)".to_string())
        } else {
            (out.mode.as_str().to_string(), out.control_plane_urls.join(", "))
        };
        let rotation = if out.rotation_pending { " (a rotation is pending: run rotate-cert)" } else { "" };
        format!(
            "sensor:            {} ({})\nmode:              {mode}\ncontrol plane:     {control_plane}\ncertificate:       SHA-256 {}{rotation}\n\
             certificate until: {}\nlast contact:      {}\nlast error:        {error}\nconfig applied:    {}",
            out.sensor_name,
            out.sensor_id,
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

fn print_activated(what: &str, state: &StateDir, me: &picket_sensor::state::SensorIdentity) -> anyhow::Result<()> {
    let (cert_pem, _) = state.read_identity()?;
    let cert = cert_info(&cert_pem)?;
    let mode = match me.mode {
        picket_domain::Mode::LocallyManaged => "; locally managed: the control plane was not contacted",
        picket_domain::Mode::CloudConnected => "",
    };
    println!(
        "{what} sensor {} ({}); certificate SHA-256 {} valid until {}{mode}",
        me.sensor_name,
        me.sensor_id,
        cert.fingerprint,
        picket_proto::time::format_ts(cert.not_after)
    );
    Ok(())
}

async fn main_inner(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Activate { activation_file, state_dir, cert_validity } => {
            let file = run::read_activation_file(&activation_file)?;
            let state = StateDir::new(state_dir);
            let validity = cert_validity.unwrap_or(CERT_VALIDITY);
            let me = run::activate(&file, &state, validity).await.context("activation failed")?;
            print_activated("activated", &state, &me)
        }
        Command::Reactivate { activation_file, state_dir, cert_validity } => {
            let file = run::read_activation_file(&activation_file)?;
            let state = StateDir::new(state_dir);
            let validity = cert_validity.unwrap_or(CERT_VALIDITY);
            let me = run::reactivate(&file, &state, validity).await.context("reactivation failed")?;
            print_activated("reactivated", &state, &me)
        }
        Command::RotateCert { state_dir, phase } => {
            let state = StateDir::new(state_dir);
            let me = state.read_sensor()?;
            let phase = match phase {
                PhaseArg::Propose => Phase::Propose,
                PhaseArg::Confirm => Phase::Confirm,
                PhaseArg::All => Phase::All,
            };
            match rotate::rotate(&state, &me, phase).await.context("certificate rotation failed")? {
                Outcome::Proposed { pending_fingerprint } => println!(
                    "proposed certificate SHA-256 {pending_fingerprint}; the current certificate keeps working until \
                     `picket-sensor rotate-cert --phase confirm`"
                ),
                Outcome::Rotated { fingerprint } => {
                    let (cert_pem, _) = state.read_identity()?;
                    let until = picket_proto::time::format_ts(cert_info(&cert_pem)?.not_after);
                    println!(
                        "rotated: certificate SHA-256 {fingerprint} valid until {until}; the previous one is retired"
                    )
                }
            }
            Ok(())
        }
        Command::Rename { name, state_dir } => {
            let me = run::rename(&StateDir::new(state_dir), &name)?;
            println!("renamed sensor {} to {} on this host", me.sensor_id, me.sensor_name);
            Ok(())
        }
        Command::Run { state_dir, heartbeat_interval, max_backoff, version, cert_rotate_before } => {
            init_logging();
            if heartbeat_interval.is_zero() {
                anyhow::bail!("--heartbeat-interval must be above zero");
            }
            let version = version.unwrap_or_else(|| picket_sensor::BUILD_VERSION.to_string());
            version.parse::<picket_domain::Version>().with_context(|| format!("--version {version}"))?;
            let opts = RunOptions {
                timings: Timings { interval: heartbeat_interval, max_backoff: max_backoff.max(Duration::from_secs(1)) },
                version,
                cert_rotate_before,
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
