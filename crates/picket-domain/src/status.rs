//! `sensor_status`: derived from recorded facts and `now`, first rule that holds wins
//! (DESIGN.md). The store translates the same rules to SQL for filtering; its conformance
//! suite checks both agree, and this file is the reference.

use std::time::Duration;

use crate::sensor::{Mode, UpdateState};
use crate::time::Timestamp;
use crate::version::Version;

string_enum! {
    /// The derived status of a sensor, in precedence order (the first that holds wins).
    SensorStatus {
        /// A locally managed sensor never talks to the control plane.
        NotApplicable = "not_applicable",
        /// Onboarded, its activation file not used yet.
        PendingActivation = "pending_activation",
        /// Its host was decommissioned; the record remains and is safe to delete.
        Unreachable = "unreachable",
        /// No communication for `disconnect_after`.
        Disconnected = "disconnected",
        /// Communicating, but no configuration pulled for `start_failed_after` since it started.
        StartFailed = "start_failed",
        /// The last update attempt failed.
        UpdateFailed = "update_failed",
        /// An update is in progress.
        Updating = "updating",
        /// Its type needs a setting that is missing.
        NotConfigured = "not_configured",
        /// Desired configuration is ahead of applied.
        Syncing = "syncing",
        /// At least three releases behind the current one.
        Outdated = "outdated",
        /// Nothing to report.
        UpToDate = "up_to_date",
    }
}

impl SensorStatus {
    /// The precedence position (0 first), stored and sorted on by the backends.
    pub fn rank(self) -> i64 {
        SensorStatus::ALL.iter().position(|s| *s == self).unwrap_or(0) as i64
    }
}

/// The timings of the status rules; settings of `picket serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusTimings {
    /// Silence after which a sensor is `disconnected` (default 10 minutes).
    pub disconnect_after: Duration,
    /// Time since start without a configuration pull after which it is `start_failed` (30 minutes).
    pub start_failed_after: Duration,
}

impl Default for StatusTimings {
    fn default() -> Self {
        StatusTimings {
            disconnect_after: Duration::from_secs(10 * 60),
            start_failed_after: Duration::from_secs(30 * 60),
        }
    }
}

/// What the control plane has recorded about one sensor, all that the status depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFacts {
    /// Cloud connected or locally managed.
    pub mode: Mode,
    /// When the activation token was consumed; `None` while pending.
    pub activated_at: Option<Timestamp>,
    /// When an operator marked its host as gone from the directory.
    pub decommissioned_at: Option<Timestamp>,
    /// When the control plane last heard from it.
    pub last_seen_at: Option<Timestamp>,
    /// When the sensor service last started, as the sensor reported it.
    pub service_started_at: Option<Timestamp>,
    /// When it last pulled its configuration.
    pub last_config_pull_at: Option<Timestamp>,
    /// Where its last update stands.
    pub update_state: UpdateState,
    /// Whether its type has the settings it needs (`sensor::is_configured`).
    pub configured: bool,
    /// The configuration version the control plane wants it to run.
    pub config_version_desired: i64,
    /// The configuration version it reported applying.
    pub config_version_applied: i64,
    /// The version it runs, if it ever said.
    pub version: Option<Version>,
}

/// Everything outside the sensor that its status depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusContext {
    /// The instant the status is derived for.
    pub now: Timestamp,
    /// The rule timings.
    pub timings: StatusTimings,
    /// Versions below this are `outdated` (see `version::outdated_below`).
    pub outdated_below: Option<Version>,
    /// Since when this control plane has been able to hear heartbeats (its start, or the end
    /// of its last stall): silence before it is not the sensor's fault, so every sensor gets a
    /// full `disconnect_after` from here before it can be `disconnected`.
    pub watching_since: Timestamp,
}

impl StatusContext {
    /// Sensors whose last contact is at or before this instant are `disconnected`; `None`
    /// during the grace period after `watching_since`, when none is.
    pub fn disconnect_cutoff(&self) -> Option<Timestamp> {
        let cutoff = self.now.minus(self.timings.disconnect_after);
        (self.watching_since <= cutoff).then_some(cutoff)
    }

    /// This context without the grace period after `watching_since`: what a sensor's silence
    /// means once the control plane has been listening long enough. An open `disconnected`
    /// issue is judged by it (`issues::condition_ended`): a restart is no news of the sensor.
    pub fn without_grace(&self) -> StatusContext {
        StatusContext { watching_since: Timestamp(i64::MIN), ..*self }
    }

