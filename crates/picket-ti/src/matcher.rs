//! The compiled [`Matcher`]: hash tables for addresses, CIDR networks (one table per prefix
//! length present, longest first), domains (every label suffix of a candidate is looked up) and
//! SHA-256 hashes, and one `RegexSet` for patterns over the raw event line, run only when the
//! patterns' literal prefilter ([`crate::prefilter`]) hits the line. Events are walked by the
//! fast scanner ([`crate::scan`]), falling back to the `serde_json` walk on anything it refuses.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};

use regex::{RegexBuilder, RegexSet, RegexSetBuilder};

use crate::event::{EventError, for_each_string};
use crate::indicators::{
    Indicator, IndicatorError, IndicatorType, Severity, canonical_ip, is_domain_byte, mask32, mask128, parse_cidr,
    parse_indicators,
};

/// Compiled size limit of one pattern (the `regex` crate's `size_limit`).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Compiled size limit of the set of all patterns.
const PATTERN_SET_SIZE_LIMIT: usize = 64 << 20;
/// Lazy-DFA cache limit of the pattern set.
const PATTERN_SET_DFA_LIMIT: usize = 16 << 20;

type Hasher = foldhash::fast::RandomState;

/// Why indicators could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The indicators file was refused.
    #[error(transparent)]
    Indicators(#[from] IndicatorError),
    /// An indicator built by hand has an invalid value.
    #[error("indicator {index}: {problem}")]
    Invalid {
        /// Its position (from 0).
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The patterns together exceed the compiled size limit.
    #[error("the patterns together are too large to compile: {0}")]
    Patterns(#[from] regex::Error),
}

/// One indicator that matched an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'m> {
    /// Position of the indicator in the file (from 0).
    pub index: usize,
    /// Its type.
    pub kind: IndicatorType,
    /// Its (normalized) value.
    pub value: &'m str,
    /// Its severity.
    pub severity: Severity,
}

/// Keys mapped to the indicators having them (a key may be listed more than once).
struct Table<K> {
    map: HashMap<K, (u32, u32), Hasher>,
    ids: Vec<u32>,
}

impl<K: Hash + Eq + Ord> Table<K> {
    fn build(mut entries: Vec<(K, u32)>) -> Self {
        entries.sort_unstable();
        let mut map = HashMap::with_capacity_and_hasher(entries.len(), Hasher::default());
        let mut ids = Vec::with_capacity(entries.len());
        let mut iter = entries.into_iter().peekable();
        while let Some((k, id)) = iter.next() {
            let start = ids.len() as u32;
            ids.push(id);
            while let Some((_, id)) = iter.next_if(|(k2, _)| *k2 == k) {
                ids.push(id);
            }
            map.insert(k, (start, ids.len() as u32 - start));
        }
        map.shrink_to_fit();
        Table { map, ids }
    }

    fn get<Q>(&self, k: &Q) -> &[u32]
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.map.get(k) {
            Some(&(start, len)) => &self.ids[start as usize..(start + len) as usize],
            None => &[],
        }
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Indicators compiled for matching; immutable, share it (`Arc`) between event sources and
/// swap it whole when a new TI package is imported.
pub struct Matcher {
    indicators: Vec<Indicator>,
    ip4: Table<u32>,
    ip6: Table<u128>,
    /// (prefix length, networks of that length), longest prefix first.
    cidr4: Vec<(u8, Table<u32>)>,
    /// How many tables of `cidr4` (its first ones) have a prefix of at least 16 bits.
    cidr4_long: usize,
    /// One bit per /16: whether some network of those `cidr4_long` tables lies inside it.
    cidr4_slash16: Box<[u64]>,
    cidr6: Vec<(u8, Table<u128>)>,
    domains: Table<Box<str>>,
    /// Whether some domain indicator has one label (then dotless strings are probed too).
    single_label_domains: bool,
    sha256: Table<[u8; 32]>,
    patterns: Option<RegexSet>,
    /// Literals one of which every pattern match starts with (`None`: run the set on every line).
    prefilter: Option<crate::prefilter::Prefilter>,
    /// Indicator index of each pattern of `patterns`.
    pattern_ids: Vec<u32>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher").field("indicators", &self.indicators.len()).finish_non_exhaustive()
    }
}

/// The regex builder used for each pattern, with the size limit.
pub(crate) fn pattern_builder(p: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(p);
    b.size_limit(PATTERN_SIZE_LIMIT);
    b
}

impl Matcher {
    /// Parses, validates and compiles an indicators file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MatcherError> {
        Self::new(parse_indicators(bytes)?)
    }

    /// Compiles validated indicators (as [`parse_indicators`] returns them).
    pub fn new(indicators: Vec<Indicator>) -> Result<Self, MatcherError> {
        let mut ip4 = Vec::new();
        let mut ip6 = Vec::new();
        let mut cidr4: Vec<Vec<(u32, u32)>> = vec![Vec::new(); 33];
        let mut cidr6: Vec<Vec<(u128, u32)>> = vec![Vec::new(); 129];
        let mut domains = Vec::new();
        let mut sha = Vec::new();
        let mut patterns = Vec::new();
        let mut pattern_ids = Vec::new();
        for (index, ind) in indicators.iter().enumerate() {
            let id = u32::try_from(index)
                .map_err(|_| MatcherError::Invalid { index, problem: "too many indicators".into() })?;
            let normalized = crate::indicators::normalize(ind.kind, &ind.value)
                .map_err(|problem| MatcherError::Invalid { index, problem })?;
            match ind.kind {
                IndicatorType::Ip => match normalized.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) => ip4.push((u32::from(a), id)),
                    Ok(IpAddr::V6(a)) => ip6.push((u128::from(a), id)),
                    Err(_) => {}
                },
                IndicatorType::Cidr => {
                    let (net, len) =
                        parse_cidr(&normalized).map_err(|problem| MatcherError::Invalid { index, problem })?;
                    match net {
                        IpAddr::V4(a) => cidr4[usize::from(len)].push((u32::from(a), id)),
                        IpAddr::V6(a) => cidr6[usize::from(len)].push((u128::from(a), id)),
                    }
                }
                IndicatorType::Domain => domains.push((Box::<str>::from(normalized), id)),
                IndicatorType::Sha256 => {
                    let mut h = [0u8; 32];
                    if let Some(h2) = hex32(normalized.as_bytes()) {
                        h = h2;
                    }
                    sha.push((h, id));
                }
                IndicatorType::Pattern => {
                    patterns.push(normalized);
                    pattern_ids.push(id);
                }
            }
        }
        let prefilter = if patterns.is_empty() { None } else { crate::prefilter::build(&patterns) };
        let patterns = if patterns.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&patterns)
                    .size_limit(PATTERN_SET_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_SET_DFA_LIMIT)
                    .build()?,
            )
        };
        let single_label_domains = domains.iter().any(|(d, _)| !d.contains('.'));
        let mut cidr4_slash16 = vec![0u64; 1 << 10].into_boxed_slice();
        for (net, _) in cidr4[16..].iter().flatten() {
            let i = (net >> 16) as usize;
            cidr4_slash16[i / 64] |= 1 << (i % 64);
        }
        let cidr4_long = cidr4[16..].iter().filter(|v| !v.is_empty()).count();
        Ok(Matcher {
            single_label_domains,
            indicators,
            ip4: Table::build(ip4),
            ip6: Table::build(ip6),
            cidr4: by_prefix(cidr4),
            cidr4_long,
            cidr4_slash16,
            cidr6: by_prefix(cidr6),
            domains: Table::build(domains),
            sha256: Table::build(sha),
            patterns,
            prefilter,
            pattern_ids,
        })
    }

    /// The compiled indicators, in file order.
    pub fn indicators(&self) -> &[Indicator] {
        &self.indicators
    }

    /// Matches one event (a JSON object, one JSON-lines line): every string value, nested ones
    /// too, is checked against addresses, networks, domains and hashes, and the raw line
    /// against the patterns. `out` is cleared, then receives each matching indicator once.
    /// A line that is not a JSON object is an error and leaves `out` empty.
    pub fn match_event<'m>(&'m self, line: &str, out: &mut Vec<Match<'m>>) -> Result<(), EventError> {
        out.clear();
        let mut scratch = String::new();
        if crate::scan::for_each_string(line, &mut scratch, &mut |s: &str| self.check_str(s, out)).is_err() {
            // Refused by the fast scanner: serde_json decides, and names the error.
            out.clear();
            let mut on_string = |s: &str| self.check_str(s, out);
            if let Err(e) = for_each_string(line, &mut on_string) {
                out.clear();
                return Err(e);
            }
        }
        self.match_patterns(line, out);
        Ok(())
    }

    /// Pushes the patterns matching `text`, running the set only if the prefilter hits.
    fn match_patterns<'m>(&'m self, text: &str, out: &mut Vec<Match<'m>>) {
        let Some(set) = &self.patterns else { return };
        if let Some(pre) = &self.prefilter
            && !pre.is_match(text)
        {
            return;
        }
        for i in set.matches(text).iter() {
            self.push(self.pattern_ids[i], out);
        }
    }

    /// Checks one string value (the work [`Matcher::match_event`] does for each string).
    pub fn match_str<'m>(&'m self, s: &str, out: &mut Vec<Match<'m>>) {
        self.check_str(s, out);
    }

    /// Matches free text (a syslog message): every token between whitespace and the
    /// punctuation that cannot be inside an address, domain, URL or hash (`"'<>()[]{},;=|` and
    /// the backquote) is checked like a string value (and again without a trailing `.`, `:` or
    /// `,`), and the whole text against the patterns. `out` is cleared, then receives each
    /// matching indicator once.
    pub fn match_text<'m>(&'m self, text: &str, out: &mut Vec<Match<'m>>) {
        out.clear();
        let split = |c: char| {
            c.is_whitespace()
                || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';' | '=' | '|' | '`')
        };
        for token in text.split(split).filter(|t| !t.is_empty()) {
            self.check_str(token, out);
            let trimmed = token.trim_end_matches(['.', ':', ',']);
            if !trimmed.is_empty() && trimmed.len() != token.len() {
                self.check_str(trimmed, out);
            }
        }
        self.match_patterns(text, out);
    }

    fn push<'m>(&'m self, id: u32, out: &mut Vec<Match<'m>>) {
        let index = id as usize;
        if out.iter().any(|m| m.index == index) {
            return;
        }
        if let Some(ind) = self.indicators.get(index) {
            out.push(Match { index, kind: ind.kind, value: &ind.value, severity: ind.severity });
        }
    }

    fn push_all<'m>(&'m self, ids: &[u32], out: &mut Vec<Match<'m>>) {
        for &id in ids {
            self.push(id, out);
        }
    }

    fn check_str<'m>(&'m self, s: &str, out: &mut Vec<Match<'m>>) {
        let b = s.as_bytes();
        let Some(&first) = b.first() else { return };
        if b.len() == 64
            && let Some(h) = hex32(b)
        {
            self.push_all(self.sha256.get(&h), out);
            return;
        }
        let (mut colon, mut dot, mut ip_bytes) = (false, false, true);
        for &c in b {
            colon |= c == b':';
            dot |= c == b'.';
            ip_bytes &= IP_BYTE[usize::from(c)];
        }
        if b.len() <= 64
            && ip_bytes
            && (first.is_ascii_digit() || first == b'[' || colon)
            && let Some(ip) = parse_ip(s)
        {
            self.check_ip(canonical_ip(ip), out);
            return;
        }
        if !self.domains.is_empty() && (self.single_label_domains || dot) {
            self.check_domain(url_host(s), out);
        }
    }

    fn check_ip<'m>(&'m self, ip: IpAddr, out: &mut Vec<Match<'m>>) {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.push_all(self.ip4.get(&a), out);
                let i = (a >> 16) as usize;
                let skip = if self.cidr4_slash16[i / 64] & (1 << (i % 64)) == 0 { self.cidr4_long } else { 0 };
                for (len, t) in &self.cidr4[skip..] {
                    self.push_all(t.get(&mask32(a, *len)), out);
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.push_all(self.ip6.get(&a), out);
                for (len, t) in &self.cidr6 {
                    self.push_all(t.get(&mask128(a, *len)), out);
                }
            }
        }
    }

    fn check_domain<'m>(&'m self, host: &str, out: &mut Vec<Match<'m>>) {
        let host = host.strip_suffix('.').unwrap_or(host);
        let hb = host.as_bytes();
        if hb.is_empty() || hb.len() > 253 {
            return;
        }
        let mut buf = [0u8; 253];
        for (dst, &c) in buf.iter_mut().zip(hb) {
            let c = c.to_ascii_lowercase();
            if !(is_domain_byte(c) || c == b'.') {
                return;
            }
            *dst = c;
        }
        let lower = &buf[..hb.len()];
        let Ok(lower) = std::str::from_utf8(lower) else { return };
        self.push_all(self.domains.get(lower), out);
        for (i, c) in lower.bytes().enumerate() {
            if c == b'.' {
                self.push_all(self.domains.get(&lower[i + 1..]), out);
            }
        }
    }
}

