//! What the control plane accepts in a detection alert a sensor uploads (DESIGN.md "An alert:
//! id, sensor_id, time, indicator (type and value), severity, excerpt"): the alert id's shape,
//! the indicator types, the caps on each text field, and cutting an excerpt on a char boundary.
//! Messages name the field and what is accepted; the caller prefixes the alert's position.

/// The indicator types of the indicators file.
pub const INDICATOR_TYPES: &[&str] = &["ip", "cidr", "domain", "sha256", "pattern"];
/// Longest alert id (the sensor makes 32 hex digits).
pub const MAX_ALERT_ID_BYTES: usize = 64;
/// Longest indicator value (a pattern is the longest kind).
pub const MAX_INDICATOR_VALUE_BYTES: usize = 4096;
/// Longest indicator description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Checks an alert id: 1 to 64 characters of `A-Z a-z 0-9 - _ .` (it becomes part of URLs,
/// CEF fields and log lines, so nothing else).
pub fn check_alert_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ALERT_ID_BYTES {
        return Err(format!("id: must be 1 to {MAX_ALERT_ID_BYTES} characters, got {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("id: {c:?} is not allowed; use letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// Checks an indicator's type and value.
pub fn check_indicator(kind: &str, value: &str) -> Result<(), String> {
    if !INDICATOR_TYPES.contains(&kind) {
        return Err(format!("indicator.type: unknown value {kind:?}; expected one of: {}", INDICATOR_TYPES.join(", ")));
    }
    if value.trim().is_empty() {
        return Err("indicator.value: must not be empty".to_string());
    }
    if value.len() > MAX_INDICATOR_VALUE_BYTES {
        return Err(format!("indicator.value: longer than {MAX_INDICATOR_VALUE_BYTES} bytes ({})", value.len()));
    }
    Ok(())
}

/// Checks an optional description.
pub fn check_description(d: Option<&str>) -> Result<(), String> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION_BYTES => {
            Err(format!("description: longer than {MAX_DESCRIPTION_BYTES} bytes ({})", d.len()))
        }
        _ => Ok(()),
    }
}

/// Checks an optional TI version (TI versions are integers from 0 up).
pub fn check_ti_version(v: Option<i64>) -> Result<(), String> {
    match v {
        Some(v) if v < 0 => Err(format!("ti_version: must be 0 or more, got {v}")),
        _ => Ok(()),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn cut_excerpt(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids() {
        assert!(check_alert_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_alert_id("a-b_c.d").is_ok());
        assert!(check_alert_id(&"a".repeat(64)).is_ok());
        assert!(check_alert_id("").unwrap_err().contains("1 to 64"));
        assert!(check_alert_id(&"a".repeat(65)).unwrap_err().contains("1 to 64"));
        assert!(check_alert_id("a b").unwrap_err().contains("' '"));
        assert!(check_alert_id("a/b").is_err());
        assert!(check_alert_id("é").is_err());
    }

    #[test]
    fn indicators_descriptions_versions() {
        for t in INDICATOR_TYPES {
            assert!(check_indicator(t, "x").is_ok());
        }
        let e = check_indicator("url", "x").unwrap_err();
        assert!(e.starts_with("indicator.type") && e.contains("ip, cidr, domain, sha256, pattern"), "{e}");
        assert!(check_indicator("ip", " ").unwrap_err().contains("empty"));
        assert!(check_indicator("pattern", &"a".repeat(4097)).is_err());
        assert!(check_indicator("pattern", &"a".repeat(4096)).is_ok());
        assert!(check_description(None).is_ok());
        assert!(check_description(Some(&"d".repeat(1024))).is_ok());
        assert!(check_description(Some(&"d".repeat(1025))).is_err());
        assert!(check_ti_version(Some(0)).is_ok() && check_ti_version(None).is_ok());
        assert!(check_ti_version(Some(-1)).is_err());
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        assert_eq!(cut_excerpt("abc", 3), "abc");
        assert_eq!(cut_excerpt("abcd", 3), "abc");
        assert_eq!(cut_excerpt("aé", 2), "a", "é is two bytes");
        assert_eq!(cut_excerpt("€€", 4), "€", "€ is three bytes");
        assert_eq!(cut_excerpt("€", 0), "");
    }

    proptest! {
        #[test]
        fn cut_is_the_longest_valid_prefix(s in "\\PC{0,40}", max in 0usize..80) {
            let cut = cut_excerpt(&s, max);
            prop_assert!(cut.len() <= max);
            prop_assert!(s.starts_with(cut));
            // No longer prefix on a boundary fits.
            let next = s[cut.len()..].chars().next().map_or(usize::MAX, |c| cut.len() + c.len_utf8());
            prop_assert!(next > max || cut.len() == s.len());
        }
    }
}
