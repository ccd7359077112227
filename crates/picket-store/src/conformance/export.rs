//! Conformance of the streamed export (`SensorExportStore::export_stream`): one ordered pass
//! that holds exactly the rows the keyset pages hold, in the same order, for every sort,
//! filter and scope; chunks of the size asked; an encoder's error ends the stream; a stream
//! dropped part way leaves the store usable; writes made while it streams are not in it.

use std::sync::Arc;

use futures_util::StreamExt;
use picket_domain::{SensorStatus, SensorType};

use super::fixtures::*;
use crate::export::{ExportCells, ExportEncoder};
use crate::query::{CursorPos, SensorFilter, SensorQuery, Sort, SortKey};
use crate::{Scope, Store};

/// Expands into one `#[tokio::test]` per function of this file (see `conformance_tests!`).
#[macro_export]
macro_rules! export_conformance_tests {
    ($make:expr) => {
        $crate::export_conformance_tests!(@each $make;
            export_stream_agrees_with_pages,
            export_stream_errors_and_early_drop,
            export_stream_is_one_snapshot,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::export::$name(store).await;
            }
        )+
    };
}

/// Writes each row's cells in their `Debug` form, one line per row.
struct DebugLines;

impl ExportEncoder for DebugLines {
    fn encode(&mut self, row: &ExportCells<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(format!("{row:?}\n").as_bytes());
        Ok(())
    }
}

/// Fails on the row named `fail_at`.
struct FailAt(String);

impl ExportEncoder for FailAt {
    fn encode(&mut self, row: &ExportCells<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        if row.name == self.0 {
            return Err(format!("refused {}", row.name));
        }
        out.extend_from_slice(row.name.as_bytes());
        out.push(b'\n');
        Ok(())
    }
}

fn lines(chunks: &[Vec<u8>]) -> Vec<String> {
    let text = String::from_utf8(chunks.concat()).expect("utf-8");
    text.lines().map(str::to_string).collect()
}

/// The stream holds what the keyset pages hold (walked 7 at a time), in the same order,
/// for several sorts, filters and scopes; every chunk but the last has `chunk_bytes` or more.
pub async fn export_stream_agrees_with_pages(store: Arc<dyn Store>) {
    seeded(&store, 120, 31).await;
    let d = SensorFilter::default;
    let cases = [
        (Sort::default(), d()),
        (Sort { key: SortKey::Name, descending: true }, d()),
        (
            Sort { key: SortKey::LastSeen, descending: true },
            SensorFilter { sensor_type: vec![SensorType::Adfs], ..d() },
        ),
        (Sort { key: SortKey::SensorStatus, descending: false }, SensorFilter { q: Some("dc0".into()), ..d() }),
        (
            Sort { key: SortKey::Created, descending: true },
            SensorFilter { sensor_status: vec![SensorStatus::Syncing, SensorStatus::UpToDate], ..d() },
        ),
        (Sort::default(), SensorFilter { tag: vec!["prod".into()], ..d() }),
    ];
    let mut nonempty = 0;
    for c in [ctx(), grace_ctx()] {
        for (sort, filter) in &cases {
            for scope in [Scope::All, Scope::Subscriptions(vec!["sub-b".into()])] {
                let q = SensorQuery {
                    scope: scope.clone(),
                    filter: filter.clone(),
                    sort: *sort,
                    after: None,
                    limit: 7,
                    status: c,
                };
                let mut paged = Vec::new();
                let mut after: Option<CursorPos> = None;
                loop {
                    let page = store
                        .export_page(&SensorQuery { after: after.clone(), ..q.clone() })
                        .await
                        .expect("export_page");
                    let Some(last) = page.last() else { break };
                    after =
                        Some(CursorPos { sort: sort.as_param(), value: last.sort_value.clone(), id: last.id.clone() });
                    paged.extend(page.iter().map(|r| format!("{:?}", r.cells())));
                }
                for chunk_bytes in [1, 300, 1 << 20] {
                    let chunks: Vec<Vec<u8>> = store
                        .export_stream(&q, Box::new(DebugLines), chunk_bytes)
                        .map(|c| c.expect("export chunk"))
                        .collect()
                        .await;
                    if let Some((_, full)) = chunks.split_last() {
                        assert!(full.iter().all(|c| c.len() >= chunk_bytes), "chunks under {chunk_bytes} bytes");
                    }
                    assert!(chunks.iter().all(|c| !c.is_empty()), "an empty chunk");
                    assert_eq!(
                        lines(&chunks),
                        paged,
                        "stream of {filter:?} by {} in {scope:?} (chunks of {chunk_bytes})",
                        sort.as_param()
                    );
                }
                nonempty += usize::from(!paged.is_empty());
            }
        }
    }
    assert!(nonempty >= 12, "fixture: most cases must export something ({nonempty})");
}

