//! Threat-intelligence rules of the control plane: which sensors a heartbeat answer offers the
//! current TI package to, and when a sensor's TI is stale (the `ti_stale` health issue). TI
//! versions are integers above 0; a sensor that never reported one counts as running 0.
//! The store expresses `stale` in SQL (`picket_store::ti_packages::sql::condition_sql`), with
//! the sensor-status exclusions of every health issue on top.

use std::time::Duration;

use crate::sensor::Mode;
use crate::time::Timestamp;

/// Whether a heartbeat answer offers the current TI version `current` to a sensor: only a
/// cloud-connected one with `auto_ti_updates` that reports a lower version (locally managed
/// sensors and the others import packages by hand).
pub fn offer_due(mode: Mode, auto_ti_updates: bool, reported: Option<i64>, current: i64) -> bool {
    mode == Mode::CloudConnected && auto_ti_updates && reported.unwrap_or(0) < current
}

/// The bar of `ti_stale` at `now`: the highest version among `published` (version, publish
/// time) published at least `stale_after` before `now`; `None` when none is that old.
pub fn stale_below(
    published: impl IntoIterator<Item = (i64, Timestamp)>,
    now: Timestamp,
    stale_after: Duration,
) -> Option<i64> {
    let cutoff = now.minus(stale_after);
    published.into_iter().filter(|(_, at)| *at <= cutoff).map(|(v, _)| v).max()
}

/// Whether a sensor reporting `reported` is stale against the bar `stale_below`.
pub fn stale(reported: Option<i64>, stale_below: Option<i64>) -> bool {
    matches!(stale_below, Some(bar) if reported.unwrap_or(0) < bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn offers_go_to_auto_updating_cloud_sensors_behind_only() {
        for mode in [Mode::CloudConnected, Mode::LocallyManaged] {
            for auto in [false, true] {
                for (reported, current, behind) in
                    [(None, 1, true), (Some(0), 1, true), (Some(1), 2, true), (Some(2), 2, false), (Some(3), 2, false)]
                {
                    let want = mode == Mode::CloudConnected && auto && behind;
                    assert_eq!(
                        offer_due(mode, auto, reported, current),
                        want,
                        "{mode:?} {auto} {reported:?} {current}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_bar_is_the_newest_package_old_enough() {
        let t = |h: i64| Timestamp(h * 3_600_000);
        let published = [(1, t(0)), (2, t(10)), (3, t(20))];
        assert_eq!(stale_below(published, t(0), H), None, "nothing an hour old yet");
        assert_eq!(stale_below(published, t(1), H), Some(1), "exactly stale_after old counts");
        assert_eq!(stale_below(published, t(15), H), Some(2));
        assert_eq!(stale_below(published, t(100), H), Some(3));
        assert_eq!(stale_below([], t(100), H), None);
        assert!(stale(None, Some(1)) && stale(Some(1), Some(2)));
        assert!(!stale(Some(2), Some(2)) && !stale(Some(5), Some(2)) && !stale(None, None));
    }

    proptest! {
        /// Later instants never lower the bar, and a sensor at or above every published
        /// version is never stale.
        #[test]
        fn the_bar_only_rises_and_the_newest_is_never_stale(
            published in proptest::collection::vec((1i64..100, 0i64..1_000_000), 0..20),
            now in 0i64..2_000_000,
            later in 0i64..1_000_000,
            after in 0u64..1000,
        ) {
            let published: Vec<(i64, Timestamp)> = published.into_iter().map(|(v, t)| (v, Timestamp(t))).collect();
            let after = Duration::from_millis(after);
            let a = stale_below(published.clone(), Timestamp(now), after);
            let b = stale_below(published.clone(), Timestamp(now + later), after);
            prop_assert!(a <= b);
            let newest = published.iter().map(|(v, _)| *v).max();
            prop_assert!(!stale(newest, b));
            if let Some(bar) = b {
                prop_assert!(published.iter().any(|(v, _)| *v == bar));
            }
        }
    }
}
