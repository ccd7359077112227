//! The conformance suite of `CertRotationStore`: a proposal waits beside the pinned
//! certificate (which keeps working) and a repeat replaces it; a certificate pinned or
//! proposed elsewhere is refused; the confirm swaps pinned := pending exactly once and the old
//! certificate then resolves to nothing; expiries are recorded and listed. Backends run it with
//! `picket_store::rotation_conformance_tests!(fresh_store().await)`.

use std::sync::Arc;

use picket_domain::{Mode, SensorType, Timestamp};

use crate::{Audit, CertState, NewSensor, RotationError, Scope, Store};

/// Expands into one `#[tokio::test]` per rotation conformance function (see
/// `conformance_tests!` for `$make`).
#[macro_export]
macro_rules! rotation_conformance_tests {
    ($make:expr) => {
        $crate::rotation_conformance_tests!(@each $make;
            rotation_proposes_then_confirms,
            rotation_refuses_certificates_in_use,
            cert_expiry_is_recorded_and_listed,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::rotation_conformance::$name(store).await;
            }
        )+
    };
}

const DAY: i64 = 86_400_000;
const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

/// Onboards `id` and activates it with fingerprint `fp`.
async fn active(store: &Arc<dyn Store>, id: &str, fp: &str) {
    let s = NewSensor {
        id: id.to_string(),
        name: format!("R-{id}"),
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
        created_at: Timestamp(NOW.0 - DAY),
    };
    store.create_sensor(&s, &audit("sensor.onboard")).await.expect("create_sensor");
    let hash = format!("hash-{id}");
    store.set_activation_token(id, &Scope::All, &hash, Timestamp(NOW.0 + DAY), &audit("t")).await.expect("token");
    store.activate_sensor(id, &hash, fp, NOW).await.expect("activate");
}

async fn pinned_to(store: &Arc<dyn Store>, fp: &str) -> Option<String> {
    store.sensor_by_fingerprint(fp).await.expect("lookup").map(|r| r.id)
}

async fn pending_of(store: &Arc<dyn Store>, fp: &str) -> Option<String> {
    store.sensor_by_pending_fingerprint(fp).await.expect("pending lookup").map(|r| r.id)
}

/// Propose records a pending certificate (a repeat replaces it) while the old one keeps
/// authenticating; confirm swaps them, carries the expiry over, and works once.
pub async fn rotation_proposes_then_confirms(store: Arc<dyn Store>) {
    active(&store, "s1", "old").await;
    let exp1 = Timestamp(NOW.0 + 700 * DAY);
    let st = store.propose_certificate("old", "new-1", exp1, NOW).await.expect("propose");
    assert_eq!(st.pending_fingerprint.as_deref(), Some("new-1"));
    assert_eq!(st.pending_expires_at, Some(exp1));
    assert_eq!(pinned_to(&store, "old").await.as_deref(), Some("s1"), "the old certificate keeps working");
    assert_eq!(pinned_to(&store, "new-1").await, None, "a pending certificate authenticates nothing");
    assert_eq!(pending_of(&store, "new-1").await.as_deref(), Some("s1"));

    // The same proposal again is fine (a sensor resuming after a crash); another replaces it.
    store.propose_certificate("old", "new-1", exp1, NOW).await.expect("repeat propose");
    let exp2 = Timestamp(NOW.0 + 730 * DAY);
    store.propose_certificate("old", "new-2", exp2, NOW).await.expect("replacing propose");
    assert_eq!(pending_of(&store, "new-1").await, None, "the replaced proposal is gone");
    assert!(matches!(store.confirm_certificate("new-1", NOW).await, Err(RotationError::NotProposed)));

    let t = Timestamp(NOW.0 + 1000);
    let st = store.confirm_certificate("new-2", t).await.expect("confirm");
    assert_eq!(
        st,
        CertState {
            sensor_id: "s1".to_string(),
            fingerprint: Some("new-2".to_string()),
            expires_at: Some(exp2),
            pending_fingerprint: None,
            pending_expires_at: None,
        }
    );
    assert_eq!(store.cert_state("s1").await.expect("cert_state"), Some(st));
    assert_eq!(pinned_to(&store, "old").await, None, "after confirm the old certificate is refused");
    assert_eq!(pinned_to(&store, "new-2").await.as_deref(), Some("s1"));
    assert_eq!(pending_of(&store, "new-2").await, None);
    assert!(matches!(store.confirm_certificate("new-2", t).await, Err(RotationError::NotProposed)), "confirm once");
    assert!(matches!(store.propose_certificate("old", "new-3", exp2, t).await, Err(RotationError::UnknownCertificate)));

    let log = store.list_audit(None, 100).await.expect("audit");
    for action in ["sensor.cert_propose", "sensor.cert_confirm"] {
        assert!(
            log.iter().any(|e| e.action == action && e.target_id == "s1" && e.actor == "sensor:s1"),
            "{action} is audited"
        );
    }
    let row = store.get_sensor("s1", &Scope::All).await.expect("get").expect("s1");
    assert_eq!(row.cert_fingerprint.as_deref(), Some("new-2"));

    store.delete_sensor("s1", &Scope::All, &audit("sensor.delete")).await.expect("delete");
    assert_eq!(store.cert_state("s1").await.expect("cert_state"), None);
}

