//! `picket demo`: a first look at Picket on one machine. It starts `picket serve` (this very
//! binary, as a child process) with short timings in a data dir, makes a release key, a portal
//! admin and a few zones, onboards a small mixed fleet (two sensors in the delayed ring),
//! installs and runs a real `picket-updater` + `picket-sensor` pair per sensor in their own
//! directories, publishes a second version of the sensor package and prints the rollout as it
//! happens. Ctrl-C or SIGTERM stops every child it started and removes a temporary data dir.
//!
//! It only drives the public surfaces (the REST API, the `picket-updater` command line and the
//! sensor API through the real programs): nothing here is a shortcut the product lacks.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use picket_client::{Client, SensorListParams};
use picket_domain::{Mode, Role, SensorType, Timestamp, Version, parse_duration};
use picket_package::{BuildOptions, SecretKey};
use picket_proto::api::{CreateNamed, OnboardRequest, SensorConfig, SensorView};
use picket_proto::users::CreateUserRequest;
use tokio::process::{Child, Command};

use crate::exit::CliError;

/// The version the fleet is installed with, and the one the demo then publishes.
const FIRST: &str = "1.0.0";
/// The second release.
const SECOND: &str = "1.1.0";
/// The portal user the demo creates.
const ADMIN_USER: &str = "admin";
/// The command that builds what the demo starts.
const BUILD_HINT: &str = "cargo build --release -p picket -p picket-sensor -p picket-updater";

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// `picket demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep everything (database, keys, packages, sensors' install dirs, logs) in this dir,
    /// which must be new or empty, and leave it there at exit [default: a temp dir removed at exit].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How many sensors to start (each a real picket-updater + picket-sensor pair).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub sensors: u16,
    /// Address of the REST API and the portal.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address of the mutual-TLS sensor API.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub sensor_listen: SocketAddr,
    /// Heartbeat interval of the sensors (production: 30s).
    #[arg(long, value_parser = duration, default_value = "2s", value_name = "DURATION")]
    pub heartbeat_interval: Duration,
    /// Delay of the delayed update ring after the release (production: 72h).
    #[arg(long, value_parser = duration, default_value = "60s", value_name = "DURATION")]
    pub delay_ring_after: Duration,
    /// Exit once every sensor runs the second version (0), or when an update fails or
    /// --timeout passes (1), instead of running until Ctrl-C.
    #[arg(long)]
    pub exit_when_done: bool,
    /// With --exit-when-done: give up after this long.
    #[arg(long, value_parser = duration, default_value = "10m", value_name = "DURATION")]
    pub timeout: Duration,
}

