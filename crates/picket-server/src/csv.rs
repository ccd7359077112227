//! The sensor CSV export: the contract's columns (`picket_proto::CSV_COLUMNS`), one row per
//! sensor, tags joined with ", " in one cell, and every cell that a spreadsheet would run as
//! a formula (starting with `=`, `+`, `-`, `@`, tab or CR) prefixed with `'`.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use picket_domain::Timestamp;
use picket_proto::time::format_ts;
use picket_store::ExportRow;

use crate::app::SensorBatches;

/// Prefixes `'` to a cell a spreadsheet would treat as a formula (CSV injection).
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
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

/// One batch of rows, in `CSV_COLUMNS` order: cells are written straight from the store's
/// export rows (a few small allocations per sensor: tags, times, the issue count).
pub fn rows(batch: &[ExportRow]) -> csv::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(batch.len() * 220));
    for s in batch {
        let tags: Vec<String> = serde_json::from_str(&s.tags_json)
            .map_err(|e| std::io::Error::other(format!("sensor {}: tags column: {e}", s.id)))?;
        let tags = tags.join(", ");
        let issues = s.open_issues.to_string();
        let created = format_ts(Timestamp(s.created_at));
        let last_seen = s.last_seen_at.map(|t| format_ts(Timestamp(t))).unwrap_or_default();
        let cells: [&str; 16] = [
            &s.name,
            &s.sensor_type,
            &s.domain,
            &s.subscription,
            &s.site,
            &s.zone,
            &tags,
            &s.mode,
            &s.service_status,
            s.sensor_status.as_str(),
            s.version.as_deref().unwrap_or(""),
            if s.delayed_update { "true" } else { "false" },
            s.health_status.as_str(),
            &issues,
            &created,
            &last_seen,
        ];
        for cell in cells {
            w.write_field(neutralise(cell).as_bytes())?;
        }
        w.write_record(None::<&[u8]>)?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// The streamed `text/csv` answer of an export (REST API and portal alike): the header
/// line, then one chunk per store batch, so memory stays bounded however large the fleet.
pub fn response(batches: SensorBatches) -> Response {
    let header = futures_util::stream::once(async { header().map(Bytes::from).map_err(std::io::Error::other) });
    let body = futures_util::stream::unfold(batches, |mut b| async move {
        let chunk = match b.next_batch().await? {
            Ok(batch) => rows(&batch).map(Bytes::from).map_err(std::io::Error::other),
            Err(e) => {
                tracing::error!(error = %e, "CSV export failed part way");
                Err(std::io::Error::other(e.to_string()))
            }
        };
        Some((chunk, b))
    });
    let mut resp = Body::from_stream(header.chain(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"sensors.csv\""));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
