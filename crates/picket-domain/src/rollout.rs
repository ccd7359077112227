//! Rules of a rollout: which sensors get the next update grants, when the delayed ring is
//! due, when a rollout is paused, when a grant is cleared or past its deadline. The control
//! plane evaluates these inside one database transaction that locks the rollout row, so
//! several replicas never grant more than the concurrency allows.

use crate::sensor::ServiceStatus;
use crate::time::Timestamp;
use crate::version::Version;

/// Where one sensor stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantState {
    /// No grant yet in this rollout.
    None,
    /// A grant is open (sent, not cleared, not failed).
    Granted,
    /// The sensor reported the new version (clearance).
    Succeeded,
    /// The update failed or passed its deadline.
    Failed,
}

/// A sensor as the rollout rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The sensor's id (grants are given in id order within a ring).
    pub sensor_id: String,
    /// Cloud connected, activated and not decommissioned.
    pub eligible: bool,
    /// `delayed_update` is set: it belongs to the delayed ring.
    pub delayed: bool,
    /// The version it last reported.
    pub version: Option<Version>,
    /// Its grant in this rollout.
    pub grant: GrantState,
}

/// Operator settings of rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPolicy {
    /// How many grants may be open at once (at least 1 is used).
    pub concurrency: u32,
    /// Failures after which the rollout pauses (at least 1 is used).
    pub max_failures: u32,
    /// Milliseconds after the release before the delayed ring starts.
    pub delay_ring_after_ms: i64,
}

/// Progress of one sensor, as `GET /api/v1/rollouts/current` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorProgress {
    /// Waiting for its turn.
    Pending,
    /// In the delayed ring, which is not due yet.
    WaitingDelayed,
    /// Updating now.
    Granted,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Already at (or above) the target, or not eligible: not part of the rollout.
    NotTargeted,
}

impl SensorProgress {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorProgress::Pending => "pending",
            SensorProgress::WaitingDelayed => "waiting_delayed",
            SensorProgress::Granted => "granted",
            SensorProgress::Succeeded => "succeeded",
            SensorProgress::Failed => "failed",
            SensorProgress::NotTargeted => "not_targeted",
        }
    }
}

/// Whether the delayed ring may start: `delay_ring_after_ms` has passed since `released_at`.
pub fn delayed_ring_due(released_at: Timestamp, now: Timestamp, delay_ring_after_ms: i64) -> bool {
    now.0.saturating_sub(released_at.0) >= delay_ring_after_ms.max(0)
}

/// Whether a rollout gives no new grants: paused by an operator or by failures.
pub fn is_paused(paused_by_operator: bool, failures: u32, max_failures: u32) -> bool {
    paused_by_operator || failures >= max_failures.max(1)
}

/// Whether a sensor on `version` needs the `target` (an unknown version does not: it has not
/// reported one yet, so there is nothing safe to compare).
pub fn needs_update(version: Option<Version>, target: Version) -> bool {
    version.is_some_and(|v| v < target)
}

/// Whether an open grant is past its deadline at `now`.
pub fn grant_expired(deadline: Timestamp, now: Timestamp) -> bool {
    now.0 > deadline.0
}

/// Whether a heartbeat clears a grant of `granted`: it reports that version with the service
/// running (the report may be lost; the running version is proof enough).
pub fn heartbeat_clears(granted: Version, reported: Option<Version>, service: ServiceStatus) -> bool {
    reported == Some(granted) && service == ServiceStatus::Running
}

/// The progress of `c` in a rollout to `target`.
pub fn progress(c: &Candidate, target: Version, delayed_due: bool) -> SensorProgress {
    match c.grant {
        GrantState::Granted => SensorProgress::Granted,
        GrantState::Succeeded => SensorProgress::Succeeded,
        GrantState::Failed => SensorProgress::Failed,
        GrantState::None if !c.eligible || !needs_update(c.version, target) => SensorProgress::NotTargeted,
        GrantState::None if c.delayed && !delayed_due => SensorProgress::WaitingDelayed,
        GrantState::None => SensorProgress::Pending,
    }
}

/// The sensors to grant now, in order: none while paused; otherwise pending sensors (the
/// normal ring first, then the delayed ring once due, each by id) up to the free
/// concurrency left by open grants.
pub fn next_grants(
    candidates: &[Candidate],
    target: Version,
    policy: RolloutPolicy,
    paused: bool,
    delayed_due: bool,
) -> Vec<String> {
    if paused {
        return Vec::new();
    }
    let open = candidates.iter().filter(|c| c.grant == GrantState::Granted).count();
    first_pending(candidates, target, free_slots(open, policy), delayed_due)
}

