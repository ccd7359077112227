//! `picket-bench fleet-update`: seconds from `POST /api/v1/releases` to a fully updated fleet
//! of simulated sensors (`picket_sim::update`: each downloads the granted package, checks its
//! digest, "restarts" for `--restart`, and reports), against a real `picket serve` started
//! per run with `--rollout-concurrency C`. Reports, per run and as medians over the runs: the
//! total, the time per sensor slot (total × C / N), the overhead per sensor beyond the
//! simulated restart (slot − restart), and where a sensor's update time goes (waiting for the
//! grant to reach it, download, restart, clearance).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use picket_domain::{Timestamp, Version};
use picket_package::{BuildOptions, SecretKey};
use picket_sim::update::{UpdateLog, UpdateOptions, UpdateRecord};
use picket_sim::{Fleet, OnboardOptions};

use crate::{TOKEN, free_port};

fn duration(s: &str) -> Result<Duration, String> {
    picket_domain::parse_duration(s).map_err(|e| e.to_string())
}

/// Options of `picket-bench fleet-update`.
#[derive(clap::Args, Debug)]
pub struct FleetUpdateArgs {
    /// The `picket` binary to start (build it with --release).
    #[arg(long, default_value = "target/release/picket")]
    picket: PathBuf,
    /// Simulated sensors.
    #[arg(long, default_value_t = 100)]
    sensors: usize,
    /// Rollout concurrencies to measure (`picket serve --rollout-concurrency`), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    concurrency: Vec<u32>,
    /// Runs per concurrency (each on a new server and fleet).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Heartbeat interval of the simulated sensors.
    #[arg(long, default_value = "1s", value_parser = duration)]
    interval: Duration,
    /// The simulated restart of the sensor service (the sensor's own time, not overhead).
    #[arg(long, default_value = "1s", value_parser = duration)]
    restart: Duration,
    /// Size of the package's payload in bytes (incompressible, so the package is about as big).
    #[arg(long, default_value_t = 4 << 20)]
    package_size: usize,
    /// Give up on a run after this long.
    #[arg(long, default_value = "20m", value_parser = duration)]
    timeout: Duration,
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A package of `version` holding `size` pseudo-random bytes.
fn package(key: &SecretKey, dir: &Path, version: &str, size: usize) -> Result<Vec<u8>> {
    let input = dir.join(format!("input-{version}"));
    std::fs::create_dir_all(input.join("bin"))?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ size as u64;
    let mut payload = Vec::with_capacity(size + 8);
    while payload.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        payload.extend_from_slice(&state.to_le_bytes());
    }
    payload.truncate(size);
    std::fs::write(input.join("bin/sensor"), &payload)?;
    let out = dir.join(format!("{version}.pkg"));
    let created_at = now();
    let opts = BuildOptions {
        version: version.parse::<Version>()?,
        entrypoint: "bin/sensor".into(),
        created_at,
        expires_at: created_at.plus(Duration::from_secs(86_400)),
        min_updater_version: "0.1.0".parse::<Version>()?,
        compression_level: 1,
    };
    picket_package::build(&input, &opts, key, &out)?;
    Ok(std::fs::read(&out)?)
}

/// `picket serve` for one run; SIGTERM on drop.
struct Serve {
    child: tokio::process::Child,
    api: String,
    sensor_url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // A positive pid only (procps-ng 4.0.2 `kill` misreads a negative one as -1).
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
}

