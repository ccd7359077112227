//! What a sensor's name, domain, tags, site, zone and description may be. Each refusal says
//! what is wrong and what is accepted, because operators read these messages.

/// Longest sensor name: a DNS label, since the name identifies a host.
pub const MAX_NAME_LEN: usize = 63;
/// Most tags on one sensor.
pub const MAX_TAGS: usize = 32;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 64;
/// Longest site, zone or subscription name.
pub const MAX_LABEL_LEN: usize = 64;
/// Longest free-text description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// A refused field value, with a message fit for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field that was refused.
    pub field: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError { field, message: message.into() }
}

fn is_host_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A sensor name: host-name-like (letters, digits, hyphens; 1 to 63; no leading/trailing hyphen).
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(refuse("name", "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(refuse("name", format!("is {} characters; at most {MAX_NAME_LEN}", name.len())));
    }
    if !is_host_label(name) {
        return Err(refuse(
            "name",
            format!(
                "{name:?} is not host-name-like: use letters, digits and hyphens, not starting or ending with a hyphen (e.g. DC01-10-0-0-5)"
            ),
        ));
    }
    Ok(())
}

/// A domain: an FQDN of at least two dot-separated host labels, at most 253 characters.
/// The empty string means "no domain".
pub fn validate_domain(domain: &str) -> Result<(), ValidationError> {
    if domain.is_empty() {
        return Ok(());
    }
    let d = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = d.split('.').collect();
    if d.len() > 253
        || labels.len() < 2
        || !labels.iter().all(|l| is_host_label(l))
        || labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(refuse(
            "domain",
            format!("{domain:?} is not a fully qualified domain name (e.g. corp.example.com)"),
        ));
    }
    Ok(())
}

fn validate_label(field: &'static str, value: &str, allow_empty: bool) -> Result<(), ValidationError> {
    if value.is_empty() {
        return if allow_empty { Ok(()) } else { Err(refuse(field, "must not be empty")) };
    }
    if value.chars().count() > MAX_LABEL_LEN {
        return Err(refuse(field, format!("is longer than {MAX_LABEL_LEN} characters")));
    }
    if value.trim() != value || value.chars().any(|c| c.is_control()) {
        return Err(refuse(field, "must not start or end with spaces or contain control characters"));
    }
    Ok(())
}

/// A site name (free text, may be empty).
pub fn validate_site(site: &str) -> Result<(), ValidationError> {
    validate_label("site", site, true)
}

/// A zone name (free text, not empty).
pub fn validate_zone(zone: &str) -> Result<(), ValidationError> {
    validate_label("zone", zone, false)
}

/// A subscription name: a lower-case identifier, so it is safe in URLs and token scopes.
pub fn validate_subscription(name: &str) -> Result<(), ValidationError> {
    validate_label("subscription", name, false)?;
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(refuse("subscription", format!("{name:?}: use lower-case letters, digits, '-' and '_'")));
    }
    Ok(())
}

/// Tags: at most 32, each 1 to 64 characters, no commas (the CSV joins them with commas),
/// no control characters, no duplicates.
pub fn validate_tags(tags: &[String]) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(refuse("tags", format!("{} tags; at most {MAX_TAGS}", tags.len())));
    }
    for (i, t) in tags.iter().enumerate() {
        if t.is_empty() || t.chars().count() > MAX_TAG_LEN {
            return Err(refuse("tags", format!("tag {t:?} must be 1 to {MAX_TAG_LEN} characters")));
        }
        if t.contains(',') || t.trim() != t || t.chars().any(|c| c.is_control()) {
            return Err(refuse(
                "tags",
                format!("tag {t:?} must not contain commas, control characters or surrounding spaces"),
            ));
        }
        if tags[..i].contains(t) {
            return Err(refuse("tags", format!("tag {t:?} is given twice")));
        }
    }
    Ok(())
}

/// A description: free text up to 1024 characters, without control characters but newlines.
pub fn validate_description(text: &str) -> Result<(), ValidationError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(refuse("description", format!("is longer than {MAX_DESCRIPTION_LEN} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(refuse("description", "must not contain control characters other than newlines"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["DC01", "dc-01-10-0-0-5", "a", &"x".repeat(63)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-dc", "dc-", "dc 01", "dc_01", "dc.corp", "<script>", &"x".repeat(64), "dé"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(validate_name("").unwrap_err().to_string(), "name: must not be empty");
    }

    #[test]
    fn domains() {
        for ok in ["", "corp.example.com", "a.b", "corp.example.com.", "x-1.y2.org"] {
            assert!(validate_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "corp",
            ".corp.com",
            "corp..com",
            "-a.com",
            "a_b.com",
            "1.2.3.4",
            &format!("{}.com", "a".repeat(64)),
            &"a.".repeat(130),
        ] {
            assert!(validate_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_tags(&t(&["prod", "tier 1", "dc:east"])).is_ok());
        assert!(validate_tags(&t(&[])).is_ok());
        for bad in [t(&[""]), t(&["a,b"]), t(&[" a"]), t(&["a", "a"]), t(&[&"x".repeat(65)]), vec!["x".to_string(); 33]]
        {
            assert!(validate_tags(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_and_text() {
        assert!(validate_site("").is_ok());
        assert!(validate_zone("").is_err());
        assert!(validate_zone("Main office").is_ok());
        assert!(validate_zone(" x").is_err());
        assert!(validate_subscription("default").is_ok());
        assert!(validate_subscription("Prod").is_err());
        assert!(validate_description("line one\nline two").is_ok());
        assert!(validate_description("bell\u{7}").is_err());
        assert!(validate_description(&"x".repeat(1025)).is_err());
    }
}
