//! `picket seed`: writes N realistic, varied sensor records straight into a store with
//! `Store::import_sensors`, for benchmarks. Deterministic for a given `--seed` (a SplitMix64
//! generator, no rand crate), with every sensor status represented.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use picket_domain::{HealthStatus, Mode, SensorType, ServiceStatus, Timestamp, UpdateState, Version};
use picket_store::{Audit, SensorRow, Store, StoreError, Subscription, Zone};

use crate::output;

/// `picket seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many sensors to write.
    #[arg(long)]
    pub sensors: u64,
    /// postgres://... to seed PostgreSQL (otherwise SQLite in --data-dir).
    #[arg(long, env = "PICKET_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Data dir whose SQLite database is seeded (ignored with --database-url).
    #[arg(long, env = "PICKET_DATA_DIR", default_value = "./picket-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Records per import batch.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Generator seed: the same seed writes the same records (names carry it unless it is 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Subscriptions the seeded sensors are spread over (`default` exists already).
pub const SUBSCRIPTIONS: &[&str] = &["default", "finance", "manufacturing", "research"];
/// Zones the seeded sensors are spread over (`default` exists already).
pub const ZONES: &[&str] = &["default", "Head office", "Datacenter East", "Datacenter West", "Plant A", "Plant B"];
const SITES: &[&str] = &["Paris", "London", "Frankfurt", "New York", "Singapore", "Sao Paulo", "Tokyo", ""];
const DOMAINS: &[&str] =
    &["corp.example.com", "emea.corp.example.com", "apac.corp.example.com", "plant.example.net", "lab.example.org"];
const TAGS: &[&str] = &["tier-0", "tier-1", "tier-2", "pci", "critical", "legacy", "dmz", "lab"];
/// Versions, oldest first; newer ones are more common.
const VERSIONS: &[&str] = &["2.3.0", "2.4.0", "2.4.1", "2.5.0", "2.6.0", "2.6.1"];

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// SplitMix64: tiny, fast and good enough to vary test data deterministically.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..hi` (milliseconds and such).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below(hi.saturating_sub(lo).max(1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What a seeded sensor is set up to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    LocallyManaged,
    Pending,
    Unreachable,
    Disconnected,
    StartFailed,
    UpdateFailed,
    Updating,
    NotConfigured,
    Syncing,
    Healthy,
}

