//! The sans-IO heart of `picket-sensor run`: given what happened (a heartbeat answered, a
//! configuration pulled, a call failed) it decides what to send next and how long to wait.
//! It reads no clock and draws no random numbers itself: the shell passes a uniform `r` in
//! `[0, 1)`, so every schedule is reproducible in tests.

use std::time::Duration;

use picket_proto::sensor::{HeartbeatResponse, SensorConfigResponse};

/// How long the first retry waits; each further failure doubles it up to the cap.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default cap of the retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Heartbeats are spread by ±10% so a fleet restarted together does not beat in lockstep.
pub const JITTER: f64 = 0.10;

/// Default of `--cert-rotate-before`: rotate when the certificate expires within 30 days.
pub const DEFAULT_ROTATE_BEFORE: Duration = Duration::from_secs(30 * 86400);
/// After a failed automatic rotation, wait this long before the next attempt (heartbeats go on
/// with the old certificate meanwhile).
pub const ROTATION_RETRY: Duration = Duration::from_secs(60);

/// Whether `run` should rotate now: the certificate (valid until `not_after`) expires within
/// `before` of `now`, and the last failed attempt (if any) is `ROTATION_RETRY` old.
pub fn rotation_due(
    not_after: picket_domain::Timestamp,
    now: picket_domain::Timestamp,
    before: Duration,
    last_failure: Option<picket_domain::Timestamp>,
) -> bool {
    let due = not_after.0.saturating_sub(now.0) < i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
    let retry_ok = last_failure.is_none_or(|t| now.0.saturating_sub(t.0) >= ROTATION_RETRY.as_millis() as i64);
    due && retry_ok
}

/// The next call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /sensor/v1/heartbeat`.
    Heartbeat,
    /// `GET /sensor/v1/config`.
    PullConfig,
}

/// Timings of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Time between heartbeats (`--heartbeat-interval`, 30 s).
    pub interval: Duration,
    /// Largest delay between retries.
    pub max_backoff: Duration,
}

/// The loop's state: what the control plane wants, what runs, how many calls failed in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Core {
    timings: Timings,
    /// Configuration version in effect.
    pub config_applied: i64,
    /// Configuration version the control plane last asked for.
    pub config_desired: i64,
    /// Failed calls in a row (0 after a success).
    pub failures: u32,
    /// A call should follow at once (after applying a configuration, report it).
    urgent: bool,
}

impl Core {
    /// A loop that starts with a heartbeat at once, `config_applied` in effect.
    pub fn new(timings: Timings, config_applied: i64) -> Core {
        Core { timings, config_applied, config_desired: config_applied, failures: 0, urgent: true }
    }

    /// What to send now: the configuration when the control plane wants a newer one.
    pub fn next_action(&self) -> Action {
        if self.config_desired > self.config_applied { Action::PullConfig } else { Action::Heartbeat }
    }

    /// A heartbeat was answered.
    pub fn on_heartbeat(&mut self, answer: &HeartbeatResponse) {
        self.failures = 0;
        self.config_desired = answer.config_version_desired;
        self.urgent = self.config_desired > self.config_applied;
    }

    /// A configuration was pulled and applied: report it in a heartbeat at once.
    pub fn on_config(&mut self, config: &SensorConfigResponse) {
        self.failures = 0;
        self.config_applied = config.config_version;
        self.config_desired = self.config_desired.max(config.config_version);
        self.urgent = true;
    }

    /// A call was refused because the identity changed under it (a rotation by another
    /// process): repeat it at once with the new identity, not counted as a failure.
    pub fn on_identity_changed(&mut self) {
        self.urgent = true;
    }

    /// A call failed (network, TLS, refused, server error).
    pub fn on_error(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.urgent = false;
    }

