//! The fast JSON scanner against `serde_json` as the oracle: whatever it accepts, the
//! `serde_json` walk accepts with the same string values, and it accepts the ordinary lines
//! (and the deep, escaped and numeric corners) the sensor sees.

use proptest::prelude::*;

use crate::event;
use crate::scan::{self, Bail};

/// The string values the fast scanner yields, or `Err` if it refused the line.
fn fast(line: &str) -> Result<Vec<String>, Bail> {
    let mut v = Vec::new();
    let mut scratch = String::new();
    scan::for_each_string(line, &mut scratch, &mut |s: &str| v.push(s.to_owned()))?;
    Ok(v)
}

/// The string values the `serde_json` walk yields, or `None` if it refused the line.
fn oracle(line: &str) -> Option<Vec<String>> {
    let mut v = Vec::new();
    event::for_each_string(line, &mut |s: &str| v.push(s.to_owned())).ok()?;
    Some(v)
}

/// The scanner is never more lenient than `serde_json` and agrees on the values.
fn agrees(line: &str) -> Result<bool, TestCaseError> {
    match fast(line) {
        Ok(v) => {
            prop_assert_eq!(Some(v), oracle(line), "line {:?}", line);
            Ok(true)
        }
        Err(Bail) => Ok(false),
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e30f64..1e30).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z0-9.:\\\\\"/\u{0}-\u{1f}é€😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"\\\\é]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = serde_json::Value> {
    prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..8)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn serialized_objects_are_accepted_with_the_same_strings(v in json_object(), pretty in any::<bool>()) {
        let line = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) };
        let line = line.expect("serializable");
        prop_assert!(agrees(&line)?, "the scanner refused a valid line {:?}", line);
    }

    #[test]
    fn ascii_escaped_objects_are_accepted_with_the_same_strings(v in json_object()) {
        // Every non-ASCII char as `\uXXXX` (astral ones as surrogate pairs), as Python writes.
        let line = serde_json::to_string(&v).expect("serializable");
        let mut esc = String::new();
        for c in line.chars() {
            if c.is_ascii() {
                esc.push(c);
            } else {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    esc.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        prop_assert!(agrees(&esc)?, "the scanner refused a valid line {:?}", esc);
    }

    #[test]
    fn mutated_objects_are_never_accepted_when_serde_refuses_them(
        v in json_object(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
            vec!['{', '}', '[', ']', '"', '\\', ':', ',', ' ', '0', '-', '.', 'e', 'u', 'n', 't', '\u{1}', 'é'])), 1..4),
    ) {
        let mut chars: Vec<char> = serde_json::to_string(&v).expect("serializable").chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        let line: String = chars.into_iter().collect();
        agrees(&line)?;
    }

    #[test]
    fn json_like_noise_is_never_accepted_when_serde_refuses_it(
        line in "[ {}\\[\\]\":,0-9.eE+\\-tfnrulasx\\\\\u{1}é]{0,48}"
    ) {
        agrees(&line)?;
    }

    #[test]
    fn numbers_agree(n in "-?(0|[1-9][0-9]{0,400})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?") {
        agrees(&format!(r#"{{"n": {n}, "s": "x"}}"#))?;
    }
}

#[test]
fn corner_cases_agree_with_serde() {
    let cases = [
        r#"{}"#,
        r#"  {"a":"b"}  "#,
        "{\"a\":\"b\"}\n",
        r#"{"a":"\ud83d\ude00","b":"\u00e9\n\"\\\/\b\f\r\t"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00"}"#,
        r#"{"a":"\ud800\u0041"}"#,
        r#"{"\ud800":1}"#,
        r#"{"a":1e400}"#,
        r#"{"a":-1e400}"#,
        r#"{"a":1e-400}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":-}"#,
        r#"{"a":+1}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":"x"}x"#,
        r#"{"a":"x""#,
        "{\"a\":\"\u{1}\"}",
        "{\"a\":\"\u{7f}\"}",
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        r#"["a"]"#,
        r#""a""#,
        "",
        "\u{feff}{}",
    ];
    for line in cases {
        let _ = agrees(line).map_err(|e| panic!("{e}"));
    }
    // Ordinary lines are accepted.
    for line in
        [r#"{}"#, r#"{"a":"\ud83d\ude00","b":"\u00e9\n\"\\\/\b\f\r\t"}"#, r#"{"a":[1,-0.5e3,true,null,{"b":"c"}]}"#]
    {
        assert_eq!(agrees(line).ok(), Some(true), "{line}");
    }
    // Deep nesting up to the scanner's limit is accepted, deeper falls back to serde.
    let depth = scan::MAX_DEPTH as usize;
    let ok = format!(r#"{{"a":{}"x"{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1));
    assert_eq!(agrees(&ok).ok(), Some(true));
    let deep = format!(r#"{{"a":{}"x"{}}}"#, "[".repeat(depth), "]".repeat(depth));
    assert_eq!(fast(&deep), Err(Bail));
    assert!(oracle(&deep).is_some());
}
