//! Fixtures of the conformance suite: fixed instants and contexts, a small deterministic
//! PRNG, and random but reproducible sensor rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use picket_domain::{
    HealthStatus, Mode, SensorType, ServiceStatus, StatusContext, StatusTimings, Timestamp, UpdateState, Version,
};

use crate::query::{SensorFilter, SensorQuery, Sort};
use crate::{Audit, NewSensor, Scope, SensorRow, Store, StoreError, Subscription, Zone};

pub(super) const MIN: i64 = 60_000;
/// The instant the suite's status contexts are taken at.
pub(super) const NOW: Timestamp = Timestamp(1_800_000_000_000);

pub(super) fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("bad fixture version {s}: {e}"))
}

pub(super) fn ctx() -> StatusContext {
    StatusContext {
        now: NOW,
        timings: StatusTimings::default(),
        outdated_below: Some(v("1.2.0")),
        watching_since: Timestamp(0),
    }
}

/// A context in the grace period after a restart: nothing can be `disconnected`.
pub(super) fn grace_ctx() -> StatusContext {
    let c = StatusContext { outdated_below: None, watching_since: Timestamp(NOW.0 - 2 * MIN), ..ctx() };
    assert!(c.disconnect_cutoff().is_none(), "fixture: grace context must have no disconnect cutoff");
    c
}

pub(super) fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

pub(super) fn new_sensor(id: &str, name: &str) -> NewSensor {
    NewSensor {
        id: id.to_string(),
        name: name.to_string(),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".to_string(),
        subscription: "default".to_string(),
        site: "hq".to_string(),
        zone: "default".to_string(),
        tags: vec!["prod".to_string(), "dc".to_string()],
        mode: Mode::CloudConnected,
        auto_ti_updates: true,
        description: "first".to_string(),
        capture_setting: None,
        delayed_update: false,
        created_at: Timestamp(NOW.0 - 1000 * MIN),
    }
}

pub(super) fn all_ctx_query(filter: SensorFilter, scope: Scope, c: StatusContext) -> SensorQuery {
    SensorQuery { scope, filter, sort: Sort::default(), after: None, limit: 100_000, status: c }
}

