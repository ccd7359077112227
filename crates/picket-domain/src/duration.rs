//! Human durations (`90s`, `10m`, `72h`, `30d`) for settings such as `PICKET_DISCONNECT_AFTER`.

use std::time::Duration;

/// Why a duration setting could not be read; the message tells the operator the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: expected a whole number and a unit, e.g. 500ms, 90s, 10m, 72h or 30d")]
pub struct DurationError {
    /// What the operator wrote.
    pub input: String,
}

/// Parses `500ms`, `90s`, `10m`, `72h`, `30d` (one number, one unit, no sign).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError { input: input.to_string() };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let n: u64 = num.parse().map_err(|_| err())?;
    let ms_per: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    n.checked_mul(ms_per).map(Duration::from_millis).ok_or_else(err)
}

/// Formats a duration in the largest unit that divides it, the inverse of `parse_duration`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<u64>) {
        assert_eq!(parse_duration(input).ok().map(|d| d.as_millis() as u64), expected, "{input}");
    }

    #[test]
    fn parses_the_documented_forms() {
        check("500ms", Some(500));
        check("90s", Some(90_000));
        check("10m", Some(600_000));
        check("72h", Some(259_200_000));
        check("30d", Some(2_592_000_000));
        check(" 1s ", Some(1_000));
        check("0s", Some(0));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "s", "10", "-1s", "1.5h", "10 m", "10w", "1h30m", "99999999999999999999d"] {
            check(bad, None);
        }
        assert!(parse_duration("x").unwrap_err().to_string().contains("e.g. 500ms"));
    }

    #[test]
    fn format_round_trips() {
        for s in ["500ms", "90s", "10m", "72h", "30d", "0ms"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }
}