fn scenario(rng: &mut Rng, sensor_type: SensorType) -> Scenario {
    use Scenario::*;
    let roll = rng.below(100);
    let s = match roll {
        0..8 => LocallyManaged,
        8..13 => Pending,
        13..15 => Unreachable,
        15..22 => Disconnected,
        22..25 => StartFailed,
        25..27 => UpdateFailed,
        27..29 => Updating,
        29..33 => Syncing,
        33..38 => NotConfigured,
        _ => Healthy,
    };
    if s == NotConfigured && !sensor_type.needs_capture_setting() { Healthy } else { s }
}

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn hex64(rng: &mut Rng) -> String {
    (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect()
}

/// The `i`th seeded sensor for generator state `rng`, as of `now`.
pub fn sensor(rng: &mut Rng, seed: u64, i: u64, now: Timestamp) -> SensorRow {
    use Scenario::*;
    let sensor_type = match rng.below(100) {
        0..45 => SensorType::DomainController,
        45..55 => SensorType::Adfs,
        55..70 => SensorType::Standalone,
        _ => SensorType::OtNetwork,
    };
    let sc = scenario(rng, sensor_type);
    let prefix = match sensor_type {
        SensorType::DomainController => "DC",
        SensorType::Adfs => "ADFS",
        SensorType::Standalone => "SA",
        SensorType::OtNetwork => "OT",
    };
    let ip = format!("10-{}-{}-{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    let name = if seed == 1 { format!("{prefix}{i:07}-{ip}") } else { format!("{prefix}{i:07}-S{seed}-{ip}") };
    let domain = if sensor_type == SensorType::OtNetwork && rng.chance(50) {
        String::new()
    } else {
        rng.pick(DOMAINS).to_string()
    };
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..rng.below(4) {
        let t = rng.pick(TAGS).to_string();
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    let created_at = Timestamp(now.0 - rng.range(DAY, 720 * DAY));
    let activated = !matches!(sc, Pending);
    let activated_at = activated.then(|| Timestamp((created_at.0 + rng.range(MIN, 2 * DAY)).min(now.0 - 10 * MIN)));
    let version_idx = (VERSIONS.len() - 1).saturating_sub(rng.below(VERSIONS.len() as u64).min(rng.below(4)) as usize);
    let version: Option<Version> = activated.then(|| VERSIONS[version_idx].parse().ok()).flatten();
    let mode = if sc == LocallyManaged { Mode::LocallyManaged } else { Mode::CloudConnected };
    let cloud = mode == Mode::CloudConnected && activated;
    let last_seen_at = match sc {
        LocallyManaged | Pending => None,
        Disconnected => Some(Timestamp(now.0 - rng.range(15 * MIN, 30 * DAY))),
        Unreachable => Some(Timestamp(now.0 - rng.range(MIN, 10 * DAY))),
        _ => Some(Timestamp(now.0 - rng.range(0, 2 * MIN))),
    };
    let service_started_at = cloud.then(|| match sc {
        StartFailed => Timestamp(now.0 - rng.range(HOUR, 6 * HOUR)),
        _ => Timestamp(now.0 - rng.range(2 * HOUR, 30 * DAY)),
    });
    let last_config_pull_at = match (sc, service_started_at) {
        (StartFailed, _) | (_, None) => None,
        (_, Some(started)) => Some(Timestamp(started.0 + rng.range(1_000, MIN))),
    };
    let service_status = match sc {
        LocallyManaged | Pending => ServiceStatus::Unknown,
        StartFailed => ServiceStatus::Starting,
        Disconnected if rng.chance(40) => ServiceStatus::Stopped,
        _ if rng.chance(2) => ServiceStatus::Disabled,
        _ => ServiceStatus::Running,
    };
    let capture_setting = (sensor_type.needs_capture_setting() && sc != NotConfigured)
        .then(|| rng.pick(&["eth1", "eth2", "span0", "mirror-port-3"]).to_string());
    let applied = rng.range(1, 20);
    let desired = if sc == Syncing { applied + 1 } else { applied };
    let (open_issues, health_status) = match sc {
        Disconnected | StartFailed | UpdateFailed => (rng.range(1, 4), HealthStatus::NotHealthyHigh),
        NotConfigured => (1, HealthStatus::NotHealthyMedium),
        _ => match rng.below(100) {
            0..80 => (0, HealthStatus::Healthy),
            80..90 => (1, HealthStatus::NotHealthyLow),
            90..97 => (rng.range(1, 3), HealthStatus::NotHealthyMedium),
            _ => (rng.range(1, 5), HealthStatus::NotHealthyHigh),
        },
    };
    SensorRow {
        id: uuid(rng),
        name,
        sensor_type,
        domain,
        subscription: rng.pick(SUBSCRIPTIONS).to_string(),
        site: rng.pick(SITES).to_string(),
        zone: rng.pick(ZONES).to_string(),
        tags,
        mode,
        auto_ti_updates: rng.chance(85),
        description: String::new(),
        capture_setting,
        delayed_update: rng.chance(15),
        service_status,
        version,
        created_at,
        last_seen_at,
        activated_at,
        decommissioned_at: (sc == Unreachable).then(|| Timestamp(now.0 - rng.range(MIN, 5 * DAY))),
        service_started_at,
        last_config_pull_at,
        update_state: match sc {
            UpdateFailed => UpdateState::Failed,
            Updating => UpdateState::Updating,
            _ => UpdateState::Idle,
        },
        config_version_applied: applied,
        config_version_desired: desired,
        ti_version: cloud.then(|| rng.range(100, 130)),
        open_issues,
        health_status,
        activation_expires_at: Some(created_at.plus(Duration::from_secs(7 * 86_400))),
        cert_fingerprint: activated.then(|| hex64(rng)),
    }
}

fn ignore_conflict(r: Result<(), StoreError>) -> anyhow::Result<()> {
    match r {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the subscriptions and zones the seeded sensors refer to.
async fn ensure_scopes(store: &dyn Store, now: Timestamp) -> anyhow::Result<()> {
    let audit = Audit { actor: "system".to_string(), action: "seed".to_string(), at: now };
    for name in SUBSCRIPTIONS {
        let s = Subscription { name: name.to_string(), description: "seeded".to_string(), created_at: now };
        ignore_conflict(store.create_subscription(&s, &audit).await).with_context(|| format!("subscription {name}"))?;
    }
    for name in ZONES {
        let z = Zone { name: name.to_string(), description: "seeded".to_string(), created_at: now };
        ignore_conflict(store.create_zone(&z, &audit).await).with_context(|| format!("zone {name}"))?;
    }
    Ok(())
}

/// Runs `picket seed`.
pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    if args.sensors == 0 {
        bail!("--sensors must be at least 1");
    }
    crate::serve::init_logging(crate::serve::LogFormat::Text);
    let store = crate::store::open(args.database_url.as_deref(), &args.data_dir).await?;
    let now = output::now();
    ensure_scopes(store.as_ref(), now).await?;
    let bar = ProgressBar::new(args.sensors);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    let started = Instant::now();
    let mut rng = Rng::new(args.seed);
    let mut written = 0u64;
    while written < args.sensors {
        let n = args.batch.min(args.sensors - written);
        let rows: Vec<SensorRow> = (written..written + n).map(|i| sensor(&mut rng, args.seed, i, now)).collect();
        store.import_sensors(&rows).await.with_context(|| {
            format!(
                "importing sensors {written}..{} (seeding a store that already holds these names? use another --seed)",
                written + n
            )
        })?;
        written += n;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "Seeded {written} sensors into {} in {secs:.1} s ({:.0} sensors/s).",
        store.backend(),
        written as f64 / secs.max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::{SensorStatus, StatusContext, StatusTimings, derive_sensor_status, validate};
    use std::collections::HashSet;

    #[test]
    fn records_are_deterministic_valid_and_varied() {
        let now = Timestamp(1_795_333_607_123);
        let gen_all = |seed| {
            let mut rng = Rng::new(seed);
            (0..2000).map(|i| sensor(&mut rng, seed, i, now)).collect::<Vec<_>>()
        };
        let rows = gen_all(1);
        assert_eq!(rows, gen_all(1));
        let ctx = StatusContext {
            now,
            timings: StatusTimings::default(),
            outdated_below: None,
            watching_since: Timestamp(0),
        };
        let mut statuses = HashSet::new();
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for r in &rows {
            validate::validate_name(&r.name).unwrap();
            validate::validate_domain(&r.domain).unwrap();
            validate::validate_tags(&r.tags).unwrap();
            assert!(names.insert(r.name.to_lowercase()) && ids.insert(r.id.clone()));
            statuses.insert(derive_sensor_status(&r.facts(), &ctx));
        }
        for s in SensorStatus::ALL {
            // `outdated` needs published releases, which seeding does not create.
            if *s != SensorStatus::Outdated {
                assert!(statuses.contains(s), "{s} never occurs");
            }
        }
        let other = gen_all(7);
        assert!(other[0].name.contains("-S7-") && other[0].id != rows[0].id);
    }
}
