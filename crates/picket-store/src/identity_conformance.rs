//! The conformance suite of `SensorIdentityStore`: activation consumes a token exactly once
//! (also under concurrent attempts), refusals say why, fingerprints resolve, heartbeats and
//! config pulls land. Backends run it with
//! `picket_store::identity_conformance_tests!(fresh_store().await)`, like the main suite.

use std::sync::Arc;

use picket_domain::{Mode, SensorType, ServiceStatus, Timestamp, Version};

use crate::{ActivationError, Audit, Heartbeat, NewSensor, Scope, Store};

/// Expands into one `#[tokio::test]` per identity conformance function (see
/// `conformance_tests!` for `$make`).
#[macro_export]
macro_rules! identity_conformance_tests {
    ($make:expr) => {
        $crate::identity_conformance_tests!(@each $make;
            activation_consumes_the_token_once,
            concurrent_activations_have_one_winner,
            heartbeats_are_written_in_batches,
            config_pulls_are_recorded,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::identity_conformance::$name(store).await;
            }
        )+
    };
}

const MIN: i64 = 60_000;
const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

/// Onboards `id` and gives it the token hash `hash` expiring at `expires`.
async fn pending(store: &Arc<dyn Store>, id: &str, hash: &str, expires: Timestamp) {
    let s = NewSensor {
        id: id.to_string(),
        name: format!("S-{id}"),
        sensor_type: SensorType::DomainController,
        domain: "corp.example.com".to_string(),
        subscription: "default".to_string(),
        site: String::new(),
        zone: "default".to_string(),
        tags: Vec::new(),
        mode: Mode::CloudConnected,
        auto_ti_updates: false,
        description: String::new(),
        capture_setting: None,
        delayed_update: false,
        created_at: Timestamp(NOW.0 - 10 * MIN),
    };
    store.create_sensor(&s, &audit("sensor.onboard")).await.expect("create_sensor");
    store.set_activation_token(id, &Scope::All, hash, expires, &audit("sensor.token")).await.expect("token");
}

fn refused(r: Result<crate::SensorRow, ActivationError>, what: &str, check: impl Fn(&ActivationError) -> bool) {
    match r {
        Err(e) if check(&e) => {}
        other => panic!("{what}: unexpected result {other:?}"),
    }
}

/// A valid token activates once, pins the fingerprint and records the contact; wrong,
/// reused and expired tokens and a fingerprint already pinned are refused, each with its reason.
pub async fn activation_consumes_the_token_once(store: Arc<dyn Store>) {
    let later = Timestamp(NOW.0 + 60 * MIN);
    pending(&store, "s1", "hash-1", later).await;
    pending(&store, "s2", "hash-2", Timestamp(NOW.0 - 1)).await;
    pending(&store, "s3", "hash-3", later).await;

    refused(store.activate_sensor("s1", "wrong", "fp-1", NOW).await, "wrong token", |e| {
        matches!(e, ActivationError::Unknown)
    });
    refused(store.activate_sensor("nope", "hash-1", "fp-1", NOW).await, "unknown sensor", |e| {
        matches!(e, ActivationError::Unknown)
    });
    refused(
        store.activate_sensor("s2", "hash-2", "fp-2", NOW).await,
        "expired token",
        |e| matches!(e, ActivationError::Expired { expired_at } if expired_at.0 == NOW.0 - 1),
    );
    assert_eq!(store.sensor_by_fingerprint("fp-1").await.expect("lookup"), None);

    let row = store.activate_sensor("s1", "hash-1", "fp-1", NOW).await.expect("activation");
    assert_eq!(row.activated_at, Some(NOW));
    assert_eq!(row.last_seen_at, Some(NOW));
    assert_eq!(row.cert_fingerprint.as_deref(), Some("fp-1"));
    let found = store.sensor_by_fingerprint("fp-1").await.expect("lookup").expect("pinned fingerprint resolves");
    assert_eq!(found, row);
    let many = ["fp-1", "fp-unknown", "fp-1"].map(String::from);
    assert_eq!(
        store.sensors_by_fingerprints(&many).await.expect("lookup"),
        vec![row.clone()],
        "one row per pinned fingerprint"
    );
    assert!(store.sensors_by_fingerprints(&[]).await.expect("lookup").is_empty());
    assert_eq!(store.get_sensor("s1", &Scope::All).await.expect("get"), Some(row));

    let t = Timestamp(NOW.0 + MIN);
    refused(store.activate_sensor("s1", "hash-1", "fp-other", t).await, "reused token", |e| {
        matches!(e, ActivationError::Reused)
    });
    refused(store.activate_sensor("s3", "hash-3", "fp-1", NOW).await, "fingerprint pinned elsewhere", |e| {
        matches!(e, ActivationError::CertificateInUse)
    });
    let s3 = store.get_sensor("s3", &Scope::All).await.expect("get").expect("s3");
    assert_eq!(s3.activated_at, None, "a refused activation changes nothing");

    let log = store.list_audit(None, 100).await.expect("audit");
    assert!(
        log.iter().any(|e| e.action == "sensor.activate" && e.target_id == "s1" && e.actor == "sensor:s1"),
        "activation is audited"
    );

    store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await.expect("delete");
    assert_eq!(store.sensor_by_fingerprint("fp-1").await.expect("lookup"), None, "delete revokes the fingerprint");
    assert!(store.sensors_by_fingerprints(&["fp-1".to_string()]).await.expect("lookup").is_empty());
}

