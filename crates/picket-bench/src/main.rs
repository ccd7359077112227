//! `picket-bench`: starts a real `picket serve` process and measures what BENCHMARKS.md
//! reports. Without a subcommand, on a seeded store: first-page latency of filtered, sorted
//! lists (p50/p99), a full `export.csv` (time and the server's peak RSS), and onboarding
//! throughput (seed the store first with `picket seed --sensors 1000000 ...`).
//! `picket-bench heartbeats`: heartbeats/s from simulated sensors over mutual TLS, beside a
//! bare hyper + rustls server (`bare`, run as the hidden `bare-server` subcommand).
//! `picket-bench ti`: events/s of the `picket-ti` detection engine on one thread.
//! `picket-bench fleet-update`: seconds from a release to a fully updated simulated fleet.
//! `picket-bench portal`: time to render the portal's Sensors page with a filter.

mod bare;
mod fleet_update;
mod heartbeats;
mod portal;
mod ti;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;

/// Command line of the benchmark.
#[derive(Parser, Debug)]
#[command(
    about = "Benchmark a real picket serve process",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// A benchmark other than lists/export/onboarding.
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Options of the list/export/onboarding benchmark.
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Heartbeats/s over mutual TLS from simulated sensors, Picket beside a bare server.
    Heartbeats(heartbeats::HeartbeatArgs),
    /// Events/s of the picket-ti detection engine against generated indicators, one thread.
    Ti(ti::TiArgs),
    /// Seconds from a release to a fully updated fleet of simulated sensors, per rollout concurrency.
    FleetUpdate(fleet_update::FleetUpdateArgs),
    /// Time to render the portal's Sensors page with a filter, signed in (seeded store).
    Portal(portal::PortalArgs),
    /// The bare hyper + rustls server (started by `heartbeats`).
    #[command(hide = true)]
    BareServer {
        /// Data dir of the `picket serve` whose TLS files to use.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

/// The list/export/onboarding benchmark on a seeded store.
#[derive(clap::Args, Debug)]
struct Args {
    /// The `picket` binary to start (build it with --release).
    #[arg(long, default_value = "target/release/picket")]
    picket: PathBuf,
    /// Data dir of the seeded store (SQLite lives here; also used for TLS files).
    #[arg(long, required = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL of the seeded store (omit for SQLite).
    #[arg(long)]
    database_url: Option<String>,
    /// Requests per list query shape.
    #[arg(long, default_value_t = 200)]
    list_requests: usize,
    /// Seconds of onboarding.
    #[arg(long, default_value_t = 10)]
    onboard_seconds: u64,
    /// Concurrent onboarding clients.
    #[arg(long, default_value_t = 8)]
    onboard_concurrency: usize,
    /// Skip the export run.
    #[arg(long)]
    skip_export: bool,
    /// Only the export: no list requests, no onboarding (the store is left unchanged).
    #[arg(long, conflicts_with = "skip_export")]
    export_only: bool,
    /// Full exports in a row (one server process); each is reported, then the median.
    #[arg(long, default_value_t = 1)]
    export_runs: usize,
}

const TOKEN: &str = "pkt_benchmark_bootstrap_token_0123456789abcdef";

/// The list shapes measured: filtered and sorted first pages as the portal asks for them.
const LIST_QUERIES: &[&str] = &[
    "sort=name&limit=50",
    "sensor_status=syncing&sort=name&limit=50",
    "type=domain_controller&sort=-last_seen_at&limit=50",
    "subscription=default&zone=default&sort=name&limit=50",
    "health_status=not_healthy_high&sort=-created_at&limit=50",
    "q=dc00001&sort=name&limit=50",
    "tag=tier-1&sort=name&limit=50",
];

struct Server {
    child: Child,
    base: String,
    sensor_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_server(
    picket: &std::path::Path,
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> Result<Server> {
    let (api, sensor) = (free_port()?, free_port()?);
    let mut cmd = Command::new(picket);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{api}"))
        .arg("--sensor-listen")
        .arg(format!("127.0.0.1:{sensor}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("PICKET_BOOTSTRAP_TOKEN", TOKEN)
        // Warnings, but not sqlx's "slow acquire" lines: under a closed-loop load thousands
        // of requests queue for a pooled connection, and writing a line for each distorts it.
        .env("RUST_LOG", "warn,sqlx::pool=error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", picket.display()))?;
    let server =
        Server { child, base: format!("http://127.0.0.1:{api}"), sensor_url: format!("https://127.0.0.1:{sensor}") };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("picket serve did not become healthy within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Peak resident set size of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
    let kib: f64 = line.split_whitespace().nth(1).context("VmHWM value")?.parse()?;
    Ok(kib / 1024.0)
}

/// CPU seconds (user + system) a process has used so far (`/proc/PID/stat`, 100 ticks a
/// second on Linux): the server's share of an export, less noisy than its wall time.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').context("/proc stat without a command")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> { Ok(fields.get(i - 3).context("short /proc stat")?.parse::<f64>()?) };
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

async fn bench_lists(args: &Args, server: &Server, client: &reqwest::Client) -> Result<()> {
    println!("## list: first page, {} requests per shape", args.list_requests);
    let mut all = Vec::new();
    for q in LIST_QUERIES {
        let url = format!("{}/api/v1/sensors?{q}", server.base);
        let mut times = Vec::with_capacity(args.list_requests);
        let mut total = 0;
        for _ in 0..args.list_requests {
            let t = Instant::now();
            let r = client.get(&url).bearer_auth(TOKEN).send().await?;
            let status = r.status();
            let body: serde_json::Value = r.json().await?;
            times.push(t.elapsed());
            if !status.is_success() {
                bail!("{url}: {status} {body}");
            }
            total = body["total"].as_u64().unwrap_or(0);
        }
        times.sort();
        println!("{q:<60} total={total:<8} p50={} p99={}", ms(percentile(&times, 0.5)), ms(percentile(&times, 0.99)));
        all.extend(times);
    }
    all.sort();
    println!("all shapes: p50={} p99={}", ms(percentile(&all, 0.5)), ms(percentile(&all, 0.99)));
    Ok(())
}

async fn bench_export(args: &Args, server: &Server, client: &reqwest::Client) -> Result<()> {
    println!("## export.csv (full fleet), {} run(s)", args.export_runs);
    let mut times = Vec::new();
    for run in 1..=args.export_runs.max(1) {
        let before = peak_rss_mib(server.child.id())?;
        let cpu_before = cpu_seconds(server.child.id())?;
        let t = Instant::now();
        let r = client.get(format!("{}/api/v1/sensors/export.csv", server.base)).bearer_auth(TOKEN).send().await?;
        if !r.status().is_success() {
            bail!("export: {}", r.status());
        }
        let mut stream = r.bytes_stream();
        let (mut bytes, mut lines, mut chunks) = (0usize, 0usize, 0usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len();
            chunks += 1;
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let elapsed = t.elapsed();
        let after = peak_rss_mib(server.child.id())?;
        let cpu = cpu_seconds(server.child.id())? - cpu_before;
        println!(
            "run {run}: rows={} bytes={} chunks={chunks} time={:.2} s server cpu={cpu:.2} s server peak RSS before={before:.0} MiB after={after:.0} MiB",
            lines.saturating_sub(1),
            bytes,
            elapsed.as_secs_f64()
        );
        times.push(elapsed);
    }
    times.sort();
    println!("export median of {}: {:.2} s", times.len(), percentile(&times, 0.5).as_secs_f64());
    Ok(())
}

async fn bench_onboard(args: &Args, server: &Server, client: &reqwest::Client) -> Result<()> {
    println!("## onboarding: {} clients for {} s", args.onboard_concurrency, args.onboard_seconds);
    let deadline = Instant::now() + Duration::from_secs(args.onboard_seconds);
    let run = std::process::id();
    let mut tasks = Vec::new();
    for worker in 0..args.onboard_concurrency {
        let client = client.clone();
        let url = format!("{}/api/v1/sensors", server.base);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let body = serde_json::json!({
                    "name": format!("bench-{run}-{worker}-{n}"),
                    "type": "domain_controller",
                    "domain": "corp.example.com",
                    "tags": ["bench"],
                });
                let t = Instant::now();
                let r = client.post(&url).bearer_auth(TOKEN).json(&body).send().await?;
                if r.status().as_u16() != 201 {
                    bail!("onboard: {} {}", r.status(), r.text().await.unwrap_or_default());
                }
                times.push(t.elapsed());
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, times))
        }));
    }
    let started = Instant::now();
    let (mut total, mut times) = (0u64, Vec::new());
    for t in tasks {
        let (n, mut ts) = t.await??;
        total += n;
        times.append(&mut ts);
    }
    times.sort();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "onboarded={total} rate={:.0} sensors/s p50={} p99={}",
        total as f64 / secs,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99))
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let args = match cli.cmd {
        Some(Cmd::Heartbeats(a)) => return heartbeats::run(a).await,
        Some(Cmd::Ti(a)) => return ti::run(a),
        Some(Cmd::FleetUpdate(a)) => return fleet_update::run(a).await,
        Some(Cmd::Portal(a)) => return portal::run(a).await,
        Some(Cmd::BareServer { data_dir, listen }) => return bare::serve(&data_dir, &listen).await,
        None => cli.args,
    };
    let data_dir = args.data_dir.clone().context("--data-dir is required")?;
    let server = start_server(&args.picket, &data_dir, args.database_url.as_deref()).await?;
    let client = reqwest::Client::new();
    println!(
        "# picket-bench against {} ({})",
        server.base,
        args.database_url.as_deref().map_or("sqlite", |_| "postgres")
    );
    if !args.export_only {
        bench_lists(&args, &server, &client).await?;
    }
    if !args.skip_export {
        bench_export(&args, &server, &client).await?;
    }
    if !args.export_only {
        bench_onboard(&args, &server, &client).await?;
    }
    println!("server peak RSS overall: {:.0} MiB", peak_rss_mib(server.child.id())?);
    Ok(())
}
