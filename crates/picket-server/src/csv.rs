//! The sensor CSV export: the contract's columns (`picket_proto::CSV_COLUMNS`), one row per
//! sensor, tags joined with ", " in one cell, and every cell that a spreadsheet would run as
//! a formula (starting with `=`, `+`, `-`, `@`, tab or CR) prefixed with `'`.
//!
//! Rows are written by [`CsvEncoder`] straight from the cells the store borrows from its
//! database rows into the store's reused chunk buffer: no allocation per sensor (tags are
//! split from their stored JSON array in place, times formatted by hand). The output is
//! byte for byte what the `csv` crate writes with its defaults (quoted only when a cell holds
//! `,`, `"`, CR or LF; `"` doubled; LF line ends): the tests compare the two.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use picket_domain::Timestamp;
use picket_proto::time::format_ts;
use picket_store::{ExportCells, ExportEncoder};

use crate::app::SensorBatches;

/// Bytes per chunk of a streamed export's body (each one a few hundred rows).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Prefixes `'` to a cell a spreadsheet would treat as a formula (CSV injection).
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if is_formula(cell.as_bytes()) { format!("'{cell}").into() } else { cell.into() }
}

fn is_formula(cell: &[u8]) -> bool {
    matches!(cell.first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

fn write_record<'a>(w: &mut csv::Writer<Vec<u8>>, cells: impl IntoIterator<Item = &'a str>) -> csv::Result<()> {
    w.write_record(cells.into_iter().map(|c| neutralise(c).into_owned()))
}

/// The header line.
pub fn header() -> csv::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    write_record(&mut w, picket_proto::CSV_COLUMNS)?;
    w.into_inner().map_err(|e| e.into_error().into())
}

