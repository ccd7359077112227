//! `picket simulate`: a fleet of simulated sensors from one process, for load tests and for
//! sizing a deployment. Onboards N sensors through the REST API (or loads a fleet saved with
//! `--identities`), activates each with its own certificate over the sensor API, heartbeats
//! them over mutual TLS at the interval for the duration (or until Ctrl-C), with a progress
//! bar and a live summary line, and prints a final summary. The work is `picket_sim`'s.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use picket_sim::{Fleet, OnboardOptions, RunOptions, Stats, Summary};
use tokio::sync::watch;

use crate::cli::ApiArgs;

fn duration(s: &str) -> Result<Duration, String> {
    picket_domain::parse_duration(s).map_err(|e| e.to_string())
}

/// `picket simulate`.
#[derive(Debug, Args)]
#[command(after_help = "\
Each simulated sensor is onboarded (POST /api/v1/sensors, type domain_controller, tag \
`simulated`) and activated with its own new certificate; delete them afterwards with \
`picket sensors list --tag simulated` and `picket sensors delete`. With --identities FILE the \
fleet is saved there (mode 0600: it holds private keys) and later runs load it instead of \
onboarding again.

A process can hold only `ulimit -n` connections: sensors beyond --max-connections connect for \
each heartbeat and close (resuming their TLS session when the server allows it).

Exits 1 if any heartbeat failed (the summary says which kinds).")]
pub struct SimulateArgs {
    /// How many sensors to simulate.
    #[arg(long, value_name = "N")]
    pub sensors: usize,
    /// Time between two heartbeats of one sensor (±10% jitter; first beats spread evenly).
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "D")]
    pub interval: Duration,
    /// How long to heartbeat (Ctrl-C stops earlier).
    #[arg(long, default_value = "60s", value_parser = duration, value_name = "D")]
    pub duration: Duration,
    /// Sensor listener URL [default: the first control_plane_urls entry of the activation file].
    #[arg(long, value_name = "URL")]
    pub sensor_server: Option<String>,
    /// Sensors onboarded and activated at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub concurrency: usize,
    /// Name prefix of the simulated sensors [default: sim-XXXX- with 4 random hex digits].
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Save the fleet here; if the file exists, load it instead of onboarding.
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// Sensors that keep their connection open [default: what `ulimit -n` allows].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Timeout of one sensor API call.
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "D")]
    pub timeout: Duration,
    /// The version the simulated sensors report.
    #[arg(long, default_value = "1.0.0", value_name = "VERSION")]
    pub sensor_version: String,
    /// Server, token, and --json for a JSON summary on stdout.
    #[command(flatten)]
    pub api: ApiArgs,
}

fn random_prefix() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        ^ std::process::id().rotate_left(16);
    format!("sim-{:04x}-", n & 0xffff)
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

fn live_line(s: &picket_sim::stats::Snapshot) -> String {
    format!(
        "{:.0} sent/s, {} sent, {} errors, p50 {:.1} ms, p99 {:.1} ms, {} open connections",
        s.rate, s.sent, s.errors, s.p50_ms, s.p99_ms, s.open_connections
    )
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    let mut out = super::stdout();
    if json {
        serde_json::to_writer_pretty(&mut out, s)?;
        writeln!(out)?;
    } else {
        writeln!(out, "sensors:      {}", s.sensors)?;
        writeln!(out, "duration:     {:.1} s", s.seconds)?;
        writeln!(out, "heartbeats:   {} ({:.1}/s)", s.sent, s.rate)?;
        writeln!(out, "errors:       {}", s.errors)?;
        for (kind, n) in &s.error_kinds {
            writeln!(out, "  {kind}: {n}")?;
        }
        if let Some(e) = &s.last_error {
            writeln!(out, "last error:   {e}")?;
        }
        writeln!(
            out,
            "latency:      p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
        )?;
        writeln!(out, "connections:  {} made, {} resumed a TLS session", s.connects, s.resumed)?;
    }
    out.flush()?;
    Ok(())
}