async fn serve(a: &FleetUpdateArgs, dir: &Path, key_pub: &Path, concurrency: u32) -> Result<Serve> {
    let (api, sensor) = (free_port()?, free_port()?);
    let err = std::fs::File::create(dir.join("serve.log"))?;
    let mut cmd = tokio::process::Command::new(&a.picket);
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{api}"), "--sensor-listen", &format!("127.0.0.1:{sensor}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--release-key-pub")
        .arg(key_pub)
        .args(["--update-deadline", "10m"])
        .env("PICKET_BOOTSTRAP_TOKEN", TOKEN)
        .env("RUST_LOG", "warn,sqlx=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .kill_on_drop(true);
    // 1 is the default: a server without the flag can still be measured at concurrency 1.
    if concurrency != 1 {
        cmd.args(["--rollout-concurrency", &concurrency.to_string()]);
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", a.picket.display()))?;
    let mut s =
        Serve { child, api: format!("http://127.0.0.1:{api}"), sensor_url: format!("https://127.0.0.1:{sensor}") };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{}/healthz", s.api)).send().await
            && r.status().is_success()
        {
            return Ok(s);
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            bail!("picket serve exited ({status}); does it have --rollout-concurrency yet?\n{log}");
        }
        if Instant::now() > deadline {
            bail!("picket serve did not become healthy within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish(http: &reqwest::Client, api: &str, pkg: Vec<u8>) -> Result<()> {
    let r = http
        .post(format!("{api}/api/v1/releases"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/octet-stream")
        .body(pkg)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("publish: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(())
}

/// How many sensors the server lists on `version`.
async fn on_version(http: &reqwest::Client, api: &str, version: &str) -> Result<u64> {
    let r = http
        .get(format!("{api}/api/v1/sensors?version={version}&limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?;
    let v: serde_json::Value = r.json().await?;
    Ok(v["total"].as_u64().unwrap_or(0))
}

/// One run's numbers.
#[derive(Debug, Clone, Copy)]
struct Run {
    total: f64,
    slot: f64,
    overhead: f64,
    wait: f64,
    download: f64,
    clearance: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

async fn one_run(a: &FleetUpdateArgs, concurrency: u32) -> Result<Run> {
    let tmp = tempfile::tempdir()?;
    let key = SecretKey::generate()?;
    let key_pub = tmp.path().join("release.pub");
    std::fs::write(&key_pub, key.public().to_base64())?;
    let first = package(&key, tmp.path(), "1.0.0", a.package_size)?;
    let second = package(&key, tmp.path(), "1.1.0", a.package_size)?;
    let server = serve(a, tmp.path(), &key_pub, concurrency).await?;
    let http = reqwest::Client::new();
    publish(&http, &server.api, first).await?;
    let opts = OnboardOptions {
        server: server.api.clone(),
        token: TOKEN.into(),
        sensors: a.sensors,
        prefix: "UPD".into(),
        concurrency: 16,
        sensor_server: Some(server.sensor_url.clone()),
        timeout: Duration::from_secs(30),
    };
    let fleet = Fleet::onboard(&opts, Arc::new(|_| {})).await.map_err(|e| anyhow::anyhow!(e.message()))?;
    let fleet = Arc::new(fleet);
    let log = Arc::new(UpdateLog::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sim_opts = UpdateOptions {
        interval: a.interval,
        restart: a.restart,
        timeout: Duration::from_secs(60),
        version: "1.0.0".into(),
    };
    let sim = {
        let (fleet, log) = (fleet.clone(), log.clone());
        tokio::spawn(async move { picket_sim::update::run(&fleet, &sim_opts, log, stop_rx).await })
    };
    // Every sensor has reported 1.0.0 (the heartbeat batch is written each second).
    let deadline = Instant::now() + Duration::from_secs(120);
    while on_version(&http, &server.api, "1.0.0").await? < a.sensors as u64 {
        if Instant::now() > deadline {
            bail!("the sensors did not all report 1.0.0 within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t0 = Instant::now();
    publish(&http, &server.api, second).await?;
    let published = Instant::now();
    let deadline = t0 + a.timeout;
    let mut last_print = Instant::now();
    while log.cleared_on("1.1.0") < a.sensors {
        if Instant::now() > deadline {
            bail!("only {} of {} sensors updated within {:?}", log.cleared_on("1.1.0"), a.sensors, a.timeout);
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            last_print = Instant::now();
            eprintln!(
                "  ... {} of {} updated after {:.0} s",
                log.cleared_on("1.1.0"),
                a.sensors,
                t0.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let _ = sim.await;
    let records: Vec<UpdateRecord> = log.records.lock().map(|r| r.clone()).unwrap_or_default();
    let errors = log.errors.lock().map(|e| e.len()).unwrap_or(0);
    let done = records.iter().map(|r| r.cleared).max().context("no update")?;
    let total = secs(t0, done);
    let slot = total * f64::from(concurrency) / a.sensors as f64;
    // Wait for the grant: from the moment a slot was free (the publish for the first C
    // grants, else the clearance that freed the slot) to the grant reaching the sensor.
    let mut grants: Vec<Instant> = records.iter().map(|r| r.granted).collect();
    let mut clears: Vec<Instant> = records.iter().map(|r| r.cleared).collect();
    grants.sort();
    clears.sort();
    let c = concurrency as usize;
    let waits: Vec<f64> = grants
        .iter()
        .enumerate()
        .map(|(k, g)| secs(if k < c { published } else { clears[k - c].max(published) }, *g))
        .collect();
    let run = Run {
        total,
        slot,
        overhead: slot - a.restart.as_secs_f64(),
        wait: median(waits),
        download: median(records.iter().map(|r| secs(r.granted, r.downloaded)).collect()),
        clearance: median(records.iter().map(|r| secs(r.restarted, r.cleared)).collect()),
    };
    println!(
        "concurrency={concurrency:<3} total={:.1} s  per-sensor slot={:.2} s  overhead={:.2} s  (grant wait {:.2} s, download {:.3} s, restart {:.2} s, clearance {:.3} s)  publish={:.2} s  errors={errors}",
        run.total,
        run.slot,
        run.overhead,
        run.wait,
        run.download,
        a.restart.as_secs_f64(),
        run.clearance,
        secs(t0, published),
    );
    drop(server);
    Ok(run)
}

/// Runs `picket-bench fleet-update`.
pub async fn run(a: FleetUpdateArgs) -> Result<()> {
    if a.sensors == 0 || a.runs == 0 {
        bail!("--sensors and --runs must be at least 1");
    }
    println!(
        "# fleet update: {} simulated sensors, heartbeat every {:?}, simulated restart {:?}, package {} bytes, {} runs per concurrency",
        a.sensors, a.interval, a.restart, a.package_size, a.runs
    );
    for &c in &a.concurrency {
        let mut runs = Vec::new();
        for _ in 0..a.runs {
            runs.push(one_run(&a, c.max(1)).await?);
        }
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "median concurrency={c}: total={:.1} s  per-sensor slot={:.2} s  overhead per sensor={:.2} s  (grant wait {:.2} s, download {:.3} s, clearance {:.3} s)",
            m(|r| r.total),
            m(|r| r.slot),
            m(|r| r.overhead),
            m(|r| r.wait),
            m(|r| r.download),
            m(|r| r.clearance),
        );
    }
    Ok(())
}
