//! Health issues: their kinds (severity, title, recommendation), which conditions hold for a
//! sensor's facts at a `StatusContext`, and the operator-facing text of each issue.
//!
//! The conditions agree with `derive_sensor_status` (the reference): a sensor that is locally
//! managed, pending activation or unreachable raises nothing; a disconnected one raises only
//! `disconnected` (its other facts are stale); otherwise each kind's own rule decides, and the
//! kind matching its derived status (`start_failed`, `update_failed`, `not_configured`,
//! `outdated`) always holds.

use std::time::Duration;

use crate::health::Severity;
use crate::sensor::{SensorType, ServiceStatus, UpdateState};
use crate::status::{SensorStatus, StatusContext, StatusFacts, derive_sensor_status};
use crate::time::Timestamp;

string_enum! {
    /// What a health issue is about.
    HealthIssueKind {
        /// No communication for `disconnect_after`.
        Disconnected = "disconnected",
        /// The sensor reports its service stopped or disabled.
        ServiceStopped = "service_stopped",
        /// Started, but has not pulled configuration for `start_failed_after`.
        StartFailed = "start_failed",
        /// Its type needs a capture/monitor setting that is missing.
        NotConfigured = "not_configured",
        /// The last update attempt failed.
        UpdateFailed = "update_failed",
        /// At least three releases behind the current one.
        Outdated = "outdated",
        /// Its client certificate expires soon (raised by the rotation code).
        CertExpiring = "cert_expiring",
        /// The updater's memory/CPU watchdog restarted the sensor service.
        WatchdogRestart = "watchdog_restart",
        /// Its threat-intelligence package is behind the published one.
        TiStale = "ti_stale",
    }
}

string_enum! {
    /// Whether a health issue is open.
    IssueStatus {
        /// The condition holds (or an operator reopened it).
        Open = "open",
        /// Auto-closed when the condition ended, or closed by an operator.
        Closed = "closed",
    }
}

impl HealthIssueKind {
    /// The kinds the control plane's status job raises and auto-closes from sensor facts;
    /// the others are raised by the code that observes them (rotation, updater, TI).
    pub const FROM_FACTS: &'static [HealthIssueKind] = &[
        HealthIssueKind::Disconnected,
        HealthIssueKind::ServiceStopped,
        HealthIssueKind::StartFailed,
        HealthIssueKind::NotConfigured,
        HealthIssueKind::UpdateFailed,
        HealthIssueKind::Outdated,
    ];

    /// How bad it is: high when the sensor does not protect its host at all.
    pub fn severity(self) -> Severity {
        use HealthIssueKind::*;
        match self {
            Disconnected | ServiceStopped | StartFailed => Severity::High,
            NotConfigured | UpdateFailed | CertExpiring | WatchdogRestart => Severity::Medium,
            Outdated | TiStale => Severity::Low,
        }
    }

    /// The one-line title an operator sees.
    pub fn title(self) -> &'static str {
        use HealthIssueKind::*;
        match self {
            Disconnected => "Sensor disconnected",
            ServiceStopped => "Sensor service stopped",
            StartFailed => "Sensor failed to start",
            NotConfigured => "Sensor not configured",
            UpdateFailed => "Sensor update failed",
            Outdated => "Sensor version outdated",
            CertExpiring => "Sensor certificate expiring",
            WatchdogRestart => "Sensor restarted by the resource watchdog",
            TiStale => "Threat-intelligence package stale",
        }
    }

    /// What an operator can do about it.
    pub fn recommendation(self) -> &'static str {
        use HealthIssueKind::*;
        match self {
            Disconnected => {
                "Check that the host is up, that the picket-sensor service runs on it, and that it can reach the \
                 control plane's sensor listener (TCP port of --sensor-listen, TLS not intercepted by a proxy). \
                 If the host was retired, decommission the sensor."
            }
            ServiceStopped => {
                "Start the sensor service on the host (or let picket-updater restart it) and check the host's \
                 service log for why it stopped; a disabled service must be re-enabled first."
            }
            StartFailed => {
                "The service runs but never fetched its configuration: check the sensor's log \
                 (picket-sensor status shows the last error), its clock, and that GET /sensor/v1/config is \
                 reachable; restart the service after fixing it."
            }
            NotConfigured => {
                "Give the sensor its capture/monitor setting (Manage sensor in the portal, or PATCH \
                 /api/v1/sensors/{id} with config.capture); it picks the setting up on its next heartbeat."
            }
            UpdateFailed => {
                "The sensor rolled back to its previous version. Check the updater's log on the host for the \
                 reason (signature, crash on start, no clearance in time), fix it, and resume the rollout."
            }
            Outdated => {
                "Update the sensor: check that it is not excluded from the rollout, that its updater runs, and \
                 that the current release was published."
            }
            CertExpiring => {
                "Check that picket-updater runs on the host (it rotates the certificate 30 days before expiry) \
                 or run picket-sensor rotate-cert; an expired certificate disconnects the sensor."
            }
            WatchdogRestart => {
                "The sensor used more than its share of the host's memory or CPU. Check the host's load and the \
                 sensor's event volume, and give the host more resources if this repeats."
            }
            TiStale => {
                "Check the sensor's auto TI updates setting and its connection, or import the current TI package \
                 on the host with picket-sensor ti import."
            }
        }
    }

    /// Whether an operator's close keeps it closed while its condition persists (kinds whose
    /// condition the status job watches: those raised from facts, and `ti_stale`, which the
    /// job raises and closes from the published TI packages); other kinds are events.
    pub fn muted_by_operator_close(self) -> bool {
        HealthIssueKind::FROM_FACTS.contains(&self) || self == HealthIssueKind::TiStale
    }

    /// The sensor status this kind mirrors, if it is one of the status rules.
    pub fn mirrored_status(self) -> Option<SensorStatus> {
        use HealthIssueKind::*;
        match self {
            Disconnected => Some(SensorStatus::Disconnected),
            StartFailed => Some(SensorStatus::StartFailed),
            NotConfigured => Some(SensorStatus::NotConfigured),
            UpdateFailed => Some(SensorStatus::UpdateFailed),
            Outdated => Some(SensorStatus::Outdated),
            ServiceStopped | CertExpiring | WatchdogRestart | TiStale => None,
        }
    }
}