/// Appends one cell: neutralised, then quoted if it holds `,`, `"`, CR or LF (as the `csv`
/// crate's default writer does).
fn put_cell(out: &mut Vec<u8>, cell: &[u8]) {
    let formula = is_formula(cell);
    if !cell.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        if formula {
            out.push(b'\'');
        }
        out.extend_from_slice(cell);
        return;
    }
    out.push(b'"');
    if formula {
        out.push(b'\'');
    }
    for part in cell.split_inclusive(|b| *b == b'"') {
        out.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// Appends an integer in decimal.
fn put_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

fn put_padded(out: &mut Vec<u8>, v: i64, width: usize) {
    let mut digits = [b'0'; 4];
    let mut v = v;
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Appends a unix-ms time as RFC 3339 in UTC, exactly as `format_ts` writes it (fraction
/// only when not whole seconds, trailing zeros dropped); years outside 0..=9999 go through
/// `format_ts` itself.
fn put_time(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(format_ts(Timestamp(ms)).as_bytes());
        return;
    }
    put_padded(out, year, 4);
    out.push(b'-');
    put_padded(out, month, 2);
    out.push(b'-');
    put_padded(out, day, 2);
    out.push(b'T');
    put_padded(out, sod / 3600, 2);
    out.push(b':');
    put_padded(out, sod / 60 % 60, 2);
    out.push(b':');
    put_padded(out, sod % 60, 2);
    if frac != 0 {
        out.push(b'.');
        let (mut f, mut width) = (frac, 3);
        while f % 10 == 0 {
            f /= 10;
            width -= 1;
        }
        put_padded(out, f, width);
    }
    out.push(b'Z');
}

/// The tags of a stored JSON array of strings, joined with ", ", into `joined`. Arrays of
/// plain strings (no escapes, no control characters: what Picket stores) are split in place;
/// anything else goes through `serde_json`.
fn join_tags(json: &str, joined: &mut Vec<u8>) -> Result<(), String> {
    joined.clear();
    if split_plain_tags(json.as_bytes(), joined).is_some() {
        return Ok(());
    }
    joined.clear();
    let tags: Vec<String> = serde_json::from_str(json).map_err(|e| format!("tags column: {e}"))?;
    joined.extend_from_slice(tags.join(", ").as_bytes());
    Ok(())
}

fn split_plain_tags(json: &[u8], joined: &mut Vec<u8>) -> Option<()> {
    let skip_ws = |i: &mut usize| {
        while json.get(*i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    };
    let mut i = 0;
    skip_ws(&mut i);
    (json.get(i) == Some(&b'[')).then_some(())?;
    i += 1;
    skip_ws(&mut i);
    if json.get(i) == Some(&b']') {
        i += 1;
    } else {
        let mut first = true;
        loop {
            (json.get(i) == Some(&b'"')).then_some(())?;
            let start = i + 1;
            let len = json[start..].iter().position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
            (json[start + len] == b'"').then_some(())?;
            if !first {
                joined.extend_from_slice(b", ");
            }
            first = false;
            joined.extend_from_slice(&json[start..start + len]);
            i = start + len + 1;
            skip_ws(&mut i);
            match json.get(i) {
                Some(b',') => {
                    i += 1;
                    skip_ws(&mut i);
                }
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    skip_ws(&mut i);
    (i == json.len()).then_some(())
}

/// Writes export rows as CSV lines in `CSV_COLUMNS` order (see the module documentation).
#[derive(Debug, Default)]
pub struct CsvEncoder {
    /// The joined tags of the row being written (reused).
    tags: Vec<u8>,
}

impl ExportEncoder for CsvEncoder {
    fn encode(&mut self, s: &ExportCells<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        join_tags(s.tags_json, &mut self.tags).map_err(|e| format!("sensor {}: {e}", s.name))?;
        for cell in [s.name, s.sensor_type, s.domain, s.subscription, s.site, s.zone] {
            put_cell(out, cell.as_bytes());
            out.push(b',');
        }
        put_cell(out, &self.tags);
        out.push(b',');
        for cell in [s.mode, s.service_status, s.sensor_status.as_str(), s.version.unwrap_or("")] {
            put_cell(out, cell.as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(if s.delayed_update { b"true," } else { b"false," });
        put_cell(out, s.health_status.as_str().as_bytes());
        out.push(b',');
        if s.open_issues < 0 {
            // A leading '-' is neutralised like any other cell's.
            out.push(b'\'');
        }
        put_int(out, s.open_issues);
        out.push(b',');
        put_time(out, s.created_at);
        out.push(b',');
        if let Some(t) = s.last_seen_at {
            put_time(out, t);
        }
        out.push(b'\n');
        Ok(())
    }
}

/// The streamed `text/csv` answer of an export (REST API and portal alike): the header
/// line, then the store's chunks of `CHUNK_BYTES`, read in one pass, so memory stays bounded
/// however large the fleet.
pub fn response(batches: SensorBatches) -> Response {
    let header = futures_util::stream::once(async { header().map(Bytes::from).map_err(std::io::Error::other) });
    let body = batches.chunks(Box::new(CsvEncoder::default()), CHUNK_BYTES).map(|chunk| match chunk {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "CSV export failed part way");
            Err(std::io::Error::other(e.to_string()))
        }
    });
    let mut resp = Body::from_stream(header.chain(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"sensors.csv\""));
    resp
}

#[cfg(test)]
mod tests {
    use picket_domain::{HealthStatus, SensorStatus};

    use super::*;

    /// The writer before `CsvEncoder`: the `csv` crate, `neutralise`, `serde_json` and
    /// `format_ts`, one allocation per cell. The encoder must write the same bytes.
    fn reference(s: &ExportCells<'_>) -> Vec<u8> {
        let tags: Vec<String> = serde_json::from_str(s.tags_json).unwrap();
        let cells = [
            s.name.to_string(),
            s.sensor_type.to_string(),
            s.domain.to_string(),
            s.subscription.to_string(),
            s.site.to_string(),
            s.zone.to_string(),
            tags.join(", "),
            s.mode.to_string(),
            s.service_status.to_string(),
            s.sensor_status.as_str().to_string(),
            s.version.unwrap_or("").to_string(),
            s.delayed_update.to_string(),
            s.health_status.as_str().to_string(),
            s.open_issues.to_string(),
            format_ts(Timestamp(s.created_at)),
            s.last_seen_at.map(|t| format_ts(Timestamp(t))).unwrap_or_default(),
        ];
        let mut w = csv::Writer::from_writer(Vec::new());
        for c in &cells {
            w.write_field(neutralise(c).as_bytes()).unwrap();
        }
        w.write_record(None::<&[u8]>).unwrap();
        w.into_inner().unwrap()
    }

    /// A small deterministic generator (xorshift), so the cases are the same on every run.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    const TRICKY: &[&str] = &[
        "", "plain", "DC01", "a,b", "x\"y", "\"", ",", "=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx", "a\nb",
        "a\r\nb", "=\"q\",r", "'", " lead", "trail ", "é-ü", "a=b", "-", "@", "\"=x\"",
    ];

    #[test]
    fn encoder_writes_what_the_csv_crate_writes() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut enc = CsvEncoder::default();
        for _ in 0..5000 {
            let tags: Vec<&str> = (0..g.next() % 4).map(|_| g.pick(TRICKY)).collect();
            let tags_json = if g.next().is_multiple_of(2) {
                serde_json::to_string(&tags).unwrap()
            } else {
                serde_json::to_string_pretty(&tags).unwrap()
            };
            let time = |g: &mut Gen| (g.next() % 4_000_000_000_000) as i64 - 100_000_000_000;
            let cells = ExportCells {
                name: g.pick(TRICKY),
                sensor_type: g.pick(TRICKY),
                domain: g.pick(TRICKY),
                subscription: g.pick(TRICKY),
                site: g.pick(TRICKY),
                zone: g.pick(TRICKY),
                tags_json: &tags_json,
                mode: g.pick(TRICKY),
                service_status: g.pick(TRICKY),
                sensor_status: SensorStatus::ALL[(g.next() % SensorStatus::ALL.len() as u64) as usize],
                version: (!g.next().is_multiple_of(3)).then(|| g.pick(TRICKY)),
                delayed_update: g.next().is_multiple_of(2),
                health_status: HealthStatus::from_rank((g.next() % 4) as i64),
                open_issues: (g.next() % 7) as i64 - 1,
                created_at: time(&mut g),
                last_seen_at: (!g.next().is_multiple_of(3)).then(|| time(&mut g)),
            };
            let mut out = b"previous,".to_vec();
            enc.encode(&cells, &mut out).unwrap();
            let want = reference(&cells);
            assert_eq!(String::from_utf8_lossy(&out[9..]), String::from_utf8_lossy(&want), "for {cells:?}");
        }
    }

    #[test]
    fn times_are_written_as_format_ts_writes_them() {
        let mut cases = vec![
            0,
            -1,
            1,
            10,
            100,
            120,
            999,
            1000,
            86_399_999,
            86_400_000,
            951_782_400_000,     // 2000-02-29
            951_868_799_999,     // 2000-02-29T23:59:59.999
            4_107_542_400_000,   // 2100-03-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999, the last RFC 3339 year
            253_402_300_800_000, // year 10000: format_ts's own fallback
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // year -1
            i64::MAX,
            i64::MIN,
        ];
        let mut g = Gen(42);
        for _ in 0..200_000 {
            cases.push((g.next() % 260_000_000_000_000) as i64 - 63_000_000_000_000);
        }
        for ms in cases {
            let mut out = Vec::new();
            put_time(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), format_ts(Timestamp(ms)), "{ms}");
        }
    }

    #[test]
    fn tags_from_any_json_array_and_errors_for_anything_else() {
        let mut joined = Vec::new();
        for (json, want) in [
            ("[]", ""),
            (" [ ] ", ""),
            ("[\"a\"]", "a"),
            ("[ \"a\" , \"b c\" ]\n", "a, b c"),
            ("[\"a\\\"b\"]", "a\"b"),
            ("[\"\\u00e9\", \"x\"]", "é, x"),
            ("[\"é\"]", "é"),
        ] {
            join_tags(json, &mut joined).unwrap();
            assert_eq!(String::from_utf8(joined.clone()).unwrap(), want, "{json}");
        }
        for bad in ["", "[", "[\"a\"", "[\"a\",]", "{}", "[1]", "[\"a\"] x", "null"] {
            assert!(join_tags(bad, &mut joined).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integers() {
        for n in [0, 1, 9, 10, 99, 100, 12345, -1, -10, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn formulas_are_neutralised_and_nothing_else() {
        for (input, expected) in [
            ("=1+1", "'=1+1"),
            ("+cmd", "'+cmd"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("plain", "plain"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(neutralise(input), expected, "{input:?}");
        }
    }

    #[test]
    fn header_is_the_contract() {
        let h = String::from_utf8(header().unwrap()).unwrap();
        assert_eq!(
            h,
            "Sensor,Type,Domain,Subscription,Site,Zone,Tags,Mode,Service Status,Sensor Status,Version,Delayed Update,Health Status,Health Issues,Created,Last Seen\n"
        );
    }
}
