//! Health severity and the sensor's overall `health_status`, derived from its open issues.

string_enum! {
    /// How bad a health issue is.
    Severity {
        /// Worth a look.
        Low = "low",
        /// Degrades protection.
        Medium = "medium",
        /// The sensor does not protect its host.
        High = "high",
    }
}

string_enum! {
    /// The worst open issue of a sensor; the portal paints it green/yellow/orange/red.
    HealthStatus {
        /// No open issue.
        Healthy = "healthy",
        /// Highest open issue is low.
        NotHealthyLow = "not_healthy_low",
        /// Highest open issue is medium.
        NotHealthyMedium = "not_healthy_medium",
        /// Highest open issue is high.
        NotHealthyHigh = "not_healthy_high",
    }
}

impl HealthStatus {
    /// The status for a highest open severity (`None` = no open issue).
    pub fn from_worst(worst: Option<Severity>) -> HealthStatus {
        match worst {
            None => HealthStatus::Healthy,
            Some(Severity::Low) => HealthStatus::NotHealthyLow,
            Some(Severity::Medium) => HealthStatus::NotHealthyMedium,
            Some(Severity::High) => HealthStatus::NotHealthyHigh,
        }
    }

    /// A number that orders statuses from healthy (0) to high (3), stored for sorting.
    pub fn rank(self) -> i64 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::NotHealthyLow => 1,
            HealthStatus::NotHealthyMedium => 2,
            HealthStatus::NotHealthyHigh => 3,
        }
    }

    /// The inverse of `rank`; out-of-range ranks read as the nearest bound.
    pub fn from_rank(rank: i64) -> HealthStatus {
        match rank {
            i64::MIN..=0 => HealthStatus::Healthy,
            1 => HealthStatus::NotHealthyLow,
            2 => HealthStatus::NotHealthyMedium,
            _ => HealthStatus::NotHealthyHigh,
        }
    }

    /// The colour the portal shows for it.
    pub fn colour(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "green",
            HealthStatus::NotHealthyLow => "yellow",
            HealthStatus::NotHealthyMedium => "orange",
            HealthStatus::NotHealthyHigh => "red",
        }
    }
}

/// The health status of a sensor whose open issues have these severities.
pub fn health_status(open: impl IntoIterator<Item = Severity>) -> HealthStatus {
    HealthStatus::from_worst(open.into_iter().max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_open_issue_is_healthy() {
        assert_eq!(health_status([]), HealthStatus::Healthy);
    }

    #[test]
    fn the_worst_issue_wins() {
        use Severity::*;
        assert_eq!(health_status([Low]), HealthStatus::NotHealthyLow);
        assert_eq!(health_status([Low, Medium, Low]), HealthStatus::NotHealthyMedium);
        assert_eq!(health_status([High, Low]), HealthStatus::NotHealthyHigh);
        assert_eq!(HealthStatus::NotHealthyHigh.colour(), "red");
    }

    proptest! {
        #[test]
        fn rank_round_trips_and_orders(sevs in proptest::collection::vec(0usize..3, 0..8)) {
            let sevs: Vec<Severity> = sevs.into_iter().map(|i| Severity::ALL[i]).collect();
            let h = health_status(sevs.iter().copied());
            prop_assert_eq!(HealthStatus::from_rank(h.rank()), h);
            for s in &sevs {
                prop_assert!(h.rank() >= HealthStatus::from_worst(Some(*s)).rank());
            }
        }
    }
}