pub(super) async fn ids(
    store: &Arc<dyn Store>,
    filter: SensorFilter,
    scope: Scope,
    c: StatusContext,
) -> BTreeSet<String> {
    let q = all_ctx_query(filter, scope, c);
    let plain: BTreeSet<String> =
        store.list_sensors(&q).await.expect("list_sensors").into_iter().map(|l| l.row.id).collect();
    // A backend may plan differently when told many sensors match; the answer must not change.
    let hinted: BTreeSet<String> = store
        .list_sensors_matching(&q, u64::MAX)
        .await
        .expect("list_sensors_matching")
        .into_iter()
        .map(|l| l.row.id)
        .collect();
    assert_eq!(plain, hinted, "list_sensors_matching agrees with list_sensors for {:?}", q.filter);
    plain
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce without extra crates.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub(super) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

pub(super) const SUBS: &[&str] = &["default", "sub-a", "sub-b"];
pub(super) const ZONES: &[&str] = &["default", "zone-a", "zone-b"];
pub(super) const TAGS: &[&str] = &["prod", "lab", "dc", "ot", "edge"];
pub(super) const SITES: &[&str] = &["", "hq", "plant-1", "Plant-2"];
pub(super) const DOMAINS: &[&str] = &["", "corp.example.com", "CORP.example.com", "ot.example.net"];

pub(super) async fn create_scopes(store: &Arc<dyn Store>) {
    for s in SUBS.iter().filter(|s| **s != "default") {
        let sub = Subscription { name: s.to_string(), description: String::new(), created_at: NOW };
        store.create_subscription(&sub, &audit("subscription.create")).await.expect("create_subscription");
    }
    for z in ZONES.iter().filter(|z| **z != "default") {
        let zone = Zone { name: z.to_string(), description: String::new(), created_at: NOW };
        store.create_zone(&zone, &audit("zone.create")).await.expect("create_zone");
    }
}

/// A timestamp near `NOW`, often exactly on a rule's boundary.
pub(super) fn random_ts(rng: &mut Rng) -> Option<Timestamp> {
    let offsets =
        [0, MIN, 5 * MIN, 10 * MIN - 1, 10 * MIN, 10 * MIN + 1, 29 * MIN, 30 * MIN, 30 * MIN + 1, 45 * MIN, 300 * MIN];
    if rng.chance(20) { None } else { Some(Timestamp(NOW.0 - rng.pick(&offsets))) }
}

/// `n` sensors with randomized facts, covering every status, in the suite's scopes.
pub(super) fn random_rows(n: usize, seed: u64) -> Vec<SensorRow> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let versions = [v("1.0.0"), v("1.1.5"), v("1.2.0"), v("1.10.0"), v("2.0.0")];
    (0..n)
        .map(|i| {
            let sensor_type = *rng.pick(SensorType::ALL);
            let tag_count = rng.below(4);
            let tags: Vec<String> = (0..tag_count).map(|_| rng.pick(TAGS).to_string()).collect();
            let activated = rng.chance(85);
            SensorRow {
                id: format!("{:08x}-{i:04}", rng.next() as u32),
                name: format!("{}{i:05}", rng.pick(&["DC", "dc", "Sensor-", "ot"])),
                sensor_type,
                domain: rng.pick(DOMAINS).to_string(),
                subscription: rng.pick(SUBS).to_string(),
                site: rng.pick(SITES).to_string(),
                zone: rng.pick(ZONES).to_string(),
                tags,
                mode: if rng.chance(10) { Mode::LocallyManaged } else { Mode::CloudConnected },
                auto_ti_updates: rng.chance(50),
                description: format!("row {i}"),
                capture_setting: match rng.below(3) {
                    0 => None,
                    1 => Some("  ".to_string()),
                    _ => Some("eth1".to_string()),
                },
                delayed_update: rng.chance(30),
                service_status: *rng.pick(ServiceStatus::ALL),
                version: if rng.chance(15) { None } else { Some(*rng.pick(&versions)) },
                created_at: Timestamp(NOW.0 - (rng.below(5000) as i64) * MIN),
                last_seen_at: random_ts(&mut rng),
                activated_at: if activated {
                    Some(Timestamp(NOW.0 - rng.pick(&[5 * MIN, 10 * MIN, 400 * MIN])))
                } else {
                    None
                },
                decommissioned_at: if rng.chance(8) { Some(Timestamp(NOW.0 - MIN)) } else { None },
                service_started_at: random_ts(&mut rng),
                last_config_pull_at: random_ts(&mut rng),
                update_state: if rng.chance(70) { UpdateState::Idle } else { *rng.pick(UpdateState::ALL) },
                config_version_applied: rng.below(3) as i64,
                config_version_desired: rng.below(3) as i64,
                ti_version: if rng.chance(50) { None } else { Some(rng.below(10) as i64) },
                open_issues: rng.below(4) as i64,
                health_status: *rng.pick(HealthStatus::ALL),
                activation_expires_at: if activated { None } else { Some(Timestamp(NOW.0 + 60 * MIN)) },
                cert_fingerprint: if activated { Some(format!("{:016x}{i:06}", rng.next())) } else { None },
            }
        })
        .collect()
}

/// Imports `n` random rows (after creating their scopes) and returns them.
pub(super) async fn seeded(store: &Arc<dyn Store>, n: usize, seed: u64) -> Vec<SensorRow> {
    create_scopes(store).await;
    let rows = random_rows(n, seed);
    store.import_sensors(&rows).await.expect("import_sensors");
    rows
}

pub(super) fn expect_err<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
    what: &str,
    check: impl Fn(&StoreError) -> bool,
) -> StoreError {
    match r {
        Err(e) if check(&e) => e,
        other => panic!("{what}: unexpected result {other:?}"),
    }
}