/// A certificate pinned to or proposed by any sensor cannot be proposed; unknown
/// certificates cannot propose; a deleted sensor's proposal cannot be confirmed.
pub async fn rotation_refuses_certificates_in_use(store: Arc<dyn Store>) {
    active(&store, "s1", "fp-1").await;
    active(&store, "s2", "fp-2").await;
    let exp = Timestamp(NOW.0 + 700 * DAY);
    let in_use = |r: Result<CertState, RotationError>| matches!(r, Err(RotationError::CertificateInUse));
    assert!(in_use(store.propose_certificate("fp-1", "fp-1", exp, NOW).await), "its own pinned certificate");
    assert!(in_use(store.propose_certificate("fp-1", "fp-2", exp, NOW).await), "another sensor's certificate");
    store.propose_certificate("fp-2", "p", exp, NOW).await.expect("s2 proposes p");
    assert!(in_use(store.propose_certificate("fp-1", "p", exp, NOW).await), "another sensor's proposal");
    assert!(matches!(store.propose_certificate("nobody", "q", exp, NOW).await, Err(RotationError::UnknownCertificate)));
    store.delete_sensor("s2", &Scope::All, &audit("sensor.delete")).await.expect("delete");
    assert!(matches!(store.confirm_certificate("p", NOW).await, Err(RotationError::NotProposed)));
    store.propose_certificate("fp-1", "p", exp, NOW).await.expect("free again after the delete");
}

/// Expiry recorded at activation (only for the certificate still pinned) and listed when due.
pub async fn cert_expiry_is_recorded_and_listed(store: Arc<dyn Store>) {
    active(&store, "s1", "fp-1").await;
    active(&store, "s2", "fp-2").await;
    active(&store, "s3", "fp-3").await;
    let soon = Timestamp(NOW.0 + 10 * DAY);
    let later = Timestamp(NOW.0 + 700 * DAY);
    store.record_cert_expiry("s1", "fp-1", soon).await.expect("record s1");
    store.record_cert_expiry("s2", "fp-2", later).await.expect("record s2");
    store.record_cert_expiry("s3", "not-its-cert", soon).await.expect("a stale record is ignored");
    let s3 = store.cert_state("s3").await.expect("cert_state").expect("s3");
    assert_eq!(s3.expires_at, None);
    let due = store.certs_expiring_before(Timestamp(NOW.0 + 30 * DAY), 100).await.expect("expiring");
    assert_eq!(due.iter().map(|c| c.sensor_id.as_str()).collect::<Vec<_>>(), ["s1"]);
    assert_eq!(due[0].expires_at, Some(soon));
    let all = store.certs_expiring_before(Timestamp(NOW.0 + 800 * DAY), 100).await.expect("expiring");
    assert_eq!(all.iter().map(|c| c.sensor_id.as_str()).collect::<Vec<_>>(), ["s1", "s2"], "soonest first");
    let one = store.certs_expiring_before(Timestamp(NOW.0 + 800 * DAY), 1).await.expect("expiring");
    assert_eq!(one.len(), 1);

    // Rotating s1 replaces its expiry with the new certificate's: no longer due.
    store.propose_certificate("fp-1", "fp-1b", later, NOW).await.expect("propose");
    store.confirm_certificate("fp-1b", NOW).await.expect("confirm");
    let due = store.certs_expiring_before(Timestamp(NOW.0 + 30 * DAY), 100).await.expect("expiring");
    assert!(due.is_empty(), "{due:?}");
}
