//! Unit tests of the indicators file and the matcher: each type matches and does not
//! over-match, nested strings, malformed events, and a property test over random CIDRs.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use crate::{IndicatorError, IndicatorType, Matcher, Severity, excerpt, parse_indicators};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn file(entries: &[(&str, &str)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(t, v)| serde_json::json!({"type": t, "value": v, "severity": "high", "description": "d"}).to_string())
        .collect();
    format!("{{\"indicators\": [{}]}}", items.join(","))
}

fn matcher(entries: &[(&str, &str)]) -> Matcher {
    Matcher::from_json(file(entries).as_bytes()).expect("valid indicators")
}

/// The indicator values matching `line`, sorted.
fn check(m: &Matcher, line: &str) -> Vec<String> {
    let mut out = Vec::new();
    m.match_event(line, &mut out).expect("a JSON object");
    let mut v: Vec<String> = out.iter().map(|m| m.value.to_owned()).collect();
    v.sort();
    v
}

fn refused(entries: &[(&str, &str)]) -> String {
    match parse_indicators(file(entries).as_bytes()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{entries:?} was accepted"),
    }
}

#[test]
fn ip_matches_exactly() {
    let m = matcher(&[("ip", "203.0.113.7"), ("ip", "2001:db8::1")]);
    assert_eq!(check(&m, r#"{"src_ip": "203.0.113.7"}"#), ["203.0.113.7"]);
    assert_eq!(check(&m, r#"{"src_ip": "203.0.113.8"}"#), Vec::<String>::new());
    assert_eq!(check(&m, r#"{"dst": "203.0.113.7:443"}"#), ["203.0.113.7"]);
    assert_eq!(check(&m, r#"{"dst": "2001:DB8:0::1"}"#), ["2001:db8::1"]);
    assert_eq!(check(&m, r#"{"dst": "::ffff:203.0.113.7"}"#), ["203.0.113.7"]);
    assert_eq!(check(&m, r#"{"dst": "2001:db8::2"}"#), Vec::<String>::new());
}

#[test]
fn cidr_matches_inside_only() {
    let m = matcher(&[("cidr", "198.51.100.0/24"), ("cidr", "2001:db8:abcd::/48")]);
    assert_eq!(check(&m, r#"{"a": "198.51.100.200"}"#), ["198.51.100.0/24"]);
    assert_eq!(check(&m, r#"{"a": "198.51.101.1"}"#), Vec::<String>::new());
    assert_eq!(check(&m, r#"{"a": "2001:db8:abcd:ff::9"}"#), ["2001:db8:abcd::/48"]);
    assert_eq!(check(&m, r#"{"a": "2001:db8:abce::1"}"#), Vec::<String>::new());
}

#[test]
fn nested_cidrs_all_match_and_host_bits_are_masked() {
    let m = matcher(&[("cidr", "10.1.2.3/8"), ("cidr", "10.1.0.0/16"), ("cidr", "0.0.0.0/0")]);
    assert_eq!(check(&m, r#"{"a": "10.1.9.9"}"#), ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16"]);
}

#[test]
fn domain_matches_itself_and_subdomains_case_insensitively() {
    let m = matcher(&[("domain", "Evil.com")]);
    assert_eq!(check(&m, r#"{"query": "evil.com"}"#), ["evil.com"]);
    assert_eq!(check(&m, r#"{"query": "A.b.EVIL.com."}"#), ["evil.com"]);
    assert_eq!(check(&m, r#"{"url": "https://user@x.evil.com:8443/p?q"}"#), ["evil.com"]);
    assert_eq!(check(&m, r#"{"query": "notevil.com"}"#), Vec::<String>::new());
    assert_eq!(check(&m, r#"{"query": "evil.com.au"}"#), Vec::<String>::new());
    assert_eq!(check(&m, r#"{"query": "evil.community"}"#), Vec::<String>::new());
}

#[test]
fn single_label_domain_matches_dotless_strings() {
    let m = matcher(&[("domain", "intranet"), ("domain", "evil.com")]);
    assert_eq!(check(&m, r#"{"host": "INTRANET"}"#), ["intranet"]);
    assert_eq!(check(&m, r#"{"host": "a.intranet"}"#), ["intranet"]);
    assert_eq!(check(&m, r#"{"host": "intranets"}"#), Vec::<String>::new());
}

#[test]
fn sha256_matches_any_case() {
    let m = matcher(&[("sha256", &SHA.to_uppercase())]);
    assert_eq!(check(&m, &format!(r#"{{"hash": "{SHA}"}}"#)), [SHA]);
    let upper = SHA.to_uppercase();
    assert_eq!(check(&m, &format!(r#"{{"hash": "{upper}"}}"#)), [SHA]);
    let other = SHA.replace('9', "8");
    assert_eq!(check(&m, &format!(r#"{{"hash": "{other}"}}"#)), Vec::<String>::new());
}

#[test]
fn pattern_runs_on_the_raw_line() {
    let m = matcher(&[("pattern", r"powershell(\.exe)? -enc")]);
    assert_eq!(check(&m, r#"{"cmd": "powershell.exe -enc SQBFAFgA"}"#), [r"powershell(\.exe)? -enc"]);
    assert_eq!(check(&m, r#"{"cmd": "powershell -File a.ps1"}"#), Vec::<String>::new());
}

#[test]
fn nested_objects_and_arrays_and_escapes_are_checked_but_keys_are_not() {
    let m = matcher(&[("ip", "192.0.2.1"), ("domain", "evil.com")]);
    assert_eq!(check(&m, r#"{"a": {"b": [1, null, true, {"c": ["x", "192.0.2.1"]}]}}"#), ["192.0.2.1"]);
    assert_eq!(check(&m, r#"{"q": "ev\u0069l.com"}"#), ["evil.com"]);
    assert_eq!(check(&m, r#"{"evil.com": 1, "192.0.2.1": 2}"#), Vec::<String>::new());
}

#[test]
fn one_match_per_indicator_and_the_match_carries_type_and_severity() {
    let m = matcher(&[("ip", "192.0.2.1")]);
    let mut out = Vec::new();
    m.match_event(r#"{"src": "192.0.2.1", "dst": "192.0.2.1"}"#, &mut out).expect("object");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].index, 0);
    assert_eq!(out[0].kind, IndicatorType::Ip);
    assert_eq!(out[0].severity, Severity::High);
}

#[test]
fn malformed_events_are_errors_without_matches() {
    let m = matcher(&[("ip", "192.0.2.1"), ("pattern", "192")]);
    let mut out = Vec::new();
    for line in [
        r#"{"src": "192.0.2.1""#,
        r#"["192.0.2.1"]"#,
        r#""192.0.2.1""#,
        "192",
        "",
        r#"{"src": "192.0.2.1"} trailing"#,
        r#"{"src": "\ud800"}"#,
    ] {
        let err = m.match_event(line, &mut out).expect_err(line);
        assert!(err.to_string().starts_with("event is not a JSON object"), "{err}");
        assert!(out.is_empty());
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(m.match_event(&format!(r#"{{"a": {deep}}}"#), &mut out).is_err());
}

#[test]
fn invalid_indicators_are_refused_naming_index_and_problem() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ip", "1.2.3.4"), ("ip", "1.2.3.400")], "indicator 1: \"1.2.3.400\" is not an IPv4"),
        (&[("cidr", "10.0.0.0/33")], "indicator 0: prefix /33"),
        (&[("cidr", "2001:db8::/129")], "out of range"),
        (&[("cidr", "10.0.0.0")], "is not ADDRESS/PREFIX"),
        (&[("pattern", "a(b")], "indicator 0: invalid regular expression"),
        (&[("pattern", "a{10000}{10000}")], "invalid regular expression"),
        (&[("sha256", "abc")], "is not a SHA-256"),
        (&[("sha256", &"g".repeat(64))], "is not a SHA-256"),
        (&[("domain", "")], "empty domain"),
        (&[("domain", "a..b")], "empty label"),
        (&[("domain", "*.evil.com")], "without \"*.\""),
        (&[("domain", "evil .com")], "character other than"),
        (&[("domain", "1.2.3.4")], "use type \"ip\""),
        (&[("url", "x")], "unknown type \"url\""),
    ];
    for (entries, expected) in cases {
        let err = refused(entries);
        assert!(err.contains(expected), "{entries:?}: {err}");
    }
    let err = parse_indicators(br#"{"indicators": [{"type": "ip", "value": "1.2.3.4", "severity": "urgent"}]}"#)
        .expect_err("bad severity");
    assert!(err.to_string().contains("indicator 0: unknown severity \"urgent\""), "{err}");
    let err = parse_indicators(br#"{"indicators": [{"type": "ip", "severity": "low"}]}"#).expect_err("no value");
    assert!(err.to_string().contains("missing \"value\""), "{err}");
    assert!(matches!(parse_indicators(b"[]"), Err(IndicatorError::Json(_))));
}

#[test]
fn description_is_optional_and_kept() {
    let inds = parse_indicators(
        br#"{"indicators": [{"type": "domain", "value": "A.com", "severity": "low"},
            {"type": "ip", "value": "1.2.3.4", "severity": "medium", "description": "c2"}]}"#,
    )
    .expect("valid");
    assert_eq!(inds[0].description, "");
    assert_eq!(inds[0].value, "a.com");
    assert_eq!(inds[1].description, "c2");
}

#[test]
fn excerpt_is_bounded_on_a_char_boundary() {
    assert_eq!(excerpt("{\"a\": 1}\n", 512), "{\"a\": 1}");
    let line = format!("{{\"a\": \"{}\"}}", "é".repeat(400));
    let e = excerpt(&line, 512);
    assert!(e.len() <= 512 && e.len() >= 509);
    assert!(line.starts_with(e));
}

proptest! {
    #[test]
    fn address_inside_a_random_cidr_matches_and_outside_does_not(
        net in any::<u32>(), len in 0u8..=32, host in any::<u32>(), other in any::<u32>()
    ) {
        let cidr = format!("{}/{len}", Ipv4Addr::from(net));
        let m = matcher(&[("cidr", &cidr)]);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        let inside = Ipv4Addr::from((net & mask) | (host & !mask));
        prop_assert_eq!(check(&m, &format!(r#"{{"ip": "{inside}"}}"#)).len(), 1);
        if other & mask != net & mask {
            let outside = Ipv4Addr::from(other);
            let line = format!(r#"{{"ip": "{outside}"}}"#);
            prop_assert!(check(&m, &line).is_empty());
        }
    }

    #[test]
    fn ipv6_address_inside_a_random_cidr_matches_and_outside_does_not(
        net in any::<u128>(), len in 0u8..=128, host in any::<u128>(), other in any::<u128>()
    ) {
        let cidr = format!("{}/{len}", std::net::Ipv6Addr::from(net));
        let m = matcher(&[("cidr", &cidr)]);
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
        let inside = std::net::Ipv6Addr::from((net & mask) | (host & !mask));
        // IPv4-mapped addresses are matched as IPv4; skip them.
        prop_assume!(inside.to_ipv4_mapped().is_none());
        prop_assert_eq!(check(&m, &format!(r#"{{"ip": "{inside}"}}"#)).len(), 1);
        let outside = std::net::Ipv6Addr::from(other);
        if other & mask != net & mask && outside.to_ipv4_mapped().is_none() {
            let line = format!(r#"{{"ip": "{outside}"}}"#);
            prop_assert!(check(&m, &line).is_empty());
        }
    }

    #[test]
    fn arbitrary_lines_never_panic(line in ".{0,200}") {
        let m = matcher(&[("ip", "1.2.3.4"), ("domain", "evil.com"), ("pattern", "x+")]);
        let mut out = Vec::new();
        let _ = m.match_event(&line, &mut out);
    }
}

/// The indicator values matching free text, sorted.
fn check_text(m: &Matcher, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    m.match_text(text, &mut out);
    let mut v: Vec<String> = out.iter().map(|m| m.value.to_owned()).collect();
    v.sort();
    v
}

#[test]
fn free_text_is_split_into_tokens_and_matched_with_patterns() {
    let m = matcher(&[
        ("ip", "203.0.113.7"),
        ("domain", "evil.example"),
        ("sha256", SHA),
        ("pattern", "^<\\d+>1 .* sudo\\["),
        ("ip", "2001:db8::1"),
    ]);
    let syslog = "<34>1 2026-11-22T10:00:00Z host sudo[42]: connection from 203.0.113.7: ok";
    assert_eq!(check_text(&m, syslog), ["203.0.113.7", "^<\\d+>1 .* sudo\\["]);
    assert_eq!(check_text(&m, "lookup a.b.evil.example. failed"), ["evil.example"]);
    assert_eq!(check_text(&m, "GET http://www.evil.example/x?y=1"), ["evil.example"]);
    assert_eq!(check_text(&m, &format!("file={SHA},size=1")), [SHA]);
    assert_eq!(check_text(&m, "peer=[2001:db8::1]:443;"), ["2001:db8::1"]);
    assert_eq!(check_text(&m, "nothing here 203.0.113.8 notevil.example"), Vec::<String>::new());
    assert_eq!(check_text(&m, ""), Vec::<String>::new());
}
