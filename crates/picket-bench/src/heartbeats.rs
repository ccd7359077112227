//! `picket-bench heartbeats`: heartbeats per second over mutual-TLS keep-alive connections
//! from N simulated sensors (each its own certificate, `picket_sim`) against a real
//! `picket serve`, and, in the same run, against the bare hyper + rustls server of `bare`
//! (no database; the limit). Rounds alternate Picket and bare; each round warms up (opens
//! the connections, not measured) and then measures. Reports rate, p50/p99 and each server's
//! RSS (VmRSS at the end of the round, VmHWM peak), and the medians over the rounds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use picket_sim::{Fleet, OnboardOptions, RunOptions, Stats, Summary};
use tokio::io::AsyncBufReadExt;

use crate::{Server, TOKEN, start_server};

fn duration(s: &str) -> Result<Duration, String> {
    picket_domain::parse_duration(s).map_err(|e| e.to_string())
}

/// Options of `picket-bench heartbeats`.
#[derive(clap::Args, Debug)]
pub struct HeartbeatArgs {
    /// The `picket` binary to start (build it with --release).
    #[arg(long, default_value = "target/release/picket")]
    picket: PathBuf,
    /// Simulated sensors.
    #[arg(long, default_value_t = 10_000)]
    sensors: usize,
    /// Between two heartbeats of one sensor; 0s sends the next as soon as one is answered
    /// (throughput).
    #[arg(long, default_value = "0s", value_parser = duration)]
    interval: Duration,
    /// Measured time per round.
    #[arg(long, default_value = "20s", value_parser = duration)]
    duration: Duration,
    /// Unmeasured time at the start of each round (connections opening).
    #[arg(long, default_value = "10s", value_parser = duration)]
    warmup: Duration,
    /// Rounds (each: Picket, then bare).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Data dir of `picket serve` [default: a new temporary dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (omit for SQLite).
    #[arg(long)]
    database_url: Option<String>,
    /// Save the onboarded fleet here and reuse it on later runs (with the same --data-dir).
    #[arg(long)]
    identities: Option<PathBuf>,
    /// Do not run the bare server.
    #[arg(long)]
    no_bare: bool,
    /// Sensors that keep a connection open [default: what `ulimit -n` allows].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Sensors onboarded at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connect-beat-close connections at once, for the sensors beyond --max-connections.
    #[arg(long, default_value_t = picket_sim::run::DEFAULT_TRANSIENT)]
    transient: usize,
    /// Make every sensor's first contact (full TLS handshake, configuration pull) before the
    /// schedule, this many at once, and time it as a cold start; 0 makes first contacts on
    /// the schedule, inside the warm-up. Only with --interval.
    #[arg(long, default_value_t = 64)]
    prime: usize,
    /// Do not write the sensors' applied configuration versions back to --identities.
    #[arg(long)]
    no_save: bool,
    /// Measure only the bare server (`picket serve` still starts, to load the fleet).
    #[arg(long, conflicts_with = "no_bare")]
    bare_only: bool,
}

/// VmRSS and VmHWM of a process, MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

struct Bare {
    child: tokio::process::Child,
    url: String,
}

async fn start_bare(data_dir: &Path) -> Result<Bare> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("bare-server")
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the bare server")?;
    let stdout = child.stdout.take().context("bare server stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the bare server did not start within 30 s")??
        .context("the bare server exited")?;
    let addr = line.strip_prefix("listening on ").context("unexpected bare server output")?.to_string();
    Ok(Bare { child, url: format!("https://{addr}") })
}

#[derive(Debug, Clone)]
struct Round {
    summary: Summary,
    rss: f64,
    hwm: f64,
}