/// Many attempts at once with the same token: exactly one wins, the rest see it reused.
pub async fn concurrent_activations_have_one_winner(store: Arc<dyn Store>) {
    pending(&store, "s1", "hash-1", Timestamp(NOW.0 + 60 * MIN)).await;
    let attempts = (0..16).map(|i| {
        let store = store.clone();
        async move { (i, store.activate_sensor("s1", "hash-1", &format!("fp-{i}"), NOW).await) }
    });
    let results = futures_util::future::join_all(attempts).await;
    let winners: Vec<usize> = results.iter().filter(|(_, r)| r.is_ok()).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "exactly one concurrent activation succeeds: {results:?}");
    for (i, r) in &results {
        if let Err(e) = r {
            assert!(matches!(e, ActivationError::Reused), "attempt {i}: {e:?}");
        }
    }
    let row = store.get_sensor("s1", &Scope::All).await.expect("get").expect("s1");
    assert_eq!(row.cert_fingerprint, Some(format!("fp-{}", winners[0])), "the winner's certificate is pinned");
}

fn beat(id: &str, at: Timestamp, status: ServiceStatus, version: &str, applied: i64) -> Heartbeat {
    Heartbeat {
        sensor_id: id.to_string(),
        at,
        service_status: status,
        version: Some(version.parse::<Version>().expect("fixture version")),
        config_version_applied: applied,
        ti_version: Some(3),
        service_started_at: Some(Timestamp(NOW.0 - MIN)),
        rss_bytes: Some(50_000_000),
        cpu_permille: Some(15),
    }
}