/// What the health conditions of one sensor depend on: its status facts plus what it reports
/// about its service and what its type needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthFacts {
    /// The facts `sensor_status` is derived from.
    pub status: StatusFacts,
    /// The service status it last reported.
    pub service_status: ServiceStatus,
    /// Its type (names the missing setting in `not_configured`).
    pub sensor_type: SensorType,
}

/// Whether its service is reported as not running on purpose or by accident.
pub fn service_stopped(s: ServiceStatus) -> bool {
    matches!(s, ServiceStatus::Stopped | ServiceStatus::Disabled)
}

/// The kinds among `HealthIssueKind::FROM_FACTS` whose condition holds for `f` at `ctx`.
pub fn conditions(f: &HealthFacts, ctx: &StatusContext) -> Vec<HealthIssueKind> {
    HealthIssueKind::FROM_FACTS.iter().copied().filter(|k| condition_holds(*k, f, ctx)).collect()
}

/// Whether the condition of `kind` holds; always false for kinds not raised from facts.
pub fn condition_holds(kind: HealthIssueKind, f: &HealthFacts, ctx: &StatusContext) -> bool {
    use HealthIssueKind::*;
    let status = derive_sensor_status(&f.status, ctx);
    match status {
        SensorStatus::NotApplicable | SensorStatus::PendingActivation | SensorStatus::Unreachable => {
            return false;
        }
        SensorStatus::Disconnected => return kind == Disconnected,
        _ => {}
    }
    let s = &f.status;
    match kind {
        Disconnected => false,
        ServiceStopped => service_stopped(f.service_status),
        // Earlier rules than start_failed are excluded above, so its rule alone is its status.
        StartFailed => status == SensorStatus::StartFailed,
        UpdateFailed => s.update_state == UpdateState::Failed,
        NotConfigured => !s.configured,
        Outdated => matches!((s.version, ctx.outdated_below), (Some(v), Some(b)) if v < b),
        CertExpiring | WatchdogRestart | TiStale => false,
    }
}

/// Whether the status job opens an issue of `kind` now: its condition holds, and the sensor
/// is not one the grace period after a restart shields. A sensor silent for
/// `disconnect_after` or more is `disconnected` once the control plane has listened that long;
/// until then it cannot tell, so it raises nothing for it (not `disconnected`, and not the kinds
/// a disconnected sensor cannot have, which would close again when the grace period ends).
pub fn should_open(kind: HealthIssueKind, f: &HealthFacts, ctx: &StatusContext) -> bool {
    let shielded = ctx.disconnect_cutoff().is_none()
        && derive_sensor_status(&f.status, &ctx.without_grace()) == SensorStatus::Disconnected;
    !shielded && condition_holds(kind, f, ctx)
}

