//! Timestamps on the wire: RFC 3339 in UTC with millisecond precision.

use picket_domain::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats a timestamp as RFC 3339 UTC (`2026-11-22T07:46:47.123Z`).
pub fn format_ts(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.0.to_string())
}

/// Parses RFC 3339 into a timestamp; `None` when it is not valid.
pub fn parse_ts(s: &str) -> Option<Timestamp> {
    let d = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(d.unix_timestamp_nanos() / 1_000_000).ok().map(Timestamp)
}

/// Serde adapter for `Timestamp` fields as RFC 3339 strings.
pub mod rfc3339 {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes RFC 3339.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(*t))
    }

    /// Reads RFC 3339.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse_ts(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {s:?}")))
    }
}

/// Serde adapter for `Option<Timestamp>` fields as RFC 3339 strings or null.
pub mod rfc3339_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes RFC 3339 or null.
    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_ts(*t)),
            None => s.serialize_none(),
        }
    }

    /// Reads RFC 3339 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| parse_ts(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {s:?}"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Timestamp(1_795_333_607_123);
        let s = format_ts(t);
        assert_eq!(s, "2026-11-22T07:46:47.123Z");
        assert_eq!(parse_ts(&s), Some(t));
        assert_eq!(parse_ts("yesterday"), None);
    }
}