/// One batch updates many sensors; `last_seen_at` never moves back; unknown ids are ignored.
pub async fn heartbeats_are_written_in_batches(store: Arc<dyn Store>) {
    let exp = Timestamp(NOW.0 + 60 * MIN);
    for i in 0..3 {
        pending(&store, &format!("s{i}"), &format!("hash-{i}"), exp).await;
    }
    store.activate_sensor("s0", "hash-0", "fp-0", NOW).await.expect("activate s0");
    store.activate_sensor("s1", "hash-1", "fp-1", NOW).await.expect("activate s1");
    let t1 = Timestamp(NOW.0 + MIN);
    let batch = vec![
        beat("s1", t1, ServiceStatus::Running, "1.2.3", 1),
        beat("s0", t1, ServiceStatus::Starting, "1.10.0", 0),
        beat("gone", t1, ServiceStatus::Running, "1.0.0", 1),
        beat("s2", t1, ServiceStatus::Running, "1.0.0", 1),
    ];
    store.record_heartbeats(&batch).await.expect("record_heartbeats");
    store.record_heartbeats(&[]).await.expect("an empty batch is fine");
    let s0 = store.get_sensor("s0", &Scope::All).await.expect("get").expect("s0");
    let s1 = store.get_sensor("s1", &Scope::All).await.expect("get").expect("s1");
    let s2 = store.get_sensor("s2", &Scope::All).await.expect("get").expect("s2");
    assert_eq!((s0.last_seen_at, s0.service_status), (Some(t1), ServiceStatus::Starting));
    assert_eq!(s0.version.map(|v| v.to_string()).as_deref(), Some("1.10.0"));
    assert_eq!((s1.last_seen_at, s1.service_status), (Some(t1), ServiceStatus::Running));
    assert_eq!((s1.config_version_applied, s1.ti_version), (1, Some(3)));
    assert_eq!(s1.service_started_at, Some(Timestamp(NOW.0 - MIN)));
    assert_eq!(s2.last_seen_at, None, "a sensor that is not activated is not updated by heartbeats");

    // The version sort uses version_key: 1.10.0 sorts above 1.2.3.
    let q = crate::SensorQuery {
        scope: Scope::All,
        filter: crate::SensorFilter {
            version: vec!["1.10.0".parse::<Version>().expect("version")],
            ..Default::default()
        },
        sort: crate::Sort::default(),
        after: None,
        limit: 10,
        status: picket_domain::StatusContext {
            now: NOW,
            timings: Default::default(),
            outdated_below: None,
            watching_since: Timestamp(0),
        },
    };
    let listed = store.list_sensors(&q).await.expect("list");
    assert_eq!(listed.iter().map(|l| l.row.id.as_str()).collect::<Vec<_>>(), ["s0"], "version filter after heartbeat");

    let stale = beat("s1", NOW, ServiceStatus::Stopped, "1.2.3", 1);
    store.record_heartbeats(&[stale]).await.expect("stale heartbeat");
    let s1 = store.get_sensor("s1", &Scope::All).await.expect("get").expect("s1");
    assert_eq!(s1.last_seen_at, Some(t1), "last_seen_at never moves back");

    // Absent optional facts are written as absent; the latest of a sensor's beats in one
    // batch wins.
    let t2 = Timestamp(NOW.0 + 2 * MIN);
    let bare = Heartbeat {
        version: None,
        ti_version: None,
        service_started_at: None,
        rss_bytes: None,
        cpu_permille: None,
        ..beat("s0", t2, ServiceStatus::Stopped, "1.0.0", 2)
    };
    let earlier = beat("s0", t1, ServiceStatus::Running, "9.9.9", 7);
    store.record_heartbeats(&[earlier, bare]).await.expect("heartbeats with absent facts");
    let s0 = store.get_sensor("s0", &Scope::All).await.expect("get").expect("s0");
    assert_eq!((s0.last_seen_at, s0.service_status, s0.version), (Some(t2), ServiceStatus::Stopped, None));
    assert_eq!((s0.config_version_applied, s0.ti_version, s0.service_started_at), (2, None, None));
}

/// A configuration pull sets `last_config_pull_at` and counts as contact.
pub async fn config_pulls_are_recorded(store: Arc<dyn Store>) {
    pending(&store, "s1", "hash-1", Timestamp(NOW.0 + 60 * MIN)).await;
    store.activate_sensor("s1", "hash-1", "fp-1", NOW).await.expect("activate");
    let t = Timestamp(NOW.0 + 2 * MIN);
    store.record_config_pull("s1", t).await.expect("record_config_pull");
    let s1 = store.get_sensor("s1", &Scope::All).await.expect("get").expect("s1");
    assert_eq!((s1.last_config_pull_at, s1.last_seen_at), (Some(t), Some(t)));
    store.record_config_pull("gone", t).await.expect("a pull of a deleted sensor is ignored");
}
