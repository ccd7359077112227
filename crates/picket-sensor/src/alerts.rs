//! The on-disk alert store `<state-dir>/alerts/`: every alert the detection engine raises is
//! appended here durably before anything else happens to it; a cloud-connected sensor uploads
//! it from here, a locally managed one keeps it here for `picket-sensor alerts list`.
//!
//! Layout:
//! - `seg-<first seq, 20 digits>.jsonl`: segments of records, one JSON object per line:
//!   `{"seq": S, "n": N, "checkpoint": {...}?, "alerts": [...]}`: the `N` alerts of one append,
//!   numbered `S..S+N`, and optionally the follow checkpoint of the lines they came from, so an
//!   append and the checkpoint of its lines land together or not at all;
//! - `uploaded.json`: `{"format": 1, "uploaded_through": SEQ}`: every alert numbered up to
//!   `SEQ` was accepted by the control plane (written only after its answer);
//! - `lock`: held by the `run` process that appends.
//!
//! Crash safety: a record is one `write` followed by `fdatasync`; a torn last record (no line
//! end, or not JSON) is ignored when read and cut off when `run` reopens the store, so the
//! next append starts on a clean line. Segments roll at `Limits::segment_bytes`; when all
//! segments together pass `Limits::max_bytes` the oldest are deleted, uploaded or not (the
//! retention cap: 128 MiB by default, about 250,000 alerts with 512-byte excerpts).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use picket_proto::ti::SensorAlert;
use serde::{Deserialize, Serialize};

use crate::state::write_atomic;

/// Format of `uploaded.json`.
pub const UPLOADED_FORMAT: u32 = 1;
/// Default size at which a segment is closed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;
/// Default retention cap of the whole store (oldest segments go first).
pub const DEFAULT_MAX_BYTES: u64 = 128 << 20;

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AlertStoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Another process appends to this store.
    #[error("{0} is in use by another picket-sensor run")]
    Locked(PathBuf),
    /// A file holds what it should not.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AlertStoreError + '_ {
    move |source| AlertStoreError::Io { path: path.to_path_buf(), source }
}

/// Where a followed file was read up to: the lines before `offset` of the file
/// (`dev`, `ino`) have been matched and their alerts stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowCheckpoint {
    /// The followed path (absolute).
    pub source: String,
    /// Device of the file read.
    pub dev: u64,
    /// Inode of the file read.
    pub ino: u64,
    /// Byte offset just past the last line handled.
    pub offset: u64,
    /// Increases with every checkpoint of this source: the newest of the checkpoint file and
    /// the store's records wins.
    pub generation: u64,
}

/// Size caps of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Segment size at which a new segment starts.
    pub segment_bytes: u64,
    /// Total size above which the oldest segments are deleted.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { segment_bytes: DEFAULT_SEGMENT_BYTES, max_bytes: DEFAULT_MAX_BYTES }
    }
}

#[derive(Serialize)]
struct RecordOut<'a> {
    seq: u64,
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a FollowCheckpoint>,
    alerts: &'a [SensorAlert],
}

#[derive(Deserialize)]
struct RecordHead {
    seq: u64,
    n: u64,
    #[serde(default)]
    checkpoint: Option<FollowCheckpoint>,
}

#[derive(Deserialize)]
struct Record {
    seq: u64,
    alerts: Vec<SensorAlert>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Uploaded {
    format: u32,
    uploaded_through: u64,
}

/// One alert kept on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// Its number in the store (from 1, in order of raising).
    pub seq: u64,
    /// The alert.
    pub alert: SensorAlert,
    /// Whether the control plane accepted it.
    pub uploaded: bool,
}

/// A segment file: its first sequence number and path.
#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
}

fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.jsonl")
}

/// The segments of `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<Segment>, AlertStoreError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(first) = name.strip_prefix("seg-").and_then(|r| r.strip_suffix(".jsonl")) else { continue };
        let Ok(first) = first.parse::<u64>() else { continue };
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(Segment { first, path: entry.path(), bytes });
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// Walks the complete records of a segment: calls `f(line, end_offset)` for each line that
/// ends with a line feed. Returns the offset after the last such line.
fn walk_lines(path: &Path, mut f: impl FnMut(&[u8], u64)) -> Result<u64, AlertStoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::new();
    let mut pos = 0u64;
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(pos);
        }
        pos += n as u64;
        f(&buf[..n - 1], pos);
    }
}