/// An encoder's error is the stream's last item (after the rows before it); a stream dropped
/// after its first chunk stops reading and the store answers the next export in full.
pub async fn export_stream_errors_and_early_drop(store: Arc<dyn Store>) {
    let rows = seeded(&store, 60, 7).await;
    let mut names: Vec<String> = rows.iter().map(|r| r.name.to_lowercase()).collect();
    names.sort();
    let q = all_ctx_query(SensorFilter::default(), Scope::All, ctx());
    let items: Vec<_> = store.export_stream(&q, Box::new(FailAt(stored_name(&rows, &names[30]))), 1).collect().await;
    let (last, before) = items.split_last().expect("items");
    let err = last.as_ref().expect_err("the encoder's error ends the stream");
    assert!(err.to_string().contains("refused"), "{err}");
    let before: Vec<Vec<u8>> = before.iter().map(|c| c.as_ref().expect("chunk before the error").clone()).collect();
    assert_eq!(lines(&before).len(), 30, "the rows before the failing one");

    for _ in 0..3 {
        let mut s = store.export_stream(&q, Box::new(DebugLines), 1);
        assert!(s.next().await.expect("a first chunk").is_ok());
        drop(s);
    }
    let all: Vec<Vec<u8>> =
        store.export_stream(&q, Box::new(DebugLines), 4096).map(|c| c.expect("chunk")).collect().await;
    assert_eq!(lines(&all).len(), 60);
    assert_eq!(store.count_sensors(&Scope::All, &SensorFilter::default(), &ctx()).await.expect("count"), 60);
}

/// The name (as stored) of the row whose lower-cased name is `lower`.
fn stored_name(rows: &[crate::SensorRow], lower: &str) -> String {
    rows.iter().find(|r| r.name.to_lowercase() == lower).expect("row").name.clone()
}

/// The export is one moment of the store: sensors deleted and created while it streams
/// (after its first chunk) are exported as they were when it started, however the backend
/// reads (one statement, or batches in one read transaction).
pub async fn export_stream_is_one_snapshot(store: Arc<dyn Store>) {
    let rows = seeded(&store, 40, 11).await;
    let q = all_ctx_query(SensorFilter::default(), Scope::All, ctx());
    let before: Vec<Vec<u8>> =
        store.export_stream(&q, Box::new(DebugLines), 4096).map(|c| c.expect("chunk")).collect().await;
    let before = lines(&before);
    assert_eq!(before.len(), 40);

    let mut s = store.export_stream(&q, Box::new(DebugLines), 1);
    let mut during = vec![s.next().await.expect("a first chunk").expect("chunk")];
    for r in &rows {
        store.delete_sensor(&r.id, &Scope::All, &audit("sensor.delete")).await.expect("delete while exporting");
    }
    let after: Vec<Vec<u8>> =
        store.export_stream(&q, Box::new(DebugLines), 4096).map(|c| c.expect("chunk")).collect().await;
    assert!(lines(&after).is_empty(), "every sensor deleted");
    while let Some(c) = s.next().await {
        during.push(c.expect("chunk after the deletes"));
    }
    assert_eq!(lines(&during), before, "the export begun before the deletes");
}