/// How many grants may still open while `open` sensors hold one: the concurrency (at least 1)
/// less those.
pub fn free_slots(open: usize, policy: RolloutPolicy) -> usize {
    (policy.concurrency.max(1) as usize).saturating_sub(open)
}

/// The first `free` pending sensors among `candidates`, in grant order (the normal ring, then
/// the delayed ring once due, each by id). [`next_grants`] over a whole fleet equals this
/// over any part of it that holds, for each ring and reported version, its first `free`
/// pending sensors by id, with `free` from [`free_slots`] over the fleet's open grants: what
/// a store reads through its indexes instead of every sensor.
pub fn first_pending(candidates: &[Candidate], target: Version, free: usize, delayed_due: bool) -> Vec<String> {
    let mut pending: Vec<&Candidate> =
        candidates.iter().filter(|c| progress(c, target, delayed_due) == SensorProgress::Pending).collect();
    pending.sort_by(|a, b| a.delayed.cmp(&b.delayed).then_with(|| a.sensor_id.cmp(&b.sensor_id)));
    pending.into_iter().take(free).map(|c| c.sensor_id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn cand(id: &str, delayed: bool, version: &str, grant: GrantState) -> Candidate {
        Candidate { sensor_id: id.into(), eligible: true, delayed, version: Some(v(version)), grant }
    }

    fn policy(concurrency: u32) -> RolloutPolicy {
        RolloutPolicy { concurrency, max_failures: 1, delay_ring_after_ms: 1000 }
    }

    #[test]
    fn delayed_ring_is_due_exactly_after_the_delay() {
        assert!(!delayed_ring_due(Timestamp(0), Timestamp(999), 1000));
        assert!(delayed_ring_due(Timestamp(0), Timestamp(1000), 1000));
        assert!(delayed_ring_due(Timestamp(0), Timestamp(5000), 1000));
        assert!(delayed_ring_due(Timestamp(10), Timestamp(10), 0));
        assert!(delayed_ring_due(Timestamp(10), Timestamp(10), -5));
        assert!(!delayed_ring_due(Timestamp(1000), Timestamp(0), 1));
    }

    #[test]
    fn paused_by_operator_or_by_failures() {
        for op in [false, true] {
            for failures in 0..4 {
                for max in 0..4 {
                    let expected = op || failures >= max.max(1);
                    assert_eq!(is_paused(op, failures, max), expected, "{op} {failures} {max}");
                }
            }
        }
    }

    #[test]
    fn only_lower_known_versions_need_the_update() {
        assert!(needs_update(Some(v("1.0.0")), v("1.1.0")));
        assert!(needs_update(Some(v("1.9.0")), v("1.10.0")));
        assert!(!needs_update(Some(v("1.1.0")), v("1.1.0")));
        assert!(!needs_update(Some(v("2.0.0")), v("1.1.0")));
        assert!(!needs_update(None, v("1.1.0")));
    }

    #[test]
    fn deadline_and_heartbeat_clearance() {
        assert!(!grant_expired(Timestamp(10), Timestamp(10)));
        assert!(grant_expired(Timestamp(10), Timestamp(11)));
        for s in ServiceStatus::ALL {
            for reported in [None, Some(v("1.0.0")), Some(v("1.1.0"))] {
                let expected = reported == Some(v("1.1.0")) && *s == ServiceStatus::Running;
                assert_eq!(heartbeat_clears(v("1.1.0"), reported, *s), expected);
            }
        }
    }

    #[test]
    fn progress_covers_every_state() {
        let t = v("1.1.0");
        for g in [GrantState::None, GrantState::Granted, GrantState::Succeeded, GrantState::Failed] {
            for eligible in [false, true] {
                for delayed in [false, true] {
                    for version in ["1.0.0", "1.1.0"] {
                        for due in [false, true] {
                            let mut c = cand("a", delayed, version, g);
                            c.eligible = eligible;
                            let p = progress(&c, t, due);
                            let expected = match g {
                                GrantState::Granted => SensorProgress::Granted,
                                GrantState::Succeeded => SensorProgress::Succeeded,
                                GrantState::Failed => SensorProgress::Failed,
                                GrantState::None if !eligible || version == "1.1.0" => SensorProgress::NotTargeted,
                                GrantState::None if delayed && !due => SensorProgress::WaitingDelayed,
                                GrantState::None => SensorProgress::Pending,
                            };
                            assert_eq!(p, expected);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_at_a_time_normal_ring_first_then_delayed_when_due() {
        let t = v("1.1.0");
        let mut fleet = vec![
            cand("e", true, "1.0.0", GrantState::None),
            cand("b", false, "1.0.0", GrantState::None),
            cand("a", false, "1.0.0", GrantState::None),
            cand("d", true, "1.0.0", GrantState::None),
            cand("c", false, "1.0.0", GrantState::None),
            cand("z", false, "1.1.0", GrantState::None),
        ];
        let mut order = Vec::new();
        for _ in 0..10 {
            let due = order.len() >= 3;
            let next = next_grants(&fleet, t, policy(1), false, due);
            assert!(next.len() <= 1);
            let Some(id) = next.first() else { break };
            order.push(id.clone());
            let c = fleet.iter_mut().find(|c| &c.sensor_id == id).unwrap();
            c.grant = GrantState::Granted;
            // Nothing more while it is open.
            assert!(next_grants(&fleet, t, policy(1), false, true).is_empty());
            fleet.iter_mut().find(|c| &c.sensor_id == id).unwrap().grant = GrantState::Succeeded;
        }
        assert_eq!(order, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn delayed_ring_waits_and_paused_grants_nothing() {
        let t = v("1.1.0");
        let fleet = vec![cand("d", true, "1.0.0", GrantState::None)];
        assert!(next_grants(&fleet, t, policy(1), false, false).is_empty());
        assert_eq!(next_grants(&fleet, t, policy(1), false, true), ["d"]);
        assert!(next_grants(&fleet, t, policy(1), true, true).is_empty());
    }

    #[test]
    fn concurrency_counts_open_grants_and_failed_are_not_retried() {
        let t = v("1.1.0");
        let fleet = vec![
            cand("a", false, "1.0.0", GrantState::Granted),
            cand("b", false, "1.0.0", GrantState::Failed),
            cand("c", false, "1.0.0", GrantState::None),
            cand("d", false, "1.0.0", GrantState::None),
            cand("e", false, "1.0.0", GrantState::None),
        ];
        for conc in 0..6u32 {
            let got = next_grants(&fleet, t, policy(conc), false, true);
            let free = (conc.max(1) as usize).saturating_sub(1).min(3);
            assert_eq!(got, ["c", "d", "e"][..free].to_vec(), "concurrency {conc}");
        }
    }

    proptest::proptest! {
        /// The bounded read a store does (open grants counted, then per ring and version the
        /// first `free` pending sensors by id) decides exactly what the whole fleet decides.
        #[test]
        fn first_pending_per_group_decides_like_the_whole_fleet(
            fleet in proptest::collection::vec(
                (0u8..40, proptest::bool::ANY, proptest::bool::ANY, 0u8..4, 0u8..4),
                0..40,
            ),
            concurrency in 0u32..5,
            due in proptest::bool::ANY,
        ) {
            let t = v("1.2.0");
            let versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"];
            let states = [GrantState::None, GrantState::Granted, GrantState::Succeeded, GrantState::Failed];
            let mut seen = std::collections::HashSet::new();
            let fleet: Vec<Candidate> = fleet
                .into_iter()
                .filter(|(id, ..)| seen.insert(*id))
                .map(|(id, eligible, delayed, ver, g)| Candidate {
                    sensor_id: format!("s{id:02}"),
                    eligible,
                    delayed,
                    version: if ver == 3 && id % 2 == 0 { None } else { Some(v(versions[ver as usize])) },
                    grant: states[g as usize],
                })
                .collect();
            let p = policy(concurrency);
            let whole = next_grants(&fleet, t, p, false, due);
            let open = fleet.iter().filter(|c| c.grant == GrantState::Granted).count();
            let free = free_slots(open, p);
            let mut bounded = Vec::new();
            for delayed in [false, true] {
                for ver in versions {
                    let mut group: Vec<&Candidate> = fleet
                        .iter()
                        .filter(|c| c.delayed == delayed && c.version == Some(v(ver)))
                        .filter(|c| progress(c, t, due) == SensorProgress::Pending)
                        .collect();
                    group.sort_by(|a, b| a.sensor_id.cmp(&b.sensor_id));
                    bounded.extend(group.into_iter().take(free).cloned());
                }
            }
            bounded.reverse();
            proptest::prop_assert_eq!(first_pending(&bounded, t, free, due), whole);
        }
    }
}