/// The token from `--token`/`PICKET_TOKEN`, else from `./picket-data/bootstrap-token`.
fn api_token(api: &ApiArgs) -> anyhow::Result<String> {
    if let Some(t) = api.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    let path = std::path::Path::new("picket-data/bootstrap-token");
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(crate::exit::CliError::Auth(
            "no API token: pass --token or set PICKET_TOKEN (no ./picket-data/bootstrap-token here either)".into(),
        )
        .into()),
    }
}

async fn get_fleet(args: &SimulateArgs, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Fleet> {
    if let Some(path) = &args.identities
        && path.exists()
    {
        let fleet = Fleet::load(path, args.sensor_server.as_deref()).await?;
        if fleet.sensors.len() < args.sensors {
            anyhow::bail!(
                "{} holds {} sensors, fewer than --sensors {}; use another file to onboard a new fleet",
                path.display(),
                fleet.sensors.len(),
                args.sensors
            );
        }
        let mut fleet = fleet;
        fleet.sensors.truncate(args.sensors);
        return Ok(fleet);
    }
    let opts = OnboardOptions {
        server: args.api.server.clone(),
        token: api_token(&args.api)?,
        sensors: args.sensors,
        prefix: args.prefix.clone().unwrap_or_else(random_prefix),
        concurrency: args.concurrency,
        sensor_server: args.sensor_server.clone(),
        timeout: args.timeout,
    };
    let pb = bar(args.sensors as u64, "onboarding {bar:40} {pos}/{len} sensors ({per_sec}, {eta} left)");
    let p = pb.clone();
    let progress = Arc::new(move |n: usize| p.set_position(n as u64));
    let fleet = tokio::select! {
        f = Fleet::onboard(&opts, progress) => f,
        _ = stop.wait_for(|s| *s) => anyhow::bail!("interrupted while onboarding"),
    };
    pb.finish_and_clear();
    let fleet = fleet?;
    if let Some(path) = &args.identities {
        fleet.save(path).with_context(|| "saving the fleet".to_string())?;
    }
    Ok(fleet)
}

/// Runs `picket simulate`.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.sensors == 0 {
        return Err(crate::exit::CliError::Usage("--sensors must be at least 1".into()).into());
    }
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let fleet = get_fleet(&args, &mut stop).await?;
    let transient = picket_sim::run::DEFAULT_TRANSIENT.min(args.sensors);
    let max_connections =
        args.max_connections.unwrap_or_else(|| picket_sim::run::default_max_connections(args.sensors, transient));
    let opts = RunOptions {
        interval: args.interval,
        duration: args.duration,
        warmup: Duration::ZERO,
        max_connections,
        transient_connections: transient,
        timeout: args.timeout,
        sensor_version: args.sensor_version.clone(),
        prime_concurrency: 0,
        watch_pids: Vec::new(),
    };
    if !args.api.json {
        eprintln!(
            "heartbeating {} sensors every {:?} for {:?} at {} ({} keep a connection open)",
            fleet.sensors.len(),
            args.interval,
            args.duration,
            fleet.target.url,
            max_connections.min(fleet.sensors.len())
        );
    }
    let stats = Arc::new(Stats::default());
    let secs = args.duration.as_secs().max(1);
    let pb = bar(secs, "{bar:30} {elapsed}/{len}s {msg}");
    let tty = std::io::stderr().is_terminal();
    let reporter = {
        let (stats, pb, json) = (stats.clone(), pb.clone(), args.api.json);
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut n = 0u64;
            loop {
                tick.tick().await;
                n += 1;
                pb.set_position(start.elapsed().as_secs().min(secs));
                if tty {
                    pb.set_message(live_line(&stats.snapshot()));
                } else if n.is_multiple_of(10) && !json {
                    eprintln!("{}", live_line(&stats.snapshot()));
                }
            }
        })
    };
    let summary = picket_sim::run::run(&fleet, &opts, stats, stop).await;
    reporter.abort();
    pb.finish_and_clear();
    print_summary(&summary, args.api.json)?;
    if summary.errors > 0 {
        anyhow::bail!("{} of {} heartbeats failed", summary.errors, summary.errors + summary.sent);
    }
    Ok(())
}