fn read_uploaded(dir: &Path) -> Result<u64, AlertStoreError> {
    let path = dir.join("uploaded.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let u: Uploaded = serde_json::from_slice(&bytes)
                .map_err(|e| AlertStoreError::Invalid { path: path.clone(), message: e.to_string() })?;
            Ok(u.uploaded_through)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The store as `run` holds it: appends, the upload mark, the follow checkpoints it carries.
#[derive(Debug)]
pub struct AlertStore {
    dir: PathBuf,
    limits: Limits,
    segments: Vec<Segment>,
    /// The newest segment, open for appending.
    current: Option<File>,
    next_seq: u64,
    uploaded_through: u64,
    checkpoints: HashMap<String, FollowCheckpoint>,
    dropped: u64,
    _lock: File,
}

impl AlertStore {
    /// Opens (creating) the store at `dir` for appending, with the default caps.
    pub fn open(dir: &Path) -> Result<AlertStore, AlertStoreError> {
        AlertStore::open_with(dir, Limits::default())
    }

    /// Opens (creating) the store at `dir` for appending: takes its lock, cuts a torn last
    /// record, reads the upload mark and the newest follow checkpoints.
    pub fn open_with(dir: &Path, limits: Limits) -> Result<AlertStore, AlertStoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(AlertStoreError::Locked(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let segs = segments(dir)?;
        let mut checkpoints: HashMap<String, FollowCheckpoint> = HashMap::new();
        let mut next_seq = 1u64;
        let last = segs.len().saturating_sub(1);
        for (i, seg) in segs.iter().enumerate() {
            next_seq = next_seq.max(seg.first);
            let mut good_end = 0u64;
            walk_lines(&seg.path, |line, end| {
                if let Ok(h) = serde_json::from_slice::<RecordHead>(line) {
                    good_end = end;
                    next_seq = next_seq.max(h.seq + h.n);
                    if let Some(cp) = h.checkpoint {
                        match checkpoints.get(&cp.source) {
                            Some(old) if old.generation >= cp.generation => {}
                            _ => {
                                checkpoints.insert(cp.source.clone(), cp);
                            }
                        }
                    }
                }
            })?;
            if i == last {
                // Cut whatever follows the last good record (a torn append).
                let len = std::fs::metadata(&seg.path).map_err(io_err(&seg.path))?.len();
                if len > good_end {
                    tracing::warn!(file = %seg.path.display(), bytes = len - good_end, "cutting a torn alert record");
                    let f = OpenOptions::new().write(true).open(&seg.path).map_err(io_err(&seg.path))?;
                    f.set_len(good_end).map_err(io_err(&seg.path))?;
                    f.sync_all().map_err(io_err(&seg.path))?;
                }
            }
        }
        let uploaded_through = read_uploaded(dir)?;
        let mut store = AlertStore {
            dir: dir.to_path_buf(),
            limits,
            segments: segs,
            current: None,
            next_seq,
            uploaded_through,
            checkpoints,
            dropped: 0,
            _lock: lock,
        };
        for s in &mut store.segments {
            s.bytes = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest checkpoint of `source` carried by a record, if any.
    pub fn checkpoint(&self, source: &str) -> Option<&FollowCheckpoint> {
        self.checkpoints.get(source)
    }

    /// Alerts deleted by the retention cap before they were uploaded, since opening.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Number of alerts raised so far (the next one gets this plus one).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Every alert numbered up to this was accepted by the control plane.
    pub fn uploaded_through(&self) -> u64 {
        self.uploaded_through
    }

    /// Appends `alerts` (and the checkpoint of the lines they came from) as one record, synced
    /// to disk before it returns. Nothing to write when both are empty.
    pub fn append(
        &mut self,
        alerts: &[SensorAlert],
        checkpoint: Option<&FollowCheckpoint>,
    ) -> Result<(), AlertStoreError> {
        if alerts.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let rec = RecordOut { seq: self.next_seq, n: alerts.len(), checkpoint, alerts };
        let mut line = serde_json::to_vec(&rec)
            .map_err(|e| AlertStoreError::Invalid { path: self.dir.clone(), message: e.to_string() })?;
        line.push(b'\n');
        let roll = match self.segments.last() {
            None => true,
            Some(s) => s.bytes > 0 && s.bytes + line.len() as u64 > self.limits.segment_bytes,
        };
        if roll {
            self.roll()?;
        }
        if self.current.is_none() {
            let seg = self.segments.last().ok_or_else(|| AlertStoreError::Invalid {
                path: self.dir.clone(),
                message: "no segment".to_string(),
            })?;
            let f = OpenOptions::new().append(true).create(true).open(&seg.path).map_err(io_err(&seg.path))?;
            self.current = Some(f);
        }
        let (Some(f), Some(seg)) = (self.current.as_mut(), self.segments.last_mut()) else {
            return Err(AlertStoreError::Invalid { path: self.dir.clone(), message: "no segment".to_string() });
        };
        f.write_all(&line).map_err(io_err(&seg.path))?;
        f.sync_data().map_err(io_err(&seg.path))?;
        seg.bytes += line.len() as u64;
        self.next_seq += alerts.len() as u64;
        if let Some(cp) = checkpoint {
            self.checkpoints.insert(cp.source.clone(), cp.clone());
        }
        Ok(())
    }

    /// Starts a new segment and applies the retention cap.
    fn roll(&mut self) -> Result<(), AlertStoreError> {
        self.current = None;
        let path = self.dir.join(segment_name(self.next_seq));
        let f = OpenOptions::new().append(true).create(true).open(&path).map_err(io_err(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err(&self.dir))?;
        self.current = Some(f);
        self.segments.push(Segment { first: self.next_seq, path, bytes: 0 });
        let mut total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        while total > self.limits.max_bytes && self.segments.len() > 1 {
            let old = self.segments.remove(0);
            let end = self.segments.first().map_or(self.next_seq, |s| s.first);
            let unsent = end.saturating_sub(old.first.max(self.uploaded_through + 1));
            if unsent > 0 {
                self.dropped += unsent;
                tracing::warn!(alerts = unsent, "alert store over its retention cap: deleting alerts never uploaded");
            }
            total -= old.bytes;
            std::fs::remove_file(&old.path).map_err(io_err(&old.path))?;
        }
        Ok(())
    }

    /// Up to `max` alerts not uploaded yet, oldest first, with their numbers.
    pub fn pending(&self, max: usize) -> Result<Vec<(u64, SensorAlert)>, AlertStoreError> {
        let mut out = Vec::new();
        if max == 0 || self.uploaded_through + 1 >= self.next_seq {
            return Ok(out);
        }
        let from = self.uploaded_through + 1;
        // The first segment that can hold `from`: the last one starting at or before it.
        let start = self.segments.iter().rposition(|s| s.first <= from).unwrap_or(0);
        for seg in &self.segments[start..] {
            let mut bad = None;
            walk_lines(&seg.path, |line, _| {
                if out.len() >= max || bad.is_some() {
                    return;
                }
                let Ok(h) = serde_json::from_slice::<RecordHead>(line) else { return };
                if h.n == 0 || h.seq + h.n <= from {
                    return;
                }
                match serde_json::from_slice::<Record>(line) {
                    Ok(rec) => {
                        for (i, a) in rec.alerts.into_iter().enumerate() {
                            let seq = rec.seq + i as u64;
                            if seq >= from && out.len() < max {
                                out.push((seq, a));
                            }
                        }
                    }
                    Err(e) => bad = Some(e.to_string()),
                }
            })?;
            if let Some(message) = bad {
                tracing::warn!(file = %seg.path.display(), %message, "skipping an unreadable alert record");
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Records that every alert numbered up to `seq` was accepted by the control plane.
    pub fn mark_uploaded(&mut self, seq: u64) -> Result<(), AlertStoreError> {
        if seq <= self.uploaded_through {
            return Ok(());
        }
        let path = self.dir.join("uploaded.json");
        let body = serde_json::to_vec(&Uploaded { format: UPLOADED_FORMAT, uploaded_through: seq })
            .map_err(|e| AlertStoreError::Invalid { path: path.clone(), message: e.to_string() })?;
        write_atomic(&path, &body, false)
            .map_err(|e| AlertStoreError::Invalid { path: path.clone(), message: e.to_string() })?;
        self.uploaded_through = seq;
        Ok(())
    }

    /// How many alerts wait for upload.
    pub fn pending_count(&self) -> u64 {
        let first = self.segments.first().map_or(self.next_seq, |s| s.first);
        self.next_seq.saturating_sub(first.max(self.uploaded_through + 1))
    }
}

/// Every alert kept in the store at `dir`, oldest first, without taking its lock (a running
/// sensor may be appending; a record being written is not shown yet).
pub fn list(dir: &Path) -> Result<Vec<StoredAlert>, AlertStoreError> {
    let uploaded_through = read_uploaded(dir)?;
    let mut out = Vec::new();
    for seg in segments(dir)? {
        walk_lines(&seg.path, |line, _| {
            if let Ok(rec) = serde_json::from_slice::<Record>(line) {
                for (i, alert) in rec.alerts.into_iter().enumerate() {
                    let seq = rec.seq + i as u64;
                    out.push(StoredAlert { seq, alert, uploaded: seq <= uploaded_through });
                }
            }
        })?;
    }
    Ok(out)
}

/// A new alert id: 32 random hex digits.
pub fn new_alert_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock and a counter, still unique per sensor.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        b[..8].copy_from_slice(&(t as u64).to_le_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::Timestamp;
    use picket_proto::ti::AlertIndicator;

    fn alert(n: u32) -> SensorAlert {
        SensorAlert {
            id: new_alert_id(),
            time: Timestamp(1_800_000_000_000 + i64::from(n)),
            indicator: AlertIndicator { kind: "ip".into(), value: format!("10.0.0.{n}") },
            severity: "high".into(),
            excerpt: format!("{{\"n\":{n}}}"),
            description: None,
            ti_version: Some(1),
            sensor_id: Some("s1".into()),
        }
    }

    fn values(v: &[(u64, SensorAlert)]) -> Vec<String> {
        v.iter().map(|(_, a)| a.indicator.value.clone()).collect()
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("alerts");
        {
            let mut s = AlertStore::open(&d).unwrap();
            s.append(&[alert(1), alert(2)], None).unwrap();
            s.append(&[alert(3)], None).unwrap();
        }
        // A crash in the middle of the next append: half a line, no line end.
        let seg = segments(&d).unwrap().pop().unwrap().path;
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(br#"{"seq":4,"n":1,"alerts":[{"id":"x"#).unwrap();
        drop(f);
        let listed: Vec<u64> = list(&d).unwrap().iter().map(|a| a.seq).collect();
        assert_eq!(listed, [1, 2, 3], "the torn record is not shown");
        let mut s = AlertStore::open(&d).unwrap();
        assert_eq!(s.last_seq(), 3);
        s.append(&[alert(4)], None).unwrap();
        let listed: Vec<String> = list(&d).unwrap().iter().map(|a| a.alert.indicator.value.clone()).collect();
        assert_eq!(listed, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], "the next append starts a clean line");
        // Garbage with a line end (zeros after a crash) is cut too.
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0u8; 64]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let mut s = AlertStore::open(&d).unwrap();
        s.append(&[alert(5)], None).unwrap();
        assert_eq!(list(&d).unwrap().len(), 5);
        assert_eq!(s.last_seq(), 5);
    }

    #[test]
    fn uploads_are_marked_only_when_told_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("alerts");
        let mut s = AlertStore::open(&d).unwrap();
        assert!(s.pending(10).unwrap().is_empty());
        s.append(&(1..=7).map(alert).collect::<Vec<_>>(), None).unwrap();
        let batch = s.pending(3).unwrap();
        assert_eq!(batch.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [1, 2, 3]);
        // "Uploaded" but killed before the mark: the same alerts (same ids) come again.
        drop(s);
        let mut s = AlertStore::open(&d).unwrap();
        let again = s.pending(3).unwrap();
        assert_eq!(again, batch, "a kill between upload and mark only re-sends, with the same ids");
        s.mark_uploaded(3).unwrap();
        assert_eq!(values(&s.pending(10).unwrap()), ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]);
        drop(s);
        let s = AlertStore::open(&d).unwrap();
        assert_eq!(s.pending_count(), 4);
        let l = list(&d).unwrap();
        assert_eq!(l.iter().filter(|a| a.uploaded).count(), 3);
    }

    #[test]
    fn one_process_appends_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("alerts");
        let _s = AlertStore::open(&d).unwrap();
        assert!(matches!(AlertStore::open(&d), Err(AlertStoreError::Locked(_))));
    }

    #[test]
    fn checkpoints_travel_with_their_alerts_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("alerts");
        let cp =
            |offset, generation| FollowCheckpoint { source: "/var/log/a".into(), dev: 1, ino: 2, offset, generation };
        {
            let mut s = AlertStore::open(&d).unwrap();
            s.append(&[alert(1)], Some(&cp(100, 1))).unwrap();
            s.append(&[alert(2)], Some(&cp(200, 2))).unwrap();
            s.append(&[alert(3)], None).unwrap();
        }
        let s = AlertStore::open(&d).unwrap();
        assert_eq!(s.checkpoint("/var/log/a"), Some(&cp(200, 2)));
        assert_eq!(s.checkpoint("/var/log/b"), None);
    }

    #[test]
    fn segments_roll_and_the_oldest_go_past_the_retention_cap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("alerts");
        let limits = Limits { segment_bytes: 1000, max_bytes: 3000 };
        let mut s = AlertStore::open_with(&d, limits).unwrap();
        for n in 1..=60 {
            s.append(&[alert(n)], None).unwrap();
        }
        let segs = segments(&d).unwrap();
        assert!(segs.len() > 1 && segs.iter().map(|s| s.bytes).sum::<u64>() <= 3000 + 1000, "{segs:?}");
        let kept = list(&d).unwrap();
        assert_eq!(kept.last().unwrap().seq, 60, "the newest are kept");
        assert!(kept.first().unwrap().seq > 1, "the oldest were deleted");
        assert_eq!(s.dropped(), kept.first().unwrap().seq - 1, "none was uploaded: all deleted ones count as dropped");
        // Pending starts at the oldest alert still kept.
        assert_eq!(s.pending(1).unwrap()[0].0, kept[0].seq);
        assert_eq!(s.pending_count(), kept.len() as u64);
        // Reopen finds the same numbering.
        drop(s);
        let s = AlertStore::open_with(&d, limits).unwrap();
        assert_eq!(s.last_seq(), 60);
    }
}
