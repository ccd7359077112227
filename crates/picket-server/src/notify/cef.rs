//! ArcSight Common Event Format (CEF) rendering of a notification, the MSG of the syslog
//! messages SIEMs receive: `CEF:0|Picket|Picket|<version>|<signature id>|<name>|<severity>|<extensions>`.
//!
//! Escaping follows the CEF specification: in header fields `\` and `|` are backslash-escaped
//! (and line breaks, which a header must not hold, become spaces); in extension values `\`
//! and `=` are backslash-escaped and line breaks are written `\n` / `\r`. Extension keys are
//! fixed here and never come from input.

use serde_json::Value;

/// Escapes a CEF header field.
pub fn escape_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a CEF extension value.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// One CEF event before formatting.
#[derive(Debug, Clone, PartialEq)]
pub struct CefEvent {
    /// Device version (Picket's version).
    pub version: String,
    /// Signature id: what kind of event, stable for SIEM rules.
    pub signature_id: String,
    /// Human-readable name.
    pub name: String,
    /// 0 (lowest) to 10.
    pub severity: u8,
    /// Extension key/value pairs, in order.
    pub extensions: Vec<(&'static str, String)>,
}

impl CefEvent {
    /// The CEF line.
    pub fn render(&self) -> String {
        let ext: Vec<String> = self.extensions.iter().map(|(k, v)| format!("{k}={}", escape_value(v))).collect();
        format!(
            "CEF:0|Picket|Picket|{}|{}|{}|{}|{}",
            escape_header(&self.version),
            escape_header(&self.signature_id),
            escape_header(&self.name),
            self.severity.min(10),
            ext.join(" ")
        )
    }
}

/// CEF severity of a health-issue severity: low 3, medium 6, high 8 (unknown: 5).
pub fn cef_severity(severity: Option<&str>) -> u8 {
    match severity {
        Some("low") => 3,
        Some("medium") => 6,
        Some("high") => 8,
        _ => 5,
    }
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Milliseconds since the epoch of an RFC 3339 field, for `rt`.
fn millis(v: &Value, path: &[&str]) -> Option<String> {
    let t = text(v, path)?;
    picket_proto::time::parse_ts(&t).map(|ts| ts.0.to_string())
}

/// At most `max` characters of `s`, with `...` when cut (CEF names should stay short).
fn short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The CEF event of a notification: events about a detection alert (`{"alert": ...,
/// "sensor": ...}`, signature id `alert:<indicator type>`) or a health issue (`{"issue": ..., "sensor": ...}`)
/// map the issue's fields to CEF keys; any other event is named by its event name and carries
/// its payload as `msg`. `delivery_id` goes into `externalId`'s neighbour `cs6` so a SIEM
/// can deduplicate retried messages.
pub fn render_notification(version: &str, event: &str, payload: &str, delivery_id: &str) -> String {
    let doc: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let mut ext: Vec<(&'static str, String)> = Vec::new();
    let mut push = |k: &'static str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ext.push((k, v));
        }
    };
    let cef = if doc.get("issue").is_some_and(Value::is_object) {
        let kind = text(&doc, &["issue", "kind"]).unwrap_or_else(|| "unknown".to_string());
        let title = text(&doc, &["issue", "title"]).unwrap_or_else(|| kind.clone());
        push("rt", millis(&doc, &["issue", "opened_at"]));
        push("act", event.rsplit('.').next().map(str::to_string));
        push("cat", Some(event.to_string()));
        push("externalId", text(&doc, &["issue", "id"]));
        push("msg", text(&doc, &["issue", "detail"]));
        push("dhost", text(&doc, &["sensor", "name"]));
        push("dntdom", text(&doc, &["sensor", "domain"]));
        push("cs1Label", Some("sensorId".to_string()));
        push("cs1", text(&doc, &["sensor", "id"]));
        push("cs2Label", Some("recommendation".to_string()));
        push("cs2", text(&doc, &["issue", "recommendation"]));
        push("cs3Label", Some("site".to_string()));
        push("cs3", text(&doc, &["sensor", "site"]));
        push("cs4Label", Some("zone".to_string()));
        push("cs4", text(&doc, &["sensor", "zone"]));
        push("cs5Label", Some("subscription".to_string()));
        push("cs5", text(&doc, &["sensor", "subscription"]));
        push("cs6Label", Some("deliveryId".to_string()));
        push("cs6", Some(delivery_id.to_string()));
        CefEvent {
            version: version.to_string(),
            signature_id: format!("health_issue:{kind}"),
            name: title,
            severity: cef_severity(text(&doc, &["issue", "severity"]).as_deref()),
            extensions: Vec::new(),
        }
    } else if doc.get("alert").is_some_and(Value::is_object) {
        // A detection alert (`alert.raised`): the indicator is the signature, the event
        // excerpt is the message.
        let kind = text(&doc, &["alert", "indicator", "type"]).unwrap_or_else(|| "unknown".to_string());
        let value = text(&doc, &["alert", "indicator", "value"]);
        push("rt", millis(&doc, &["alert", "time"]));
        push("act", event.rsplit('.').next().map(str::to_string));
        push("cat", Some(event.to_string()));
        push("externalId", text(&doc, &["alert", "id"]));
        push("msg", text(&doc, &["alert", "excerpt"]));
        push("reason", text(&doc, &["alert", "description"]));
        push("dhost", text(&doc, &["sensor", "name"]));
        push("dntdom", text(&doc, &["sensor", "domain"]));
        push("cs1Label", Some("sensorId".to_string()));
        push("cs1", text(&doc, &["alert", "sensor_id"]));
        push("cs2Label", Some("indicatorType".to_string()));
        push("cs2", Some(kind.clone()));
        push("cs3Label", Some("indicatorValue".to_string()));
        push("cs3", value.clone());
        push("cs4Label", Some("site".to_string()));
        push("cs4", text(&doc, &["sensor", "site"]));
        push("cs5Label", Some("subscription".to_string()));
        push("cs5", text(&doc, &["sensor", "subscription"]));
        push("cs6Label", Some("deliveryId".to_string()));
        push("cs6", Some(delivery_id.to_string()));
        if let Some(v) = text(&doc, &["alert", "ti_version"]) {
            push("cn1Label", Some("tiVersion".to_string()));
            push("cn1", Some(v));
        }
        CefEvent {
            version: version.to_string(),
            signature_id: format!("alert:{kind}"),
            name: match value {
                Some(v) => format!("Threat indicator matched: {kind} {}", short(&v, 128)),
                None => format!("Threat indicator matched: {kind}"),
            },
            severity: cef_severity(text(&doc, &["alert", "severity"]).as_deref()),
            extensions: Vec::new(),
        }
    } else {
        push("cat", Some(event.to_string()));
        push("msg", Some(payload.to_string()));
        push("cs6Label", Some("deliveryId".to_string()));
        push("cs6", Some(delivery_id.to_string()));
        CefEvent {
            version: version.to_string(),
            signature_id: event.to_string(),
            name: event.to_string(),
            severity: cef_severity(text(&doc, &["severity"]).as_deref()),
            extensions: Vec::new(),
        }
    };
    CefEvent { extensions: ext, ..cef }.render()
}

/// A parsed CEF line: the 7 header fields and the extension key/value pairs, unescaped.
pub type ParsedCef = (Vec<String>, Vec<(String, String)>);

/// Splits a CEF line into its 7 header fields and its extensions, undoing escapes; `None` if
/// it is not CEF. For tests and for documentation of the format.
pub fn parse(line: &str) -> Option<ParsedCef> {
    let rest = line.strip_prefix("CEF:")?;
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while fields.len() < 7 {
        match chars.next()? {
            '\\' => cur.push(chars.next()?),
            '|' => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    let ext_text: String = chars.collect();
    Some((fields, parse_extensions(&ext_text)))
}

/// Parses `k=v k2=v2` where values may hold spaces and escapes, undoing the escapes.
fn parse_extensions(s: &str) -> Vec<(String, String)> {
    // A key starts after a space and runs to an unescaped '='; a value runs to the space
    // before the next key.
    let chars: Vec<char> = s.chars().collect();
    let mut starts = Vec::new(); // (key start, '=' position)
    let mut i = 0;
    let mut at_token = true;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 2;
            at_token = false;
            continue;
        }
        if at_token {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_alphanumeric() {
                j += 1;
            }
            if j > i && j < chars.len() && chars[j] == '=' {
                starts.push((i, j));
                i = j + 1;
                at_token = false;
                continue;
            }
        }
        at_token = chars[i] == ' ';
        i += 1;
    }
    let mut out = Vec::new();
    for (n, (k, eq)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(chars.len(), |(next, _)| next.saturating_sub(1));
        let key: String = chars[*k..*eq].iter().collect();
        let raw: String = chars[eq + 1..end.max(eq + 1)].iter().collect();
        let mut value = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some(o) => value.push(o),
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escaping() {
        assert_eq!(escape_header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(escape_header("two\nlines\r"), "two lines ");
        assert_eq!(escape_header("a=b"), "a=b", "'=' needs no escape in headers");
    }

    #[test]
    fn extension_escaping() {
        assert_eq!(escape_value(r"a=b\c"), r"a\=b\\c");
        assert_eq!(escape_value("one\ntwo\r\n"), r"one\ntwo\r\n");
        assert_eq!(escape_value("a|b"), "a|b", "'|' needs no escape in extensions");
    }

    #[test]
    fn a_hostile_event_round_trips() {
        let nasty = "x|y\\z=w\nnext line cs1=forged";
        let e = CefEvent {
            version: "1.2|3".into(),
            signature_id: "sig\\1".into(),
            name: nasty.into(),
            severity: 42,
            extensions: vec![("msg", nasty.into()), ("cs1", "ok".into())],
        };
        let line = e.render();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.starts_with(r"CEF:0|Picket|Picket|1.2\|3|sig\\1|x\|y\\z=w next line cs1=forged|10|"), "{line}");
        let (h, ext) = parse(&line).expect("parses");
        assert_eq!(h, ["0", "Picket", "Picket", "1.2|3", "sig\\1", "x|y\\z=w next line cs1=forged", "10"]);
        assert_eq!(ext, [("msg".to_string(), nasty.to_string()), ("cs1".to_string(), "ok".to_string())]);
    }

    #[test]
    fn health_issue_fields_map_to_cef_keys() {
        let payload = serde_json::json!({
            "event": "health_issue.opened",
            "issue": {"id": "i-1", "sensor_id": "s-1", "kind": "disconnected", "severity": "high",
                "status": "open", "opened_at": "2026-11-22T10:00:00.000Z", "closed_at": null,
                "title": "Sensor disconnected", "detail": "No heartbeat for 10m = too long",
                "recommendation": "Check the host\nand its network"},
            "sensor": {"id": "s-1", "name": "DC01", "type": "domain_controller", "domain": "corp.example.com",
                "site": "HQ", "zone": "default", "subscription": "default"}
        });
        let line = render_notification("0.1.0", "health_issue.opened", &payload.to_string(), "dlv-1");
        let (h, ext) = parse(&line).expect("CEF");
        assert_eq!(h, ["0", "Picket", "Picket", "0.1.0", "health_issue:disconnected", "Sensor disconnected", "8"]);
        let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("rt"), Some("1795341600000"));
        assert_eq!(get("act"), Some("opened"));
        assert_eq!(get("cat"), Some("health_issue.opened"));
        assert_eq!(get("externalId"), Some("i-1"));
        assert_eq!(get("msg"), Some("No heartbeat for 10m = too long"));
        assert_eq!(get("dhost"), Some("DC01"));
        assert_eq!(get("cs1"), Some("s-1"));
        assert_eq!(get("cs2"), Some("Check the host\nand its network"));
        assert_eq!(get("cs6"), Some("dlv-1"));
        assert!(line.contains(r"10m \= too long") && line.contains(r"host\nand"), "{line}");
    }

    #[test]
    fn alert_fields_map_to_cef_keys() {
        let payload = serde_json::json!({
            "event": "alert.raised",
            "alert": {"id": "a-1", "sensor_id": "s-1", "sensor_name": "OT01", "time": "2026-11-22T10:00:00Z",
                "indicator": {"type": "domain", "value": "evil|c2.example"}, "severity": "medium",
                "excerpt": "{\"q\":\"a=b\\\\c\"}\nsecond line", "description": "Known C2 = bad", "ti_version": 7,
                "received_at": "2026-11-22T10:00:01Z"},
            "sensor": {"id": "s-1", "name": "OT01", "type": "ot_network", "domain": "plant.example.com",
                "site": "Plant 1", "zone": "default", "subscription": "default"}
        });
        let line = render_notification("0.1.0", "alert.raised", &payload.to_string(), "dlv-2");
        assert!(!line.contains('\n'), "one line: {line}");
        let (h, ext) = parse(&line).expect("CEF");
        assert_eq!(&h[4..], ["alert:domain", "Threat indicator matched: domain evil|c2.example", "6"]);
        assert!(line.contains(r"domain evil\|c2.example|6|"), "'|' escaped in the header: {line}");
        let get = |k: &str| ext.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("rt"), Some("1795341600000"));
        assert_eq!(get("externalId"), Some("a-1"));
        assert_eq!(get("msg"), Some("{\"q\":\"a=b\\\\c\"}\nsecond line"));
        assert!(line.contains(r#"msg={"q":"a\=b\\\\c"}\nsecond line"#), "escaped excerpt: {line}");
        assert_eq!(get("reason"), Some("Known C2 = bad"));
        assert_eq!(get("dhost"), Some("OT01"));
        assert_eq!((get("cs1"), get("cs2"), get("cs3")), (Some("s-1"), Some("domain"), Some("evil|c2.example")));
        assert_eq!((get("cn1Label"), get("cn1")), (Some("tiVersion"), Some("7")));
        assert_eq!(get("cs6"), Some("dlv-2"));
        assert_eq!(short("abcdef", 3), "abc...");
        assert_eq!(short("abc", 3), "abc");
    }

    #[test]
    fn other_events_carry_their_payload() {
        let line = render_notification("0.1.0", "alert.raised", r#"{"severity":"low","a":"b|c"}"#, "d");
        let (h, ext) = parse(&line).expect("CEF");
        assert_eq!(&h[4..], ["alert.raised", "alert.raised", "3"]);
        assert_eq!(ext[1], ("msg".to_string(), r#"{"severity":"low","a":"b|c"}"#.to_string()));
    }
}