/// Whether an open issue of `kind` has ended: its condition no longer holds. For
/// `disconnected` the grace period after a restart does not count (the control plane not
/// having listened for long yet says nothing of the sensor): the issue ends when the sensor
/// is heard from, or stops being one that can be disconnected; a restarted server neither
/// closes nor reopens it. Kinds not raised from facts are ended by the code that raised them.
pub fn condition_ended(kind: HealthIssueKind, f: &HealthFacts, ctx: &StatusContext) -> bool {
    if !HealthIssueKind::FROM_FACTS.contains(&kind) {
        return false;
    }
    let ctx = if kind == HealthIssueKind::Disconnected { ctx.without_grace() } else { *ctx };
    !condition_holds(kind, f, &ctx)
}

/// The text of an issue as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueText {
    /// The kind's title.
    pub title: String,
    /// What was observed, with instants and values.
    pub detail: String,
    /// What to do.
    pub recommendation: String,
}

/// The title, detail (naming what was observed at `ctx.now`) and recommendation of `kind`
/// for a sensor with facts `f`.
pub fn describe(kind: HealthIssueKind, f: &HealthFacts, ctx: &StatusContext) -> IssueText {
    use HealthIssueKind::*;
    let s = &f.status;
    let at = |t: Timestamp| format!("{} ({})", format_utc(t), ago(ctx.now.since(t)));
    let detail = match kind {
        Disconnected => {
            let last = s.last_seen_at.into_iter().chain(s.activated_at).max();
            match last {
                Some(t) => format!(
                    "No heartbeat since {}; a sensor is disconnected after {} of silence.",
                    at(t),
                    human(ctx.timings.disconnect_after)
                ),
                None => "Never heard from since activation.".to_string(),
            }
        }
        ServiceStopped => format!(
            "The sensor reports its service as {}{}.",
            f.service_status,
            s.service_started_at.map(|t| format!(" (last started {})", at(t))).unwrap_or_default()
        ),
        StartFailed => {
            let started = s.service_started_at.map(at).unwrap_or_else(|| "an unknown time".to_string());
            let pulled = s
                .last_config_pull_at
                .map(|t| format!("its last configuration pull was {}", at(t)))
                .unwrap_or_else(|| "it has never pulled its configuration".to_string());
            format!(
                "The service started {started} and has not pulled its configuration since ({pulled}); the limit is {}.",
                human(ctx.timings.start_failed_after)
            )
        }
        NotConfigured => {
            format!("Sensors of type {} need a capture/monitor setting and this one has none.", f.sensor_type)
        }
        UpdateFailed => format!(
            "The last update attempt failed; the sensor runs version {}.",
            s.version.map(|v| v.to_string()).unwrap_or_else(|| "unknown".to_string())
        ),
        Outdated => format!(
            "The sensor runs version {}, at least three releases behind (versions below {} are outdated).",
            s.version.map(|v| v.to_string()).unwrap_or_else(|| "unknown".to_string()),
            ctx.outdated_below.map(|v| v.to_string()).unwrap_or_else(|| "none".to_string())
        ),
        CertExpiring => "The sensor's client certificate expires soon.".to_string(),
        WatchdogRestart => "The updater's watchdog restarted the sensor service.".to_string(),
        TiStale => "The sensor's threat-intelligence package is behind the published one.".to_string(),
    };
    IssueText { title: kind.title().to_string(), detail, recommendation: kind.recommendation().to_string() }
}

/// "12 minutes ago", "3 seconds ago", "2 hours ago", "1 day ago".
pub fn ago(d: Duration) -> String {
    format!("{} ago", human(d))
}

/// A duration in its largest whole unit: "1 second", "12 minutes", "2 hours", "3 days".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 86_400 {
        (s / 86_400, "day")
    } else if s >= 3_600 {
        (s / 3_600, "hour")
    } else if s >= 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// RFC 3339 in UTC to the second (`2026-11-22T10:00:00Z`), without a date library.