async fn measure(fleet: &Fleet, opts: &RunOptions, pid: u32) -> Round {
    let stats = Arc::new(Stats::default());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let opts = RunOptions { watch_pids: vec![pid], ..opts.clone() };
    let live = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let s = stats.snapshot();
                eprintln!(
                    "  {:>4.0} s: {} answered, {:.0}/s, p99 {:.0} ms, {} errors, {} open",
                    t.elapsed().as_secs_f64(),
                    s.sent,
                    s.rate,
                    s.p99_ms,
                    s.errors,
                    s.open_connections
                );
            }
        })
    };
    let summary = picket_sim::run::run(fleet, &opts, stats, rx).await;
    live.abort();
    let (rss, hwm) = rss_mib(pid);
    Round { summary, rss, hwm }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn line(name: &str, r: &Round) -> String {
    let s = &r.summary;
    let mut l = format!(
        "{name:<8} {:>9.0} hb/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {:>5}  connects {:>6} (resumed {})  server RSS {:>6.0} MiB (peak {:>6.0})",
        s.rate, s.p50_ms, s.p99_ms, s.errors, s.connects, s.resumed, r.rss, r.hwm
    );
    if let Some(p) = s.prime_secs {
        l.push_str(&format!(
            "\n         cold start (every sensor's first contact, before the schedule): {p:.1} s, {:.0} sensors/s",
            s.sensors as f64 / p.max(1e-3)
        ));
    }
    l.push_str(&format!(
        "\n         latency parts, p50 / p99 / max ms: wait in the simulator {:.2} / {:.2} / {:.0}; connect {:.2} / {:.2} / {:.0} ({} beats); request (server) {:.2} / {:.2} / {:.0}",
        s.wait.p50_ms, s.wait.p99_ms, s.wait.max_ms, s.connect.p50_ms, s.connect.p99_ms, s.connect.max_ms,
        s.connect.count, s.request.p50_ms, s.request.p99_ms, s.request.max_ms
    ));
    if let Some(c) = &s.cpu {
        let server: f64 = c.watched_secs.iter().map(|(_, v)| v).sum();
        let per = |secs: f64| secs / (s.sent.max(1) as f64) * 1e6;
        l.push_str(&format!(
            "\n         CPU over {:.0} s: server {server:.1} s ({:.0} µs/heartbeat, {:.2} cores), simulator {:.1} s ({:.0} µs/heartbeat, {:.2} cores), machine busy {:.1} of {:.1} core-s (others {:.1})",
            s.seconds,
            per(server),
            server / s.seconds.max(1e-3),
            c.simulator_secs,
            per(c.simulator_secs),
            c.simulator_secs / s.seconds.max(1e-3),
            c.machine_busy_secs,
            c.machine_capacity_secs,
            (c.machine_busy_secs - server - c.simulator_secs).max(0.0),
        ));
    }
    if let Some(e) = &s.last_error {
        l.push_str(&format!("\n         errors by kind {:?}; last: {e}", s.error_kinds));
    }
    l
}

/// The fleet, and how many sensors its --identities file holds.
async fn fleet(args: &HeartbeatArgs, server: &Server) -> Result<(Fleet, usize)> {
    if let Some(path) = &args.identities
        && path.exists()
    {
        let mut f = Fleet::load(path, Some(&server.sensor_url)).await?;
        let in_file = f.sensors.len();
        if f.sensors.len() < args.sensors {
            bail!("{} holds only {} sensors", path.display(), f.sensors.len());
        }
        f.sensors.truncate(args.sensors);
        println!("loaded {} onboarded sensors from {}", f.sensors.len(), path.display());
        return Ok((f, in_file));
    }
    let opts = OnboardOptions {
        server: server.base.clone(),
        token: TOKEN.to_string(),
        sensors: args.sensors,
        prefix: format!("bench-{}-", std::process::id()),
        concurrency: args.concurrency,
        sensor_server: Some(server.sensor_url.clone()),
        timeout: Duration::from_secs(30),
    };
    let t = Instant::now();
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let progress = Arc::new(move |n: usize| {
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if l.elapsed() > Duration::from_secs(10) {
            *l = Instant::now();
            eprintln!("  onboarded and activated {n}");
        }
    });
    let f = Fleet::onboard(&opts, progress).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "onboarded and activated {} sensors through the REST and sensor APIs in {secs:.1} s ({:.0}/s)",
        f.sensors.len(),
        f.sensors.len() as f64 / secs
    );
    if let Some(path) = &args.identities {
        f.save(path)?;
    }
    let n = f.sensors.len();
    Ok((f, n))
}