    /// A service started strictly before this instant without pulling configuration since is
    /// `start_failed`.
    pub fn start_failed_cutoff(&self) -> Timestamp {
        self.now.minus(self.timings.start_failed_after)
    }
}

/// The status of a sensor with these facts, in this context: the first rule that holds wins.
pub fn derive_sensor_status(f: &StatusFacts, ctx: &StatusContext) -> SensorStatus {
    use SensorStatus::*;
    if f.mode == Mode::LocallyManaged {
        return NotApplicable;
    }
    let Some(activated_at) = f.activated_at else {
        return PendingActivation;
    };
    if f.decommissioned_at.is_some() {
        return Unreachable;
    }
    let last_contact = f.last_seen_at.unwrap_or(activated_at).max(activated_at);
    if ctx.disconnect_cutoff().is_some_and(|cutoff| last_contact <= cutoff) {
        return Disconnected;
    }
    if let Some(started) = f.service_started_at {
        let pulled_since_start = f.last_config_pull_at.is_some_and(|p| p >= started);
        if !pulled_since_start && started < ctx.start_failed_cutoff() {
            return StartFailed;
        }
    }
    match f.update_state {
        UpdateState::Failed => return UpdateFailed,
        UpdateState::Updating => return Updating,
        UpdateState::Idle => {}
    }
    if !f.configured {
        return NotConfigured;
    }
    if f.config_version_desired > f.config_version_applied {
        return Syncing;
    }
    if let (Some(v), Some(below)) = (f.version, ctx.outdated_below)
        && v < below
    {
        return Outdated;
    }
    UpToDate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    const NOW: Timestamp = Timestamp(1_000 * MIN);

    fn healthy() -> StatusFacts {
        StatusFacts {
            mode: Mode::CloudConnected,
            activated_at: Some(Timestamp(NOW.0 - 100 * MIN)),
            decommissioned_at: None,
            last_seen_at: Some(Timestamp(NOW.0 - MIN)),
            service_started_at: Some(Timestamp(NOW.0 - 90 * MIN)),
            last_config_pull_at: Some(Timestamp(NOW.0 - 89 * MIN)),
            update_state: UpdateState::Idle,
            configured: true,
            config_version_desired: 1,
            config_version_applied: 1,
            version: Some(v("1.3.0")),
        }
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn ctx() -> StatusContext {
        StatusContext {
            now: NOW,
            timings: StatusTimings::default(),
            outdated_below: Some(v("1.1.0")),
            watching_since: Timestamp(0),
        }
    }

    fn check(f: impl FnOnce(&mut StatusFacts), expected: SensorStatus) {
        let mut facts = healthy();
        f(&mut facts);
        assert_eq!(derive_sensor_status(&facts, &ctx()), expected, "{facts:?}");
    }

    #[test]
    fn each_rule_on_its_own() {
        use SensorStatus::*;
        check(|_| {}, UpToDate);
        check(|f| f.mode = Mode::LocallyManaged, NotApplicable);
        check(|f| f.activated_at = None, PendingActivation);
        check(|f| f.decommissioned_at = Some(NOW), Unreachable);
        check(|f| f.last_seen_at = Some(Timestamp(NOW.0 - 11 * MIN)), Disconnected);
        check(|f| f.last_config_pull_at = None, StartFailed);
        check(|f| f.update_state = UpdateState::Failed, UpdateFailed);
        check(|f| f.update_state = UpdateState::Updating, Updating);
        check(|f| f.configured = false, NotConfigured);
        check(|f| f.config_version_desired = 2, Syncing);
        check(|f| f.version = Some(v("1.0.9")), Outdated);
    }

    #[test]
    fn boundaries() {
        use SensorStatus::*;
        // Exactly 10 minutes of silence is disconnected; a millisecond less is not.
        check(|f| f.last_seen_at = Some(Timestamp(NOW.0 - 10 * MIN)), Disconnected);
        check(|f| f.last_seen_at = Some(Timestamp(NOW.0 - 10 * MIN + 1)), UpToDate);
        // Exactly 30 minutes since start without a pull is not yet start_failed; more is.
        check(
            |f| {
                f.service_started_at = Some(Timestamp(NOW.0 - 30 * MIN));
                f.last_config_pull_at = None;
            },
            UpToDate,
        );
        check(
            |f| {
                f.service_started_at = Some(Timestamp(NOW.0 - 30 * MIN - 1));
                f.last_config_pull_at = None;
            },
            StartFailed,
        );
        // A pull before the latest start does not count.
        check(|f| f.last_config_pull_at = Some(Timestamp(NOW.0 - 91 * MIN)), StartFailed);
        // Exactly three releases behind is outdated; two is not (outdated_below is the third newest).
        check(|f| f.version = Some(v("1.1.0")), UpToDate);
        // A sensor never heard from after activation is measured from its activation.
        check(
            |f| {
                f.last_seen_at = None;
                f.activated_at = Some(Timestamp(NOW.0 - 10 * MIN));
            },
            Disconnected,
        );
        check(|f| f.version = None, UpToDate);
    }

    #[test]
    fn a_restarted_server_gives_a_full_grace_period() {
        let mut facts = healthy();
        facts.last_seen_at = Some(Timestamp(NOW.0 - 60 * MIN));
        let mut c = ctx();
        c.watching_since = Timestamp(NOW.0 - 9 * MIN);
        assert_eq!(derive_sensor_status(&facts, &c), SensorStatus::UpToDate);
        c.watching_since = Timestamp(NOW.0 - 10 * MIN);
        assert_eq!(derive_sensor_status(&facts, &c), SensorStatus::Disconnected);
    }

    #[test]
    fn rank_follows_precedence() {
        for (i, s) in SensorStatus::ALL.iter().enumerate() {
            assert_eq!(s.rank(), i as i64);
        }
    }

    fn arb_ts() -> impl Strategy<Value = Option<Timestamp>> {
        proptest::option::of((0i64..200).prop_map(|m| Timestamp(NOW.0 - m * MIN / 2)))
    }

    prop_compose! {
        fn arb_facts()(
            local in any::<bool>(), activated in arb_ts(), decom in arb_ts(), seen in arb_ts(),
            started in arb_ts(), pulled in arb_ts(), upd in 0usize..3, configured in any::<bool>(),
            desired in 0i64..3, applied in 0i64..3, ver in proptest::option::of(0u32..5),
        ) -> StatusFacts {
            StatusFacts {
                mode: if local { Mode::LocallyManaged } else { Mode::CloudConnected },
                activated_at: activated, decommissioned_at: decom, last_seen_at: seen,
                service_started_at: started, last_config_pull_at: pulled,
                update_state: UpdateState::ALL[upd], configured,
                config_version_desired: desired, config_version_applied: applied,
                version: ver.map(|m| Version::new(1, m, 0).unwrap()),
            }
        }
    }

    /// The rules of DESIGN.md written out one by one, independently of the ordered `if`s.
    fn holds(s: SensorStatus, f: &StatusFacts, c: &StatusContext) -> bool {
        use SensorStatus::*;
        let contact = f.activated_at.map(|a| f.last_seen_at.unwrap_or(a).max(a));
        match s {
            NotApplicable => f.mode == Mode::LocallyManaged,
            PendingActivation => f.activated_at.is_none(),
            Unreachable => f.decommissioned_at.is_some(),
            Disconnected => contact.is_some_and(|t| {
                c.now.since(t) >= c.timings.disconnect_after
                    && c.now.since(c.watching_since) >= c.timings.disconnect_after
            }),
            StartFailed => f.service_started_at.is_some_and(|st| {
                c.now.since(st) > c.timings.start_failed_after && f.last_config_pull_at.is_none_or(|p| p < st)
            }),
            UpdateFailed => f.update_state == UpdateState::Failed,
            Updating => f.update_state == UpdateState::Updating,
            NotConfigured => !f.configured,
            Syncing => f.config_version_desired > f.config_version_applied,
            Outdated => matches!((f.version, c.outdated_below), (Some(v), Some(b)) if v < b),
            UpToDate => true,
        }
    }

    proptest! {
        #[test]
        fn the_first_rule_that_holds_wins(f in arb_facts(), since in 0i64..30) {
            let mut c = ctx();
            c.watching_since = Timestamp(NOW.0 - since * MIN);
            let expected = SensorStatus::ALL.iter().copied().find(|s| holds(*s, &f, &c)).unwrap();
            prop_assert_eq!(derive_sensor_status(&f, &c), expected);
        }
    }
}