pub fn format_utc(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::Mode;
    use crate::status::StatusTimings;
    use crate::version::Version;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    const NOW: Timestamp = Timestamp(1_795_341_600_000); // 2026-11-22T10:00:00Z

    fn ctx() -> StatusContext {
        StatusContext {
            now: NOW,
            timings: StatusTimings::default(),
            outdated_below: Some(Version::new(1, 2, 0).unwrap()),
            watching_since: Timestamp(0),
        }
    }

    fn healthy() -> HealthFacts {
        HealthFacts {
            status: StatusFacts {
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
                version: Some(Version::new(1, 3, 0).unwrap()),
            },
            service_status: ServiceStatus::Running,
            sensor_type: SensorType::DomainController,
        }
    }

    fn check(f: impl FnOnce(&mut HealthFacts), expected: &[HealthIssueKind]) {
        let mut facts = healthy();
        f(&mut facts);
        assert_eq!(conditions(&facts, &ctx()), expected, "{facts:?}");
    }

    #[test]
    fn each_condition_on_its_own() {
        use HealthIssueKind::*;
        check(|_| {}, &[]);
        check(|f| f.status.last_seen_at = Some(Timestamp(NOW.0 - 10 * MIN)), &[Disconnected]);
        check(|f| f.service_status = ServiceStatus::Stopped, &[ServiceStopped]);
        check(|f| f.service_status = ServiceStatus::Disabled, &[ServiceStopped]);
        check(|f| f.status.last_config_pull_at = None, &[StartFailed]);
        check(|f| f.status.configured = false, &[NotConfigured]);
        check(|f| f.status.update_state = UpdateState::Failed, &[UpdateFailed]);
        check(|f| f.status.version = Some(Version::new(1, 1, 9).unwrap()), &[Outdated]);
    }

    #[test]
    fn silent_sensors_raise_only_what_applies() {
        use HealthIssueKind::*;
        let everything = |f: &mut HealthFacts| {
            f.service_status = ServiceStatus::Stopped;
            f.status.last_config_pull_at = None;
            f.status.configured = false;
            f.status.update_state = UpdateState::Failed;
            f.status.version = Some(Version::new(1, 0, 0).unwrap());
        };
        check(everything, &[ServiceStopped, StartFailed, NotConfigured, UpdateFailed, Outdated]);
        // Disconnected: its other facts are stale, only the silence counts.
        check(
            |f| {
                everything(f);
                f.status.last_seen_at = Some(Timestamp(NOW.0 - 60 * MIN));
            },
            &[Disconnected],
        );
        for (what, change) in [
            ("locally managed", (|f: &mut HealthFacts| f.status.mode = Mode::LocallyManaged) as fn(&mut HealthFacts)),
            ("pending", |f| f.status.activated_at = None),
            ("unreachable", |f| f.status.decommissioned_at = Some(NOW)),
        ] {
            let mut facts = healthy();
            everything(&mut facts);
            facts.status.last_seen_at = Some(Timestamp(NOW.0 - 60 * MIN));
            change(&mut facts);
            assert_eq!(conditions(&facts, &ctx()), [], "{what} raises nothing");
        }
    }

    #[test]
    fn a_restarted_server_waits_a_full_period_before_disconnected() {
        let mut facts = healthy();
        facts.status.last_seen_at = Some(Timestamp(NOW.0 - 60 * MIN));
        let mut c = ctx();
        c.watching_since = Timestamp(NOW.0 - 9 * MIN);
        assert_eq!(conditions(&facts, &c), []);
        c.watching_since = Timestamp(NOW.0 - 10 * MIN);
        assert_eq!(conditions(&facts, &c), [HealthIssueKind::Disconnected]);
    }

    #[test]
    fn severities_titles_and_recommendations() {
        use HealthIssueKind::*;
        assert_eq!(Disconnected.severity(), Severity::High);
        assert_eq!(ServiceStopped.severity(), Severity::High);
        assert_eq!(StartFailed.severity(), Severity::High);
        assert_eq!(NotConfigured.severity(), Severity::Medium);
        assert_eq!(UpdateFailed.severity(), Severity::Medium);
        assert_eq!(Outdated.severity(), Severity::Low);
        for k in HealthIssueKind::ALL {
            assert!(!k.title().is_empty() && k.recommendation().len() > 40, "{k}");
            assert_eq!(k.as_str().parse::<HealthIssueKind>(), Ok(*k));
            if let Some(s) = k.mirrored_status() {
                assert_eq!(s.as_str(), k.as_str(), "a mirrored kind has its status's name");
            }
        }
        assert_eq!(HealthIssueKind::ALL.len(), 9);
    }

    #[test]
    fn details_name_what_was_observed() {
        let mut facts = healthy();
        facts.status.last_seen_at = Some(Timestamp(NOW.0 - 12 * MIN));
        let t = describe(HealthIssueKind::Disconnected, &facts, &ctx());
        assert_eq!(
            t.detail,
            "No heartbeat since 2026-11-22T09:48:00Z (12 minutes ago); a sensor is disconnected after 10 minutes of silence."
        );
        assert_eq!(t.title, "Sensor disconnected");
        facts.sensor_type = SensorType::Adfs;
        let t = describe(HealthIssueKind::NotConfigured, &facts, &ctx());
        assert_eq!(t.detail, "Sensors of type adfs need a capture/monitor setting and this one has none.");
        facts.service_status = ServiceStatus::Stopped;
        let t = describe(HealthIssueKind::ServiceStopped, &facts, &ctx());
        assert_eq!(
            t.detail,
            "The sensor reports its service as stopped (last started 2026-11-22T08:30:00Z (1 hour ago))."
        );
        facts.status.version = Some(Version::new(1, 0, 3).unwrap());
        let t = describe(HealthIssueKind::Outdated, &facts, &ctx());
        assert!(t.detail.contains("1.0.3") && t.detail.contains("below 1.2.0"), "{}", t.detail);
        let t = describe(HealthIssueKind::StartFailed, &facts, &ctx());
        assert!(t.detail.contains("2026-11-22T08:30:00Z") && t.detail.contains("30 minutes"), "{}", t.detail);
    }

    #[test]
    fn formats_utc_and_durations() {
        assert_eq!(format_utc(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(NOW), "2026-11-22T10:00:00Z");
        assert_eq!(format_utc(Timestamp(951_782_400_999)), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(Timestamp(-1_000)), "1969-12-31T23:59:59Z");
        assert_eq!(human(Duration::from_secs(1)), "1 second");
        assert_eq!(human(Duration::from_secs(59)), "59 seconds");
        assert_eq!(human(Duration::from_secs(12 * 60 + 5)), "12 minutes");
        assert_eq!(human(Duration::from_secs(3 * 86_400)), "3 days");
        assert_eq!(ago(Duration::from_secs(7_200)), "2 hours ago");
    }

    fn arb_ts() -> impl Strategy<Value = Option<Timestamp>> {
        proptest::option::of((0i64..200).prop_map(|m| Timestamp(NOW.0 - m * MIN / 2)))
    }

    prop_compose! {
        fn arb_facts()(
            local in any::<bool>(), activated in arb_ts(), decom in proptest::option::of(Just(NOW)), seen in arb_ts(),
            started in arb_ts(), pulled in arb_ts(), upd in 0usize..3, configured in any::<bool>(),
            desired in 0i64..3, applied in 0i64..3, ver in proptest::option::of(0u32..5),
            service in 0usize..5, ty in 0usize..4,
        ) -> HealthFacts {
            HealthFacts {
                status: StatusFacts {
                    mode: if local { Mode::LocallyManaged } else { Mode::CloudConnected },
                    activated_at: activated, decommissioned_at: decom, last_seen_at: seen,
                    service_started_at: started, last_config_pull_at: pulled,
                    update_state: UpdateState::ALL[upd], configured,
                    config_version_desired: desired, config_version_applied: applied,
                    version: ver.map(|m| Version::new(1, m, 0).unwrap()),
                },
                service_status: ServiceStatus::ALL[service],
                sensor_type: SensorType::ALL[ty],
            }
        }
    }

    proptest! {
        #[test]
        fn conditions_agree_with_the_derived_status(f in arb_facts(), since in 0i64..30) {
            let mut c = ctx();
            c.watching_since = Timestamp(NOW.0 - since * MIN);
            let status = derive_sensor_status(&f.status, &c);
            let kinds = conditions(&f, &c);
            // Nothing for sensors that cannot be asked; only `disconnected` for silent ones.
            match status {
                SensorStatus::NotApplicable | SensorStatus::PendingActivation | SensorStatus::Unreachable => {
                    prop_assert!(kinds.is_empty());
                }
                SensorStatus::Disconnected => prop_assert_eq!(&kinds, &vec![HealthIssueKind::Disconnected]),
                _ => prop_assert!(!kinds.contains(&HealthIssueKind::Disconnected)),
            }
            // The kind mirroring the derived status holds; a mirrored kind that holds has its
            // status's rule holding (its status is that one or an earlier one in precedence).
            for k in HealthIssueKind::FROM_FACTS {
                if let Some(s) = k.mirrored_status() {
                    if s == status {
                        prop_assert!(kinds.contains(k), "{} is {} but has no {} condition", "sensor", status, k);
                    }
                    if kinds.contains(k) {
                        prop_assert!(status.rank() <= s.rank(), "{} holds but status is {}", k, status);
                    }
                }
            }
            // start_failed is exactly its status; the independent rules of the others.
            prop_assert_eq!(kinds.contains(&HealthIssueKind::StartFailed), status == SensorStatus::StartFailed);
            let reachable = status.rank() > SensorStatus::Disconnected.rank();
            prop_assert_eq!(kinds.contains(&HealthIssueKind::ServiceStopped), reachable && service_stopped(f.service_status));
            prop_assert_eq!(kinds.contains(&HealthIssueKind::NotConfigured), reachable && !f.status.configured);
            prop_assert_eq!(
                kinds.contains(&HealthIssueKind::UpdateFailed),
                reachable && f.status.update_state == UpdateState::Failed
            );
            // Every condition has a detail.
            for k in &kinds {
                prop_assert!(!describe(*k, &f, &c).detail.is_empty());
            }
        }

        #[test]
        fn an_issue_ends_when_its_condition_does_except_disconnected_in_the_grace_period(
            f in arb_facts(), since in 0i64..30,
        ) {
            let mut c = ctx();
            c.watching_since = Timestamp(NOW.0 - since * MIN);
            for k in HealthIssueKind::ALL {
                let ended = condition_ended(*k, &f, &c);
                if !HealthIssueKind::FROM_FACTS.contains(k) {
                    prop_assert!(!ended, "{} is not ended by facts", k);
                } else if *k == HealthIssueKind::Disconnected {
                    // Judged as if the control plane had always listened.
                    prop_assert_eq!(ended, !condition_holds(*k, &f, &c.without_grace()));
                    // Out of the grace period that is the plain rule.
                    if c.disconnect_cutoff().is_some() {
                        prop_assert_eq!(ended, !condition_holds(*k, &f, &c));
                    }
                } else {
                    prop_assert_eq!(ended, !condition_holds(*k, &f, &c), "{}", k);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn nothing_opens_for_a_sensor_the_grace_period_shields(f in arb_facts(), since in 0i64..30) {
            let mut c = ctx();
            c.watching_since = Timestamp(NOW.0 - since * MIN);
            let shielded = c.disconnect_cutoff().is_none()
                && derive_sensor_status(&f.status, &c.without_grace()) == SensorStatus::Disconnected;
            for k in HealthIssueKind::ALL {
                let open = should_open(*k, &f, &c);
                prop_assert!(!open || condition_holds(*k, &f, &c), "{} opens only when its condition holds", k);
                if shielded {
                    prop_assert!(!open, "{} opened for a shielded sensor", k);
                } else {
                    prop_assert_eq!(open, condition_holds(*k, &f, &c), "{}", k);
                }
                // What opens in the grace period still holds once it ends (no open-then-close).
                if open {
                    prop_assert!(condition_holds(*k, &f, &c.without_grace()), "{} would close after the grace period", k);
                }
            }
        }
    }

    /// A silent sensor's open `disconnected` issue stays open through a restart's grace period
    /// and ends once it is heard from, grace or not.
    #[test]
    fn a_restart_neither_closes_nor_opens_disconnected() {
        let mut silent = healthy();
        silent.status.last_seen_at = Some(Timestamp(NOW.0 - 60 * MIN));
        let restarted = StatusContext { watching_since: Timestamp(NOW.0 - 2 * MIN), ..ctx() };
        let kind = HealthIssueKind::Disconnected;
        assert!(condition_holds(kind, &silent, &ctx()));
        assert!(!condition_holds(kind, &silent, &restarted), "no new issue in the grace period");
        assert!(!condition_ended(kind, &silent, &restarted), "nor is an open one closed");
        let mut back = silent;
        back.status.last_seen_at = Some(Timestamp(NOW.0 - MIN));
        assert!(condition_ended(kind, &back, &restarted));
        assert!(condition_ended(kind, &back, &ctx()));
    }
}