fn by_prefix<K: Hash + Eq + Ord>(per_len: Vec<Vec<(K, u32)>>) -> Vec<(u8, Table<K>)> {
    let mut out: Vec<(u8, Table<K>)> = per_len
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(len, v)| (len as u8, Table::build(v)))
        .collect();
    out.reverse();
    out
}

/// Bytes that can appear in what [`parse_ip`] accepts: hex digits, `.`, `:`, the brackets of
/// `[ADDR]:PORT` and the `%` of an IPv6 scope id. Any other byte rules an address out cheaply.
static IP_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_hexdigit() || matches!(c as u8, b'.' | b':' | b'[' | b']' | b'%');
        c += 1;
    }
    t
};

/// An address, or the address of `ADDR:PORT` / `[ADDR]:PORT`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if !s.contains(':') {
        return None;
    }
    s.parse::<SocketAddr>().ok().map(|sa| sa.ip())
}

/// The host of a URL (`scheme://[user@]host[:port][/...]`), or `s` itself.
fn url_host(s: &str) -> &str {
    let Some(at) = s.as_bytes().windows(3).position(|w| w == b"://") else { return s };
    let rest = &s[at + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    auth.split_once(':').map_or(auth, |(h, _)| h)
}

/// 64 hex digits as 32 bytes.
fn hex32(b: &[u8]) -> Option<[u8; 32]> {
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    if bad & 0x80 != 0 { None } else { Some(out) }
}

/// The value of a hex digit, or `0x80` for any other byte.
static NIBBLE: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0x80,
        };
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{IP_BYTE, hex32, parse_ip, url_host};

    proptest! {
        /// The cheap byte check before parsing an address never rules out one `parse_ip` accepts.
        #[test]
        fn ip_byte_check_never_rules_out_an_address(s in "[0-9a-fA-Fgz.:\\[\\]%/ -]{1,24}") {
            if parse_ip(&s).is_some() {
                prop_assert!(s.bytes().all(|c| IP_BYTE[usize::from(c)]), "{:?}", s);
            }
        }

        #[test]
        fn hex32_decodes_exactly_64_hex_digits(bytes in prop::array::uniform32(any::<u8>()), upper in any::<bool>(), junk in 0usize..64) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let hex = if upper { hex.to_uppercase() } else { hex };
            prop_assert_eq!(hex32(hex.as_bytes()), Some(bytes));
            let mut bad = hex.into_bytes();
            bad[junk] = b'g';
            prop_assert_eq!(hex32(&bad), None);
        }
    }

    #[test]
    fn addresses_with_ports_and_scopes_pass_the_byte_check() {
        for s in ["192.0.2.1", "192.0.2.1:443", "[2001:db8::1]:443", "::ffff:192.0.2.1", "[fe80::1%2]:80"] {
            assert!(s.bytes().all(|c| IP_BYTE[usize::from(c)]), "{s}");
        }
        assert!(parse_ip("[2001:db8::1]:443").is_some());
        assert_eq!(url_host("https://user@evil.example:8443/x"), "evil.example");
        assert_eq!(url_host("evil.example"), "evil.example");
    }
}
