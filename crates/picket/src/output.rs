//! How answers are shown: aligned tables for people, JSON for scripts, and the small
//! formatting helpers (times, booleans, lists) both use. Everything goes through a `Write`
//! so a closed pipe surfaces as an error the caller can ignore.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use picket_domain::Timestamp;
use serde::Serialize;

/// A table of text cells printed with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the header and rows, columns padded to their widest cell, two spaces apart.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
            let mut text = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = w.saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(out, "{}", text.trim_end())
        };
        line(out, &mut self.headers.iter().copied())?;
        for row in &self.rows {
            line(out, &mut row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// Key/value lines for one record (`show`), keys padded to the longest.
pub fn write_fields(out: &mut impl Write, fields: &[(&str, String)]) -> io::Result<()> {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    Ok(())
}

/// Pretty JSON of `value` and a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// The current time, for "5m ago".
pub fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// How long before `now` an instant was, in the largest whole unit (`42s ago`, `3h ago`).
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let ms = now.0.saturating_sub(t.0);
    if ms < 0 {
        return "just now".to_string();
    }
    let secs = ms / 1000;
    let (n, unit) = match secs {
        0..60 => (secs, "s"),
        60..3600 => (secs / 60, "m"),
        3600..86400 => (secs / 3600, "h"),
        _ => (secs / 86400, "d"),
    };
    format!("{n}{unit} ago")
}

/// An optional time as "5m ago" or "never".
pub fn ago_opt(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(|| "never".to_string(), |t| ago(t, now))
}

/// An RFC 3339 time, or "-".
pub fn time_opt(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), picket_proto::time::format_ts)
}

/// "yes" or "no".
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A cell for possibly empty text ("-" when empty).
pub fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_string() } else { s.to_string() }
}

/// A cell for a list (comma-joined, "-" when empty).
pub fn list(items: &[String]) -> String {
    or_dash(&items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(vec!["DC01".into(), "up_to_date".into()]);
        t.row(vec!["A-much-longer-name".into(), "-".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME                STATUS\nDC01                up_to_date\nA-much-longer-name  -\n"
        );
    }

    #[test]
    fn ages_use_the_largest_unit() {
        let now = Timestamp(10_000_000_000);
        assert_eq!(ago(Timestamp(now.0 - 42_000), now), "42s ago");
        assert_eq!(ago(Timestamp(now.0 - 3 * 3_600_000 - 5), now), "3h ago");
        assert_eq!(ago(Timestamp(now.0 + 5), now), "just now");
        assert_eq!(ago_opt(None, now), "never");
    }
}
