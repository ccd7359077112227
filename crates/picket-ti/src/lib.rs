//! `picket-ti`: the sensor's threat-intelligence detection engine. It owns the indicators file
//! format (parse and validate, with errors naming the indicator), the compiled [`Matcher`]
//! (IP addresses, CIDR ranges, domains with their subdomains, SHA-256 hashes, regular
//! expressions) and the matching of one JSON-lines event against it, plus bounded excerpts for
//! alerts.
//!
//! It must not do IO, read the clock, spawn threads or depend on tokio: callers (the sensor's
//! event sources, `picket-bench`) pass bytes in and build alerts from the [`Match`]es.

mod event;
mod indicators;
mod matcher;
mod prefilter;
mod scan;

pub use event::EventError;
pub use indicators::{
    Indicator, IndicatorError, IndicatorType, MAX_INDICATORS, MAX_VALUE_BYTES, Severity, parse_indicators,
};
pub use matcher::{Match, Matcher, MatcherError};

/// Default upper bound, in bytes, of an alert's event excerpt.
pub const DEFAULT_EXCERPT_BYTES: usize = 512;

/// The first at most `max_bytes` bytes of `line` (without its line ending), cut on a char
/// boundary, for an alert's `excerpt`.
pub fn excerpt(line: &str, max_bytes: usize) -> &str {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.len() <= max_bytes {
        return line;
    }
    let mut end = max_bytes;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod tests;
