//! When to try a failed delivery again: capped exponential backoff with jitter, and when to
//! give up. Pure: the attempt count and a random number come in, a delay goes out.

use std::time::Duration;

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub first: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A notification older than this is given up after its next failure.
    pub give_up_after: Duration,
}

impl Default for Backoff {
    /// 5 s, doubling up to 1 h; give up after 3 days (a receiver down over a long weekend
    /// still gets everything).
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(3 * 86_400),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempts` (1 = the first), with "equal jitter":
    /// half the exponential delay plus a random part of the other half, so receivers coming
    /// back are not hit by every replica's retries at once. `random` is any `u64`.
    pub fn delay(&self, attempts: u32, random: u64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let base = self.first.saturating_mul(1u32 << exp).min(self.max);
        let half = base / 2;
        let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if half_ms == 0 { 0 } else { random % (half_ms + 1) };
        half + Duration::from_millis(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let b = Backoff::default();
        for (attempt, base) in [(1, 5), (2, 10), (3, 20), (4, 40), (10, 2560), (11, 3600), (12, 3600), (1000, 3600)] {
            let lo = b.delay(attempt, 0);
            let hi = b.delay(attempt, u64::MAX - 1);
            assert_eq!(lo, Duration::from_secs(base) / 2, "attempt {attempt}");
            assert!(hi <= Duration::from_secs(base) && hi >= lo, "attempt {attempt}: {hi:?}");
            for r in [1, 7, 123_456_789] {
                let d = b.delay(attempt, r);
                assert!(d >= lo && d <= Duration::from_secs(base), "attempt {attempt}, random {r}: {d:?}");
            }
        }
        assert_eq!(b.delay(0, 0), Duration::from_millis(2500), "0 attempts behaves as 1");
    }
}