/// Runs the benchmark.
pub async fn run(args: HeartbeatArgs) -> Result<()> {
    let tmp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let limit = picket_sim::open_files_limit().unwrap_or(0);
    let transient = args.transient.clamp(1, args.sensors.max(1));
    let max_connections =
        args.max_connections.unwrap_or_else(|| picket_sim::run::default_max_connections(args.sensors, transient));
    println!(
        "# picket-bench heartbeats: {} sensors, interval {:?}, {} rounds of {:?} (+{:?} warm-up), {}; ulimit -n {limit}, {max_connections} kept connections",
        args.sensors,
        args.interval,
        args.rounds,
        args.duration,
        args.warmup,
        args.database_url.as_deref().map_or("SQLite", |_| "PostgreSQL")
    );
    let server = start_server(&args.picket, &data_dir, args.database_url.as_deref()).await?;
    let (picket_fleet, in_file) = fleet(&args, &server).await?;
    let (rss, hwm) = rss_mib(server.child.id());
    println!("picket serve after onboarding: RSS {rss:.0} MiB (peak {hwm:.0})");
    let bare = if args.no_bare { None } else { Some(start_bare(&data_dir).await?) };
    let bare_fleet = match &bare {
        Some(b) => Some(Fleet {
            target: Arc::new(picket_sim::tls::Target::new(&b.url, &picket_fleet.target.ca_cert_pem).await?),
            sensors: picket_fleet.sensors.clone(),
        }),
        None => None,
    };
    let opts = RunOptions {
        interval: args.interval,
        duration: args.duration,
        warmup: args.warmup,
        max_connections,
        transient_connections: transient,
        timeout: Duration::from_secs(30),
        sensor_version: "1.0.0".to_string(),
        prime_concurrency: if args.interval.is_zero() { 0 } else { args.prime },
        watch_pids: Vec::new(),
    };
    let (mut picket_rounds, mut bare_rounds) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        if !args.bare_only {
            let r = measure(&picket_fleet, &opts, server.child.id()).await;
            println!("round {round} {}", line("picket", &r));
            picket_rounds.push(r);
        }
        if let (Some(b), Some(f)) = (&bare, &bare_fleet) {
            let pid = b.child.id().unwrap_or(0);
            let r = measure(f, &opts, pid).await;
            println!("round {round} {}", line("bare", &r));
            bare_rounds.push(r);
        }
    }
    let med = |rs: &[Round], f: fn(&Round) -> f64| median(rs.iter().map(f).collect());
    println!("\n| server | heartbeats/s | p50 ms | p99 ms | errors | server RSS MiB (end / peak) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, rs) in [("picket serve", &picket_rounds), ("bare hyper + rustls", &bare_rounds)] {
        if rs.is_empty() {
            continue;
        }
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} / {:.0} |",
            med(rs, |r| r.summary.rate),
            med(rs, |r| r.summary.p50_ms),
            med(rs, |r| r.summary.p99_ms),
            med(rs, |r| r.summary.errors as f64),
            med(rs, |r| r.rss),
            med(rs, |r| r.hwm),
        );
    }
    if !bare_rounds.is_empty() && !picket_rounds.is_empty() {
        let ratios: Vec<f64> =
            picket_rounds.iter().zip(&bare_rounds).map(|(p, b)| p.summary.rate / b.summary.rate.max(1e-9)).collect();
        println!("\nPicket / bare rate per round: {ratios:.2?}; median {:.2}", median(ratios.clone()));
    }
    if let Some(path) = &args.identities
        && !args.no_save
    {
        // Keep what the sensors applied, as real sensors keep it in their state dirs: the next
        // run's first contacts then pull no configuration the server already gave them.
        if in_file == picket_fleet.sensors.len() {
            picket_fleet.save(path)?;
        }
    }
    drop(bare);
    Ok(())
}