/// A child process of the demo, in its own process group (so a Ctrl-C in the terminal reaches
/// only the demo, which then stops the children in order). Signals go to its pid only, never
/// to a group.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: String, mut cmd: Command, env: &[(&str, &str)], log: PathBuf) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("opening {}", log.display()))?;
        // Children get no PICKET_* settings of the caller's shell (a PICKET_DATABASE_URL there
        // must not point the demo at a real database).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PICKET_") {
                cmd.env_remove(&k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0).kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { name, child, log })
    }

    /// Whether it exited (and how).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM (an updater then stops its sensor; the server drains and flushes).
    async fn term(&self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
    }

    /// Waits for it to exit until `deadline`, then SIGKILLs it (only its own pid: an updater
    /// stops its sensor itself on SIGTERM).
    async fn reap(&mut self, deadline: tokio::time::Instant) {
        if tokio::time::timeout_at(deadline, self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The last lines of a log, to show why a child failed.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Everything the demo started: stopped in reverse order.
#[derive(Default)]
struct Children {
    server: Option<Proc>,
    updaters: Vec<Proc>,
}

impl Children {
    async fn stop(&mut self) {
        // Updaters stop their sensors on SIGTERM: all at once, then the server.
        for p in &self.updaters {
            p.term().await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        for p in &mut self.updaters {
            p.reap(deadline).await;
        }
        if let Some(s) = self.server.as_mut() {
            s.term().await;
            s.reap(tokio::time::Instant::now() + Duration::from_secs(10)).await;
        }
    }
}

/// `len` random bytes as hex, from the kernel.
fn random_hex(len: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; len];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Writes a new file with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

/// The programs the demo starts: this `picket`, and `picket-sensor` and `picket-updater`
/// from the same directory.
struct Bins {
    picket: PathBuf,
    sensor: PathBuf,
    updater: PathBuf,
}

fn find_bins() -> anyhow::Result<Bins> {
    let picket = std::env::current_exe().context("finding the picket binary")?;
    let dir = picket.parent().context("the picket binary has no directory")?.to_path_buf();
    let (sensor, updater) = (dir.join("picket-sensor"), dir.join("picket-updater"));
    let missing: Vec<&str> = [(&sensor, "picket-sensor"), (&updater, "picket-updater")]
        .into_iter()
        .filter(|(p, _)| !p.is_file())
        .map(|(_, n)| n)
        .collect();
    if !missing.is_empty() {
        bail!(
            "picket demo starts {} from the directory of this picket ({}), and {} missing there: build them with `{BUILD_HINT}` and run target/release/picket demo",
            missing.join(" and "),
            dir.display(),
            if missing.len() == 1 { "it is" } else { "they are" }
        );
    }
    Ok(Bins { picket, sensor, updater })
}

/// The data dir, and whether to remove it at exit.
fn data_dir(given: Option<&Path>) -> anyhow::Result<(PathBuf, bool)> {
    match given {
        Some(dir) => {
            if let Ok(mut entries) = std::fs::read_dir(dir)
                && entries.next().is_some()
            {
                return Err(CliError::Usage(format!(
                    "{} is not empty; give picket demo a new or empty --data-dir (each demo starts from scratch)",
                    dir.display()
                ))
                .into());
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let abs = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
            Ok((abs, false))
        }
        None => {
            let dir = std::env::temp_dir().join(format!("picket-demo-{}-{}", std::process::id(), random_hex(4)?));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok((dir, true))
        }
    }
}

/// Refuses early, with the fix, when a port is taken (a `picket serve` already running).
fn check_free(addr: SocketAddr, flag: &str) -> anyhow::Result<()> {
    std::net::TcpListener::bind(addr).map(drop).map_err(|e| {
        CliError::Usage(format!(
            "cannot listen on {addr} ({e}); is a picket serve already running? Stop it, or pass another {flag}"
        ))
        .into()
    })
}

/// One sensor of the demo fleet.
struct Spec {
    name: String,
    sensor_type: SensorType,
    domain: &'static str,
    site: &'static str,
    zone: &'static str,
    tags: Vec<String>,
    capture: Option<&'static str>,
    delayed: bool,
}

/// A mixed fleet: types, sites, zones and tags vary; the last two of five or more (the last
/// one of two to four) are in the delayed ring.
fn fleet(n: usize) -> Vec<Spec> {
    type Row = (&'static str, SensorType, &'static str, &'static str, &'static str, &'static str, Option<&'static str>);
    const ROWS: [Row; 5] = [
        ("DC01-10-0-1-10", SensorType::DomainController, "corp.example.com", "Paris", "Head office", "tier-1", None),
        ("ADFS01-10-0-1-20", SensorType::Adfs, "corp.example.com", "Paris", "Head office", "tier-1", Some("eth0")),
        ("OT-GW01-10-2-0-5", SensorType::OtNetwork, "plant.example.com", "Lyon", "Factory floor", "ot", None),
        ("DC02-10-1-1-10", SensorType::DomainController, "emea.corp.example.com", "Berlin", "default", "tier-2", None),
        (
            "FS01-10-1-2-7",
            SensorType::Standalone,
            "emea.corp.example.com",
            "Berlin",
            "default",
            "file-servers",
            Some("eth1"),
        ),
    ];
    let delayed = match n {
        0 | 1 => 0,
        2..=4 => 1,
        _ => 2,
    };
    (0..n)
        .map(|i| {
            let (name, sensor_type, domain, site, zone, tag, capture) = ROWS[i % ROWS.len()];
            let name = if i < ROWS.len() { name.to_string() } else { format!("{name}-{}", i / ROWS.len() + 1) };
            Spec {
                name,
                sensor_type,
                domain,
                site,
                zone,
                tags: vec![tag.to_string(), "demo".to_string()],
                capture,
                delayed: i >= n - delayed,
            }
        })
        .collect()
}

/// Builds a package of `version` whose entry point is the real sensor.
fn package(key: &SecretKey, sensor: &Path, dir: &Path, version: &str) -> anyhow::Result<PathBuf> {
    let input = dir.join(format!("input-{version}"));
    std::fs::create_dir_all(input.join("bin")).with_context(|| format!("creating {}", input.display()))?;
    std::fs::copy(sensor, input.join("bin/picket-sensor"))
        .with_context(|| format!("copying {} into the package", sensor.display()))?;
    std::fs::write(input.join("README"), format!("Picket sensor {version}, packaged by picket demo.\n"))
        .context("writing the package README")?;
    let out = dir.join(format!("picket-sensor-{version}.pkg"));
    let created_at = now();
    let opts = BuildOptions {
        version: version.parse::<Version>().context("the demo's version")?,
        entrypoint: "bin/picket-sensor".into(),
        created_at,
        expires_at: created_at.plus(Duration::from_secs(30 * 86_400)),
        min_updater_version: "0.1.0".parse::<Version>().context("the demo's updater version")?,
        compression_level: 1,
    };
    picket_package::build(&input, &opts, key, &out).with_context(|| format!("building the {version} package"))?;
    Ok(out)
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref()).and_then(|()| out.flush());
}

/// The state of the demo while it runs.
struct Demo {
    args: DemoArgs,
    bins: Bins,
    dir: PathBuf,
    children: Children,
    client: Option<Client>,
}

/// Every sensor of the demo, by id.
async fn sensors(client: &Client) -> anyhow::Result<Vec<SensorView>> {
    let params = SensorListParams { sort: Some("name".into()), limit: Some(500), ..Default::default() };
    Ok(client.list_sensors(&params).await.context("listing sensors")?.items)
}

impl Demo {
    fn client(&self) -> anyhow::Result<&Client> {
        self.client.as_ref().context("the server is not started")
    }

    /// Fails with the child's log when a child died.
    fn check_children(&mut self) -> anyhow::Result<()> {
        let procs = self.children.server.iter_mut().chain(self.children.updaters.iter_mut());
        for p in procs {
            if let Some(status) = p.exited() {
                bail!("{} exited ({status}); the end of {}:\n{}", p.name, p.log.display(), tail(&p.log, 20));
            }
        }
        Ok(())
    }

    async fn start_server(&mut self, token: &str, key_pub: &Path) -> anyhow::Result<()> {
        let a = &self.args;
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).context("creating the logs dir")?;
        let mut cmd = Command::new(&self.bins.picket);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.dir.join("server"))
            .args(["--listen", &a.listen.to_string(), "--sensor-listen", &a.sensor_listen.to_string()])
            .arg("--release-key-pub")
            .arg(key_pub)
            .args(["--delay-ring-after", &format!("{}ms", a.delay_ring_after.as_millis())])
            .args(["--disconnect-after", "1m", "--update-deadline", "3m", "--health-check-every", "2s"]);
        // The server takes its first admin token from the environment only (never a flag).
        let env = [("PICKET_BOOTSTRAP_TOKEN", token), ("RUST_LOG", "info,sqlx=error")];
        let server = Proc::spawn("picket serve".into(), cmd, &env, logs.join("serve.log"))?;
        self.children.server = Some(server);
        let base = format!("http://{}", a.listen);
        let client = Client::new(&base, token.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.healthz().await.is_err() {
            self.check_children()?;
            if Instant::now() > deadline {
                bail!("picket serve did not answer /healthz within 60 s; see {}", logs.join("serve.log").display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.client = Some(client);
        Ok(())
    }

    async fn install(&mut self, spec: &Spec, package: &Path) -> anyhow::Result<()> {
        let client = self.client()?.clone();
        let req = OnboardRequest {
            name: spec.name.clone(),
            sensor_type: spec.sensor_type,
            domain: spec.domain.into(),
            subscription: "default".into(),
            site: spec.site.into(),
            zone: spec.zone.into(),
            tags: spec.tags.clone(),
            mode: Mode::CloudConnected,
            auto_ti_updates: true,
            description: "started by picket demo".into(),
            delayed_update: spec.delayed,
            config: SensorConfig { capture: spec.capture.map(str::to_string) },
        };
        let view = client.onboard_sensor(&req).await.with_context(|| format!("onboarding {}", spec.name))?;
        let file =
            client.activation_file(&view.id).await.with_context(|| format!("the activation file of {}", spec.name))?;
        let home = self.dir.join("sensors").join(&spec.name);
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let activation = home.join("activation.json");
        write_file(&activation, &serde_json::to_vec_pretty(&file)?, 0o600)?;
        let install_dir = home.join("install");
        let out = Command::new(&self.bins.updater)
            .arg("install")
            .arg("--quiet")
            .arg("--activation-file")
            .arg(&activation)
            .arg("--install-dir")
            .arg(&install_dir)
            .arg("--package")
            .arg(package)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.bins.updater.display()))?;
        if !out.status.success() {
            bail!(
                "picket-updater install for {} failed ({}): {}",
                spec.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut cmd = Command::new(&self.bins.updater);
        cmd.arg("run")
            .arg("--install-dir")
            .arg(&install_dir)
            .args(["--heartbeat-interval", &format!("{}ms", self.args.heartbeat_interval.as_millis())])
            .args(["--clearance-timeout", "60s", "--poll-interval", "500ms", "--max-restart-backoff", "5s"]);
        let env = [("RUST_LOG", "info")];
        let p = Proc::spawn(format!("picket-updater of {}", spec.name), cmd, &env, home.join("updater.log"))?;
        self.children.updaters.push(p);
        Ok(())
    }

    /// Waits until every sensor reports `version` with its service running; prints each one
    /// as it comes up.
    async fn wait_up(&mut self, n: usize, version: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = std::collections::BTreeSet::new();
        loop {
            self.check_children()?;
            let list = sensors(self.client()?).await?;
            for s in &list {
                let up =
                    s.version.as_deref() == Some(version) && s.service_status == picket_domain::ServiceStatus::Running;
                if up && seen.insert(s.id.clone()) {
                    say(format!(
                        "  {:<18} {:<18} {:<8} {:<14} up, version {version}{}",
                        s.name,
                        s.sensor_type.as_str(),
                        s.site,
                        s.zone,
                        if s.delayed_update { " (delayed ring)" } else { "" }
                    ));
                }
            }
            if seen.len() >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} sensors came up within 120 s; see the logs under {}",
                    seen.len(),
                    self.dir.join("sensors").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Prints each sensor's version and status changes until every sensor runs `version`
    /// (Ok), or an update fails (Err).
    async fn watch(&mut self, version: &str, since: Instant) -> anyhow::Result<()> {
        let mut last: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
        let mut delayed_announced = false;
        let mut last_rollout = String::new();
        loop {
            self.check_children()?;
            let list = sensors(self.client()?).await?;
            let t = since.elapsed().as_secs_f64();
            // The rollout as the control plane sees it (GET /api/v1/rollouts/current).
            if let Ok(r) = self.client()?.current_rollout().await
                && r.version.to_string() == version
            {
                let line = rollout_line(&r);
                if line != last_rollout {
                    say(format!("  +{t:6.1}s  {line}"));
                    last_rollout = line;
                }
            }
            for s in &list {
                let now = (s.version.clone(), s.sensor_status.as_str().to_string());
                if last.get(&s.id) != Some(&now) {
                    say(format!(
                        "  +{t:6.1}s  {:<18} version {:<6} {}{}",
                        s.name,
                        s.version.as_deref().unwrap_or("-"),
                        now.1,
                        if s.delayed_update { "  (delayed ring)" } else { "" }
                    ));
                    last.insert(s.id.clone(), now);
                }
            }
            // Done: on the version, and the control plane cleared the update (not `updating`).
            let is_done = |s: &SensorView| {
                s.version.as_deref() == Some(version) && s.sensor_status != picket_domain::SensorStatus::Updating
            };
            let done = list.iter().filter(|s| is_done(s)).count();
            let normal_left = list.iter().any(|s| !s.delayed_update && !is_done(s));
            if !delayed_announced && !normal_left && done < list.len() {
                delayed_announced = true;
                let left = self.args.delay_ring_after.saturating_sub(since.elapsed()).as_secs();
                say(format!(
                    "  The normal ring runs {version}; the delayed ring starts {} s after the release ({}).",
                    self.args.delay_ring_after.as_secs(),
                    if left == 0 { "now".to_string() } else { format!("in about {left} s") }
                ));
            }
            if let Some(failed) = list.iter().find(|s| s.sensor_status == picket_domain::SensorStatus::UpdateFailed) {
                bail!(
                    "the update of {} failed ({}); see its log {}",
                    failed.name,
                    failed.sensor_status_detail.as_deref().unwrap_or("no detail"),
                    self.dir.join("sensors").join(&failed.name).join("updater.log").display()
                );
            }
            if !list.is_empty() && done == list.len() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let n = usize::from(self.args.sensors);
        say(format!("Picket demo: a control plane and {n} real sensors on this machine, in {}", self.dir.display()));

        // Release key: kept in the data dir for the demo; in production it stays offline.
        let key = SecretKey::generate().context("generating the release key")?;
        let keys = self.dir.join("keys");
        std::fs::create_dir_all(&keys).context("creating the keys dir")?;
        let key_pub = keys.join("release.key.pub");
        write_file(&keys.join("release.key"), key.to_pem().as_bytes(), 0o600)?;
        write_file(&key_pub, format!("{}\n", key.public().to_base64()).as_bytes(), 0o644)?;
        let packages = self.dir.join("packages");
        let first = package(&key, &self.bins.sensor, &packages, FIRST)?;
        let second = package(&key, &self.bins.sensor, &packages, SECOND)?;

        let token = format!("pkt_demo_{}", random_hex(24)?);
        self.start_server(&token, &key_pub).await?;
        let client = self.client()?.clone();
        say(format!(
            "Started picket serve on http://{} (sensors on https://{}).",
            self.args.listen, self.args.sensor_listen
        ));

        let password = random_hex(9)?;
        client
            .create_user(&CreateUserRequest {
                username: ADMIN_USER.into(),
                password: password.clone(),
                role: Role::Admin,
                subscriptions: None,
            })
            .await
            .context("creating the portal user")?;
        for zone in ["Head office", "Factory floor"] {
            client
                .create_zone(&CreateNamed { name: zone.into(), description: "created by picket demo".into() })
                .await
                .with_context(|| format!("creating the zone {zone}"))?;
        }
        client
            .publish_release(std::fs::read(&first).context("reading the package")?.into(), None)
            .await
            .with_context(|| format!("publishing {FIRST}"))?;
        say(format!("Published release {FIRST}. Installing {n} sensors (picket-updater install --quiet, then run):"));
        for spec in fleet(n) {
            self.install(&spec, &first).await?;
        }
        self.wait_up(n, FIRST).await?;

        let rule = "=".repeat(76);
        say(format!(
            "{rule}\n  Portal:  http://{}/   user {ADMIN_USER}   password {password}\n  CLI:     export PICKET_SERVER=http://{} PICKET_TOKEN={token}\n           picket sensors list    picket rollout status    picket release list\n  Files:   {} (logs/, sensors/<name>/updater.log)\n{rule}",
            self.args.listen,
            self.args.listen,
            self.dir.display()
        ));

        let published = Instant::now();
        client
            .publish_release(std::fs::read(&second).context("reading the package")?.into(), None)
            .await
            .with_context(|| format!("publishing {SECOND}"))?;
        say(format!(
            "Published release {SECOND} (the same sensor build packaged as a newer version). The rollout updates \
             the sensors one at a time, each after the previous one reported {SECOND} healthy; the delayed ring \
             follows after {} s:",
            self.args.delay_ring_after.as_secs()
        ));
        self.watch(SECOND, published).await?;
        say(format!("Every sensor runs {SECOND}, {:.0} s after the release.", published.elapsed().as_secs_f64()));
        Ok(())
    }
}

/// One line on a rollout: its state and how many sensors are where.
fn rollout_line(r: &picket_proto::rollouts::RolloutView) -> String {
    use picket_proto::rollouts::RolloutSensorState as S;
    let parts: Vec<String> = S::ALL
        .iter()
        .filter(|s| r.counts.get(**s) > 0)
        .map(|s| format!("{} {}", r.counts.get(*s), s.as_str()))
        .collect();
    let paused = r.paused_reason.as_deref().map(|p| format!(" ({p})")).unwrap_or_default();
    format!(
        "rollout of {}: {}{paused}; {} (at most {} at once)",
        r.version,
        r.state.as_str(),
        parts.join(", "),
        r.concurrency
    )
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
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
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Runs `picket demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let bins = find_bins()?;
    check_free(args.listen, "--listen")?;
    check_free(args.sensor_listen, "--sensor-listen")?;
    let (dir, remove) = data_dir(args.data_dir.as_deref())?;
    let exit_when_done = args.exit_when_done;
    let timeout = args.timeout;
    let mut demo = Demo { args, bins, dir, children: Children::default(), client: None };
    let outcome = tokio::select! {
        r = async {
            let work = demo.run();
            if exit_when_done {
                match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err(anyhow::anyhow!("the demo did not finish within --timeout {} s", timeout.as_secs())),
                }
            } else {
                work.await?;
                say("The demo keeps running: look around in the portal or the CLI. Ctrl-C stops it.");
                shutdown_signal().await;
                Ok(())
            }
        } => r,
        () = shutdown_signal() => Ok(()),
    };
    say("Stopping the sensors and the server...");
    demo.children.stop().await;
    if remove {
        let _ = std::fs::remove_dir_all(&demo.dir);
    } else {
        say(format!("Kept {}.", demo.dir.display()));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_mixes_types_and_puts_the_last_ones_in_the_delayed_ring() {
        let f = fleet(5);
        assert_eq!(f.iter().filter(|s| s.delayed).count(), 2);
        assert!(f[3].delayed && f[4].delayed && !f[0].delayed);
        assert_eq!(f.iter().map(|s| s.sensor_type).collect::<std::collections::HashSet<_>>().len(), 4);
        assert_eq!(fleet(1).iter().filter(|s| s.delayed).count(), 0);
        assert_eq!(fleet(3).iter().filter(|s| s.delayed).count(), 1);
        let big = fleet(12);
        let names: std::collections::HashSet<_> = big.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names.len(), 12, "names are unique");
        // adfs and standalone sensors get a capture setting, so none is not_configured.
        assert!(
            f.iter()
                .all(|s| !matches!(s.sensor_type, SensorType::Adfs | SensorType::Standalone) || s.capture.is_some())
        );
    }
}
