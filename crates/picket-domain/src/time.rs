//! Instants as milliseconds since the Unix epoch, so rules take time as a parameter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time in milliseconds since the Unix epoch (UTC); the domain never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the epoch, the form stored in every backend.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The instant `d` later, saturating instead of overflowing on absurd durations.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_ms(d)))
    }

    /// The instant `d` earlier, saturating instead of overflowing on absurd durations.
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_ms(d)))
    }

    /// How long after `earlier` this instant is (zero when it is not after it).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

/// A duration in whole milliseconds, clamped to the range of `i64`.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_never_goes_negative() {
        let t = Timestamp(1_000);
        assert_eq!(t.plus(Duration::from_secs(1)), Timestamp(2_000));
        assert_eq!(t.minus(Duration::from_secs(2)), Timestamp(-1_000));
        assert_eq!(Timestamp(500).since(t), Duration::ZERO);
        assert_eq!(Timestamp(i64::MAX).plus(Duration::from_secs(1)), Timestamp(i64::MAX));
        assert_eq!(Timestamp(3_500).since(t), Duration::from_millis(2_500));
    }
}