    /// How long to wait before the next call, `r` uniform in `[0, 1)`. After a success: the
    /// interval ±10%, or nothing when a call is urgent. After failures: exponential backoff
    /// from 1 s, capped, with "equal jitter" (half fixed, half random) so retries spread out.
    pub fn delay(&mut self, r: f64) -> Duration {
        let r = if r.is_finite() { r.clamp(0.0, 1.0) } else { 0.5 };
        if self.failures > 0 {
            let exp = self.failures.saturating_sub(1).min(20);
            let raw = BACKOFF_BASE.saturating_mul(1u32 << exp).min(self.timings.max_backoff);
            return raw.mul_f64(0.5 + 0.5 * r);
        }
        if std::mem::take(&mut self.urgent) {
            return Duration::ZERO;
        }
        self.timings.interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::Timestamp;
    use picket_proto::SensorConfig;

    #[test]
    fn rotation_is_due_inside_the_window_and_retried_after_a_pause() {
        let now = Timestamp(1_800_000_000_000);
        let day = 86_400_000;
        let before = DEFAULT_ROTATE_BEFORE;
        assert!(!rotation_due(Timestamp(now.0 + 31 * day), now, before, None));
        assert!(!rotation_due(Timestamp(now.0 + 30 * day), now, before, None), "exactly 30 days left: not yet");
        assert!(rotation_due(Timestamp(now.0 + 30 * day - 1), now, before, None));
        assert!(rotation_due(Timestamp(now.0 - day), now, before, None), "expired: rotate (and fail loudly)");
        let soon = Timestamp(now.0 + day);
        assert!(!rotation_due(soon, now, before, Some(Timestamp(now.0 - 1000))), "failed a second ago");
        assert!(rotation_due(soon, now, before, Some(Timestamp(now.0 - ROTATION_RETRY.as_millis() as i64))));
    }

    fn timings() -> Timings {
        Timings { interval: Duration::from_secs(30), max_backoff: Duration::from_secs(60) }
    }

    fn answer(desired: i64) -> HeartbeatResponse {
        HeartbeatResponse {
            sensor_id: "s".into(),
            sensor_name: "S".into(),
            config_version_desired: desired,
            desired_version: None,
            server_time: Timestamp(0),
            update: None,
            ti: None,
        }
    }

    fn config(v: i64) -> SensorConfigResponse {
        SensorConfigResponse { sensor_id: "s".into(), config_version: v, config: SensorConfig::default() }
    }

    #[test]
    fn starts_at_once_then_pulls_a_newer_config_and_reports_it() {
        let mut c = Core::new(timings(), 0);
        assert_eq!((c.next_action(), c.delay(0.3)), (Action::Heartbeat, Duration::ZERO));
        c.on_heartbeat(&answer(1));
        assert_eq!((c.next_action(), c.delay(0.3)), (Action::PullConfig, Duration::ZERO));
        c.on_config(&config(1));
        assert_eq!((c.next_action(), c.delay(0.3)), (Action::Heartbeat, Duration::ZERO));
        c.on_heartbeat(&answer(1));
        assert_eq!(c.next_action(), Action::Heartbeat);
        let d = c.delay(0.5);
        assert_eq!(d, Duration::from_secs(30));
    }

    #[test]
    fn heartbeats_are_jittered_within_ten_percent() {
        let mut c = Core::new(timings(), 1);
        c.on_heartbeat(&answer(1));
        let _ = c.delay(0.0);
        assert_eq!(c.delay(0.0), Duration::from_secs(27));
        assert_eq!(c.delay(1.0), Duration::from_secs(33));
        assert_eq!(c.delay(f64::NAN), Duration::from_secs(30));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap_and_reset_on_success() {
        let mut c = Core::new(timings(), 1);
        let mut upper = Vec::new();
        for _ in 0..10 {
            c.on_error();
            upper.push(c.delay(1.0).as_secs());
        }
        assert_eq!(upper, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        c.on_error();
        assert_eq!(c.delay(0.0), Duration::from_secs(30), "equal jitter: at least half the delay");
        c.on_heartbeat(&answer(1));
        assert_eq!(c.failures, 0);
        assert!(c.delay(0.5) >= Duration::from_secs(27));
        for _ in 0..1000 {
            c.on_error();
        }
        assert_eq!(c.delay(1.0), Duration::from_secs(60), "no overflow after many failures");
    }
}
