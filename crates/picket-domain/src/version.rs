//! Release versions (`MAJOR.MINOR.PATCH`), their order, and how far behind a sensor is.

use std::fmt;
use std::str::FromStr;

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {0:?}: expected MAJOR.MINOR.PATCH with each part a number below 2097152, e.g. 1.4.2")]
pub struct VersionError(pub String);

/// A release version; ordered numerically part by part (1.10.0 > 1.9.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible features.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

/// Each part must fit in 21 bits so `key()` packs the version in one sortable integer.
const PART_LIMIT: u32 = 1 << 21;

impl Version {
    /// Makes a version; parts must be below 2^21.
    pub fn new(major: u32, minor: u32, patch: u32) -> Result<Version, VersionError> {
        if major >= PART_LIMIT || minor >= PART_LIMIT || patch >= PART_LIMIT {
            return Err(VersionError(format!("{major}.{minor}.{patch}")));
        }
        Ok(Version { major, minor, patch })
    }

    /// One integer with the same order as the version, so databases can index and compare it.
    pub fn key(self) -> i64 {
        ((self.major as i64) << 42) | ((self.minor as i64) << 21) | self.patch as i64
    }

    /// The inverse of `key`.
    pub fn from_key(key: i64) -> Version {
        let mask = (PART_LIMIT - 1) as i64;
        Version { major: ((key >> 42) & mask) as u32, minor: ((key >> 21) & mask) as u32, patch: (key & mask) as u32 }
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError(s.to_string());
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, VersionError> {
            let p = parts.next().ok_or_else(err)?;
            if p.is_empty()
                || p.len() > 7
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(err());
        }
        Version::new(major, minor, patch).map_err(|_| err())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How many releases behind the current one a sensor must be to count as `outdated`.
pub const OUTDATED_AFTER_RELEASES: usize = 3;

/// How many published releases are newer than `running`.
pub fn releases_behind(running: Version, releases: &[Version]) -> usize {
    releases.iter().filter(|r| **r > running).count()
}

/// The lowest version that is not outdated: a sensor below it is at least
/// `OUTDATED_AFTER_RELEASES` behind. `None` while fewer releases exist than that.
pub fn outdated_below(releases: &[Version]) -> Option<Version> {
    let mut sorted: Vec<Version> = releases.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    sorted.get(OUTDATED_AFTER_RELEASES - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(v("1.10.0"), Version { major: 1, minor: 10, patch: 0 });
        for bad in
            ["", "1", "1.2", "1.2.3.4", "v1.2.3", "1.2.x", "01.2.3", "1.-2.3", "1.2.3-rc1", "9999999.0.0", " 1.2.3"]
        {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_numerically_not_lexically() {
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert!(v("1.2.10").key() > v("1.2.9").key());
    }

    #[test]
    fn exactly_three_releases_behind_is_outdated() {
        let rel = [v("1.0.0"), v("1.1.0"), v("1.2.0"), v("1.3.0")];
        assert_eq!(releases_behind(v("1.0.0"), &rel), 3);
        assert_eq!(releases_behind(v("1.1.0"), &rel), 2);
        let below = outdated_below(&rel).unwrap();
        assert_eq!(below, v("1.1.0"));
        assert!(v("1.0.0") < below);
        assert!(v("1.1.0") >= below);
        assert_eq!(outdated_below(&rel[..2]), None);
        // A sensor on a version that was never published still counts newer releases.
        assert_eq!(releases_behind(v("0.9.0"), &rel[..3]), 3);
    }

    proptest! {
        #[test]
        fn key_preserves_order(a in (0u32..2000, 0u32..2000, 0u32..2000), b in (0u32..2000, 0u32..2000, 0u32..2000)) {
            let a = Version::new(a.0, a.1, a.2).unwrap();
            let b = Version::new(b.0, b.1, b.2).unwrap();
            prop_assert_eq!(a.cmp(&b), a.key().cmp(&b.key()));
            prop_assert_eq!(Version::from_key(a.key()), a);
            prop_assert_eq!(a.to_string().parse::<Version>().unwrap(), a);
        }

        #[test]
        fn outdated_below_agrees_with_counting(rels in proptest::collection::vec((0u32..4, 0u32..4, 0u32..4), 0..10), run in (0u32..4, 0u32..4, 0u32..4)) {
            let rels: Vec<Version> = rels.into_iter().map(|(a, b, c)| Version::new(a, b, c).unwrap()).collect();
            let mut distinct = rels.clone();
            distinct.sort();
            distinct.dedup();
            let run = Version::new(run.0, run.1, run.2).unwrap();
            let by_count = releases_behind(run, &distinct) >= OUTDATED_AFTER_RELEASES;
            let by_threshold = outdated_below(&rels).is_some_and(|t| run < t);
            prop_assert_eq!(by_count, by_threshold);
        }
    }
}
