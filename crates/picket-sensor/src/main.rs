//! The `picket-sensor` binary: clap → `activate`, `run`, `status`, `rotate-cert`, `rename`,
//! `reactivate`, `alerts list` or `ti import`; errors print their chain and exit 1 (`run` only exits on a signal or an
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
    /// Run the sensor until SIGTERM: heartbeats, configuration pulls, TI updates, detection on
    /// the --follow files and --syslog-listen messages, alert upload (cloud connected).
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
        /// Follow this JSON-lines file (repeatable): every line is an event, matched against the
        /// active TI; rotation by rename or truncation is followed, and a restart resumes where
        /// it stopped.
        #[arg(long, value_name = "FILE")]
        follow: Vec<PathBuf>,
        /// Receive syslog (RFC 5424 or 3164) on `udp://HOST:PORT` or `tcp://HOST:PORT`
        /// (repeatable); every message is matched against the active TI.
        #[arg(long, value_name = "URL", value_parser = clap::value_parser!(picket_sensor::detect::syslog::Listen))]
        syslog_listen: Vec<picket_sensor::detect::syslog::Listen>,
    },
    /// Alerts kept on this host.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Threat-intelligence packages on this host.
    Ti {
        #[command(subcommand)]
        command: TiCommand,
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

/// `picket-sensor alerts ...`.
#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// List the alerts kept on this host, oldest first (a cloud-connected sensor keeps them
    /// after upload too, up to the store's retention cap; `uploaded` says which were sent).
    List {
        /// The state dir.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Print JSON (an array of alerts, each with `uploaded`).
        #[arg(long)]
        json: bool,
        /// Show only the newest N.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

/// `picket-sensor ti ...`.
#[derive(Debug, Subcommand)]
enum TiCommand {
    /// Verify a TI package (downloaded with `picket ti download`) against the activation's
    /// package-signing keys and make it the active TI; a running sensor uses it within two
    /// seconds, without a restart. A version at or below the active one is refused.
    Import {
        /// The TI package file.
        package: PathBuf,
        /// The state dir.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Show the TI version in effect.
    Status {
        /// The state dir.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// One line of `alerts list --json`: the alert as the sensor raised it, and whether the
/// control plane accepted it.
#[derive(Debug, Serialize)]
struct AlertOut {
    #[serde(flatten)]
    alert: picket_proto::ti::SensorAlert,
    uploaded: bool,
}

fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

fn alerts_list(state_dir: PathBuf, json: bool, limit: Option<usize>) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let me = state.read_sensor()?;
    let mut all = picket_sensor::alerts::list(&state.root().join("alerts"))?;
    if let Some(n) = limit {
        let drop = all.len().saturating_sub(n);
        all.drain(..drop);
    }
    if json {
        let out: Vec<AlertOut> = all.into_iter().map(|a| AlertOut { alert: a.alert, uploaded: a.uploaded }).collect();
        return print_out(&serde_json::to_string_pretty(&out).context("formatting alerts")?);
    }
    if all.is_empty() {
        return print_out("no alerts on this host");
    }
    let local = me.mode == picket_domain::Mode::LocallyManaged;
    let mut text =
        format!("{:<24} {:<8} {:<8} {:<40} {:<9} {}\n", "TIME", "SEVERITY", "TYPE", "INDICATOR", "UPLOADED", "EXCERPT");
    for a in &all {
        let uploaded = if local {
            "kept"
        } else if a.uploaded {
            "yes"
        } else {
            "queued"
        };
        let excerpt: String = a.alert.excerpt.chars().take(80).collect();
        text.push_str(&format!(
            "{:<24} {:<8} {:<8} {:<40} {:<9} {}\n",
            picket_proto::time::format_ts(a.alert.time),
            a.alert.severity,
            a.alert.indicator.kind,
            a.alert.indicator.value,
            uploaded,
            excerpt
        ));
    }
    text.push_str(&format!("{} alert{}", all.len(), if all.len() == 1 { "" } else { "s" }));
    print_out(&text)
}

fn ti_import(package: PathBuf, state_dir: PathBuf) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let me = state.read_sensor()?;
    let keys = picket_sensor::ti::trusted_keys(&me.package_signing_keys)?;
    let limit = picket_package::TiLimits::default().max_package_bytes;
    let len = std::fs::metadata(&package).with_context(|| format!("reading {}", package.display()))?.len();
    if len > limit {
        anyhow::bail!("{} is over the TI package size limit ({limit} bytes)", package.display());
    }
    let bytes = std::fs::read(&package).with_context(|| format!("reading {}", package.display()))?;
    let previous = picket_sensor::ti::read_active(&state)?.map(|i| i.version);
    let info = picket_sensor::ti::apply_package(&state, &bytes, &keys, run::now())
        .with_context(|| format!("{} not imported", package.display()))?;
    let before = previous.map_or("none".to_string(), |v| v.to_string());
    print_out(&format!(
        "imported TI version {} ({} indicators, signed by key {} at {}; previous version: {before}); a running \
         picket-sensor uses it within 2 seconds",
        info.version,
        info.indicator_count,
        info.key_id,
        picket_proto::time::format_ts(info.signed_at),
    ))
}

fn ti_status(state_dir: PathBuf, json: bool) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    state.read_sensor()?;
    let info = picket_sensor::ti::read_active(&state)?;
    if json {
        return print_out(&serde_json::to_string_pretty(&info).context("formatting")?);
    }
    match info {
        None => print_out("no TI package applied yet"),
        Some(i) => print_out(&format!(
            "TI version {} ({} indicators), signed by key {} at {}, applied at {}",
            i.version,
            i.indicator_count,
            i.key_id,
            picket_proto::time::format_ts(i.signed_at),
            picket_proto::time::format_ts(i.applied_at)
        )),
    }
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
        Command::Run {
            state_dir,
            heartbeat_interval,
            max_backoff,
            version,
            cert_rotate_before,
            follow,
            syslog_listen,
        } => {
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
                detect: picket_sensor::detect::DetectOptions { follow, syslog: syslog_listen },
            };
            run::run(&StateDir::new(state_dir), opts, shutdown_signal()).await?;
            Ok(())
        }
        Command::Status { state_dir, json } => status(state_dir, json),
        Command::Alerts { command: AlertsCommand::List { state_dir, json, limit } } => {
            alerts_list(state_dir, json, limit)
        }
        Command::Ti { command: TiCommand::Import { package, state_dir } } => ti_import(package, state_dir),
        Command::Ti { command: TiCommand::Status { state_dir, json } } => ti_status(state_dir, json),
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
