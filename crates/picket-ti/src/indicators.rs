//! The indicators file (`{"indicators": [{"type", "value", "severity", "description"}]}`):
//! parsing and validation, with errors that name the indicator's index and the problem.

use std::net::IpAddr;

use serde::Deserialize;

/// Most indicators one file may hold.
pub const MAX_INDICATORS: usize = 2_000_000;
/// Longest indicator value, in bytes (a pattern's source included).
pub const MAX_VALUE_BYTES: usize = 4096;

/// What an indicator matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndicatorType {
    /// One IPv4 or IPv6 address.
    Ip,
    /// An address range, `ADDR/PREFIX`.
    Cidr,
    /// A domain and all its subdomains.
    Domain,
    /// A SHA-256 hash (64 hex digits, any case).
    Sha256,
    /// A regular expression over the raw event line.
    Pattern,
}

impl IndicatorType {
    /// The name used in the indicators file and in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorType::Ip => "ip",
            IndicatorType::Cidr => "cidr",
            IndicatorType::Domain => "domain",
            IndicatorType::Sha256 => "sha256",
            IndicatorType::Pattern => "pattern",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ip" => IndicatorType::Ip,
            "cidr" => IndicatorType::Cidr,
            "domain" => IndicatorType::Domain,
            "sha256" => IndicatorType::Sha256,
            "pattern" => IndicatorType::Pattern,
            _ => return None,
        })
    }
}

/// How serious a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Severity {
    /// The name used in the indicators file and in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            _ => return None,
        })
    }
}

/// One validated indicator; `value` is normalized (lowercase domain and hash, masked CIDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// What it matches.
    pub kind: IndicatorType,
    /// The normalized value.
    pub value: String,
    /// Severity of an alert it raises.
    pub severity: Severity,
    /// Free text from the file (empty when absent).
    pub description: String,
}

/// Why an indicators file was refused.
#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    /// Not JSON of the expected shape.
    #[error("indicators file is not valid JSON of the form {{\"indicators\": [...]}}: {0}")]
    Json(#[from] serde_json::Error),
    /// More indicators than [`MAX_INDICATORS`].
    #[error("too many indicators: {0} (at most {MAX_INDICATORS})")]
    TooMany(usize),
    /// One indicator is invalid.
    #[error("indicator {index}: {problem}")]
    Invalid {
        /// Its position in the `indicators` array (from 0).
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
}

#[derive(Deserialize)]
struct RawFile {
    indicators: Vec<RawIndicator>,
}

#[derive(Deserialize)]
struct RawIndicator {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Parses and validates an indicators file; the first invalid indicator refuses the file.
pub fn parse_indicators(bytes: &[u8]) -> Result<Vec<Indicator>, IndicatorError> {
    let raw: RawFile = serde_json::from_slice(bytes)?;
    if raw.indicators.len() > MAX_INDICATORS {
        return Err(IndicatorError::TooMany(raw.indicators.len()));
    }
    raw.indicators
        .into_iter()
        .enumerate()
        .map(|(index, r)| validate(r).map_err(|problem| IndicatorError::Invalid { index, problem }))
        .collect()
}

fn validate(r: RawIndicator) -> Result<Indicator, String> {
    let kind_s = r.kind.ok_or("missing \"type\"")?;
    let kind = IndicatorType::parse(&kind_s)
        .ok_or_else(|| format!("unknown type {kind_s:?} (expected ip, cidr, domain, sha256 or pattern)"))?;
    let sev_s = r.severity.ok_or("missing \"severity\"")?;
    let severity =
        Severity::parse(&sev_s).ok_or_else(|| format!("unknown severity {sev_s:?} (expected low, medium or high)"))?;
    let value = r.value.ok_or("missing \"value\"")?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("value is {} bytes long (at most {MAX_VALUE_BYTES})", value.len()));
    }
    let value = normalize(kind, &value)?;
    Ok(Indicator { kind, value, severity, description: r.description.unwrap_or_default() })
}

/// Validates `value` as an indicator of type `kind` and returns its normalized form.
pub(crate) fn normalize(kind: IndicatorType, value: &str) -> Result<String, String> {
    match kind {
        IndicatorType::Ip => {
            let ip: IpAddr = value.trim().parse().map_err(|_| format!("{value:?} is not an IPv4 or IPv6 address"))?;
            Ok(canonical_ip(ip).to_string())
        }
        IndicatorType::Cidr => {
            let (ip, len) = parse_cidr(value)?;
            Ok(format!("{ip}/{len}"))
        }
        IndicatorType::Domain => normalize_domain(value),
        IndicatorType::Sha256 => {
            let v = value.trim();
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{value:?} is not a SHA-256 (64 hex digits)"));
            }
            Ok(v.to_ascii_lowercase())
        }
        IndicatorType::Pattern => {
            if value.is_empty() {
                return Err("empty pattern".into());
            }
            crate::matcher::pattern_builder(value)
                .build()
                .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?;
            Ok(value.to_owned())
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4, other addresses unchanged.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Parses `ADDR/PREFIX`, returning the network address (host bits cleared) and prefix length.
pub(crate) fn parse_cidr(value: &str) -> Result<(IpAddr, u8), String> {
    let v = value.trim();
    let (addr, len) = v.split_once('/').ok_or_else(|| format!("{value:?} is not ADDRESS/PREFIX"))?;
    let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?} in {value:?} is not an IPv4 or IPv6 address"))?;
    let len: u8 = len.parse().map_err(|_| format!("prefix {len:?} in {value:?} is not a number"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix /{len} in {value:?} is out of range (0 to {max} for this address family)"));
    }
    Ok(match ip {
        IpAddr::V4(a) => (IpAddr::V4(mask32(u32::from(a), len).into()), len),
        IpAddr::V6(a) => (IpAddr::V6(mask128(u128::from(a), len).into()), len),
    })
}

/// `a` with all but its first `len` bits cleared.
pub(crate) fn mask32(a: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { a & (u32::MAX << (32 - u32::from(len))) }
}

/// `a` with all but its first `len` bits cleared.
pub(crate) fn mask128(a: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { a & (u128::MAX << (128 - u32::from(len))) }
}

fn normalize_domain(value: &str) -> Result<String, String> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    if v.is_empty() {
        return Err("empty domain".into());
    }
    if v.starts_with("*.") {
        return Err(format!("{value:?}: write the domain without \"*.\" (a domain matches its subdomains already)"));
    }
    if v.len() > 253 {
        return Err(format!("domain {value:?} is longer than 253 bytes"));
    }
    if v.parse::<IpAddr>().is_ok() {
        return Err(format!("{value:?} is an IP address: use type \"ip\""));
    }
    for label in v.split('.') {
        if label.is_empty() {
            return Err(format!("domain {value:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("domain {value:?} has a label longer than 63 bytes"));
        }
        if !label.bytes().all(is_domain_byte) {
            return Err(format!("domain {value:?} has a character other than letters, digits, '-' and '_'"));
        }
    }
    Ok(v)
}

/// Bytes allowed in a domain label (lowercase already, `_` for service names).
pub(crate) fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}
