//! `picket-updater`, the stable supervisor on a sensor host. It owns the install dir
//! (`<install-dir>/<version>/`, the `current` symlink, `journal.json`, `updater.json`,
//! `downloads/`) and starts, restarts, updates and watches the sensor program of the current
//! package; it shares only the files of the update protocol with the sensor
//! (`<state-dir>/update/`) and reads the sensor's `sensor.json`, `status.json` and identity
//! (which an install without `--package` makes and activates first: see `activate`).
//! It must not depend on the sensor, server or store crates (it has to keep working when they
//! break), must never trust a package not signed by a key from `updater.json` (written at
//! install from the activation file), and must never move to a lower version except on an
//! operator's rollback to the previous version kept on disk.

mod activate;
mod client;
mod install;
mod journal;
mod layout;
mod run;
mod user;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// This updater's version (packages name the oldest updater that can install them).
pub fn own_version() -> picket_domain::Version {
    env!("CARGO_PKG_VERSION").parse().unwrap_or(picket_domain::Version { major: 0, minor: 0, patch: 0 })
}

/// The Picket updater.
#[derive(Debug, Parser)]
#[command(
    name = "picket-updater",
    version,
    about = "Installs, runs, updates and watches the Picket sensor on this host",
    long_about = "Installs, runs, updates and watches the Picket sensor on this host.\n\n\
                  Layout: <install-dir>/<version>/ holds each extracted package, <install-dir>/current points at the \
                  running one, <install-dir>/state is the sensor's state dir (unless --state-dir), journal.json \
                  makes updates crash-safe."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    picket_domain::parse_duration(s).map_err(|e| e.to_string())
}

fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage in (0, 100]")),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install a signed sensor package and activate the sensor, with no prompts.
    ///
    /// Verifies the package against the activation file's package-signing keys, extracts it to
    /// <install-dir>/<version>/, points <install-dir>/current at it atomically, creates the
    /// state dir and runs `<entrypoint> activate` from the package. Then start the service with
    /// `picket-updater run --install-dir D`.
    ///
    /// Without --package the package is the current release of the control plane: the updater
    /// makes the sensor's certificate in the state dir, activates it with the activation file's
    /// token and downloads the release over mutual TLS. If no release is published yet it
    /// stops before installing anything and keeps the activated certificate: run the same
    /// command again once a release is published (the token is not needed again). A locally
    /// managed sensor never contacts the control plane and needs --package.
    Install {
        /// The activation file downloaded from the control plane (carries the keys packages
        /// must be signed with).
        #[arg(long, value_name = "FILE")]
        activation_file: PathBuf,
        /// Where versions, the `current` pointer, the journal and (by default) the state dir live.
        #[arg(long, value_name = "DIR", default_value = "/opt/picket")]
        install_dir: PathBuf,
        /// The signed package to install (`picket release sign`). Default: download the current
        /// release from the control plane named in the activation file.
        #[arg(long, value_name = "PKG")]
        package: Option<PathBuf>,
        /// The sensor's state dir (default: <install-dir>/state).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Run the sensor as this unprivileged account (created if missing) and give it the
        /// state dir. Only when the updater runs as root; otherwise ignored with a note.
        #[arg(long, value_name = "NAME")]
        service_user: Option<String>,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run the sensor service: start it, restart it with backoff when it dies, apply update
    /// grants, watch its memory and CPU; stop it cleanly on SIGTERM or SIGINT.
    Run {
        /// The install dir given to `install`.
        #[arg(long, value_name = "DIR", default_value = "/opt/picket")]
        install_dir: PathBuf,
        /// Passed to `picket-sensor run --heartbeat-interval` (default: the sensor's own).
        #[arg(long, value_name = "DURATION")]
        heartbeat_interval: Option<String>,
        /// How long a new version has to make a successful contact with the control plane
        /// after an update before the updater switches back.
        #[arg(long, value_parser = duration, default_value = "120s", value_name = "DURATION")]
        clearance_timeout: Duration,
        /// Longest wait between restarts of a sensor that keeps exiting (backoff doubles from 1 s).
        #[arg(long, value_parser = duration, default_value = "60s", value_name = "DURATION")]
        max_restart_backoff: Duration,
        /// Most memory the sensor may use, in percent of the host's (the default leaves 15% free).
        #[arg(long, value_parser = percent, default_value = "85", value_name = "PERCENT")]
        max_memory_percent: f64,
        /// Most CPU the sensor may use, in percent of all the host's cores.
        #[arg(long, value_parser = percent, default_value = "85", value_name = "PERCENT")]
        max_cpu_percent: f64,
        /// How long the sensor may stay over a limit before the watchdog restarts it.
        #[arg(long, value_parser = duration, default_value = "30s", value_name = "DURATION")]
        watchdog_window: Duration,
        /// Largest update package downloaded, in bytes.
        #[arg(long, default_value_t = 512 << 20, value_name = "BYTES")]
        max_package_size: u64,
        /// How often grants, the watchdog and the service status are checked.
        #[arg(long, value_parser = duration, default_value = "1s", value_name = "DURATION")]
        poll_interval: Duration,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, stopping"),
        _ = terminate => tracing::info!("SIGTERM received, stopping"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Install { activation_file, install_dir, package, state_dir, service_user, quiet } => {
            install::install(&install::InstallOptions {
                activation_file,
                install_dir,
                package,
                state_dir,
                service_user,
                quiet,
            })
        }
        Command::Run {
            install_dir,
            heartbeat_interval,
            clearance_timeout,
            max_restart_backoff,
            max_memory_percent,
            max_cpu_percent,
            watchdog_window,
            max_package_size,
            poll_interval,
        } => {
            init_logging("info");
            let opts = run::RunOptions {
                heartbeat_interval,
                clearance_timeout,
                max_backoff: max_restart_backoff.max(Duration::from_secs(1)),
                watchdog: watchdog::Limits { max_memory_percent, max_cpu_percent, window: watchdog_window },
                max_package_bytes: max_package_size,
                poll: poll_interval.max(Duration::from_millis(50)),
            };
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => {
                    install::absolute(&install_dir).and_then(|dir| rt.block_on(run::run(dir, opts, shutdown_signal())))
                }
                Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket-updater: {e:#}");
            ExitCode::FAILURE
        }
    }
}
