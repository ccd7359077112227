//! `--follow FILE`: a JSON-lines file read as it grows, across rotation, with a checkpoint so
//! a restart neither loses nor repeats a line.
//!
//! - Lines are handled when their line feed arrives (a partial last line waits); an empty line
//!   is skipped, one that is not a JSON object (or not UTF-8, or over `MAX_LINE_BYTES`) is
//!   counted as malformed and skipped.
//! - Rotation by rename + create: when the file read reaches its end and the path names
//!   another file (device + inode), the old file is read to its end once more, a last line
//!   without line feed is handled, and reading moves to the new file from its start.
//! - Rotation by truncation (`copytruncate`): when the path's file is shorter than what was
//!   read, reading starts again from its start.
//! - Checkpoint (device, inode, offset past the last line handled): stored with the alerts of
//!   those lines in the same record of the alert store (`alerts::FollowCheckpoint`), and, when
//!   lines raised no alert, in `<state-dir>/detect/follow/<hash>.json` (at most once a second,
//!   on rotation and on stop); the newer one (by generation) wins at start. A crash can only
//!   make the sensor read again lines that raised no alert. If the file read before a restart
//!   was rotated away meanwhile, it is looked for by inode beside the path (`app.log.1`) and
//!   read to its end first.
//! - A file seen for the first time is read from its start (as filebeat does).
//!
//! Known limit of every tailer: a truncation followed by writes that grow the file past the
//! old offset before the next check looks like growth.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use picket_proto::ti::SensorAlert;
use serde::{Deserialize, Serialize};

use super::{FOLLOW_POLL, Shared, SourceStats, make_alerts};
use crate::alerts::FollowCheckpoint;
use crate::state::{StateDir, write_atomic};

/// Longest line handled; longer ones are skipped as malformed.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Bytes read at a time.
const CHUNK: usize = 1 << 20;
/// Least time between two checkpoint-file writes while lines raise no alert.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    format: u32,
    #[serde(flatten)]
    checkpoint: FollowCheckpoint,
}

/// One followed file.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    source: String,
    cp_path: PathBuf,
    file: Option<File>,
    id: Option<(u64, u64)>,
    /// Offset just past the last line handled.
    offset: u64,
    /// Where the next read starts (`offset` + what `partial` holds or `skipping` dropped).
    read_pos: u64,
    partial: Vec<u8>,
    skipping: bool,
    generation: u64,
    saved: (Option<(u64, u64)>, u64),
    saved_at: Instant,
    /// Its counters.
    pub stats: SourceStats,
}

fn id_of(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// The checkpoint file of `source`.
pub fn checkpoint_path(state: &StateDir, source: &str) -> PathBuf {
    let h = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(source.as_bytes()));
    state.root().join("detect").join("follow").join(format!("{}.json", &h[..16]))
}

fn read_checkpoint_file(path: &Path, source: &str) -> Option<FollowCheckpoint> {
    let bytes = std::fs::read(path).ok()?;
    let f: CheckpointFile = serde_json::from_slice(&bytes).ok()?;
    (f.format == 1 && f.checkpoint.source == source).then_some(f.checkpoint)
}

/// A file beside `path` whose device and inode are `id` (the file `path` was rotated to).
fn find_rotated(path: &Path, id: (u64, u64)) -> Option<(PathBuf, File)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
            && id_of(&m) == id
            && let Ok(f) = File::open(e.path())
        {
            return Some((e.path(), f));
        }
    }
    None
}

impl Follower {
    /// Prepares to follow `path`, resuming from its checkpoint.
    pub fn open(state: &StateDir, path: &Path, shared: &Shared) -> Result<Follower, String> {
        let path = std::path::absolute(path).map_err(|e| format!("--follow {}: {e}", path.display()))?;
        let source = path.to_string_lossy().into_owned();
        let cp_path = checkpoint_path(state, &source);
        let from_file = read_checkpoint_file(&cp_path, &source);
        let from_store = match shared.store.lock() {
            Ok(s) => s.checkpoint(&source).cloned(),
            Err(p) => p.into_inner().checkpoint(&source).cloned(),
        };
        let cp = match (from_file, from_store) {
            (Some(a), Some(b)) => Some(if b.generation > a.generation { b } else { a }),
            (a, b) => a.or(b),
        };
        let mut f = Follower {
            path: path.clone(),
            source,
            cp_path,
            file: None,
            id: None,
            offset: 0,
            read_pos: 0,
            partial: Vec::new(),
            skipping: false,
            generation: cp.as_ref().map_or(0, |c| c.generation),
            saved: (None, 0),
            saved_at: Instant::now(),
            stats: SourceStats::default(),
        };
        let Some(cp) = cp else {
            tracing::info!(file = %path.display(), "following from the start (no checkpoint)");
            return Ok(f);
        };
        let want = (cp.dev, cp.ino);
        f.saved = (Some(want), cp.offset);
        let same = std::fs::metadata(&path).ok().filter(|m| id_of(m) == want);
        let found = match same {
            Some(_) => File::open(&path).ok().map(|file| (path.clone(), file)),
            None => find_rotated(&path, want),
        };
        match found {
            Some((at, file)) => {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                let offset = if len >= cp.offset { cp.offset } else { 0 };
                tracing::info!(file = %at.display(), offset, "following from the checkpoint");
                f.file = Some(file);
                f.id = Some(want);
                f.offset = offset;
                f.read_pos = offset;
            }
            None => tracing::warn!(
                file = %path.display(),
                "the file read before the restart is gone (rotated and removed); reading the current file from its start"
            ),
        }
        Ok(f)
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn checkpoint(&mut self) -> FollowCheckpoint {
        self.generation += 1;
        let (dev, ino) = self.id.unwrap_or((0, 0));
        FollowCheckpoint { source: self.source.clone(), dev, ino, offset: self.offset, generation: self.generation }
    }

    /// Writes the checkpoint file if the position changed (at most once a second unless
    /// `force`).
    fn save(&mut self, force: bool) {
        let now = (self.id, self.offset);
        if now == self.saved || (!force && self.saved_at.elapsed() < CHECKPOINT_EVERY) {
            return;
        }
        let checkpoint = self.checkpoint();
        let body = match serde_json::to_vec(&CheckpointFile { format: 1, checkpoint }) {
            Ok(b) => b,
            Err(_) => return,
        };
        match write_atomic(&self.cp_path, &body, false) {
            Ok(()) => {
                self.saved = now;
                self.saved_at = Instant::now();
            }
            Err(e) => tracing::warn!(file = %self.path.display(), error = %e, "cannot save the follow checkpoint"),
        }
    }

    /// Follows until the stop flag is set, then saves the checkpoint.
    pub fn run(mut self, shared: &Shared) {
        let mut buf = vec![0u8; CHUNK];
        while !shared.stopping() {
            match self.step(shared, &mut buf) {
                Ok(true) => {}
                Ok(false) => {
                    self.save(false);
                    std::thread::sleep(FOLLOW_POLL);
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "following failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.save(true);
    }

    /// Reads what is new; returns whether anything happened.
    pub fn step(&mut self, shared: &Shared, buf: &mut [u8]) -> Result<bool, String> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => {
                    self.id = f.metadata().ok().map(|m| id_of(&m));
                    self.file = Some(f);
                    self.offset = 0;
                    self.read_pos = 0;
                    self.partial.clear();
                    self.skipping = false;
                }
                Err(_) => return Ok(false),
            }
        }
        let n = match &self.file {
            Some(f) => f.read_at(buf, self.read_pos).map_err(|e| e.to_string())?,
            None => 0,
        };
        if n > 0 {
            self.handle(shared, &buf[..n], false)?;
            return Ok(true);
        }
        self.check_rotation(shared, buf)
    }

    /// Handles freshly read `data` (and, with `last`, what is left as a final line), storing
    /// alerts with the checkpoint; on a store failure the position is rewound so the lines are
    /// read again later.
    fn handle(&mut self, shared: &Shared, data: &[u8], last: bool) -> Result<(), String> {
        let before = (self.offset, self.read_pos, self.partial.clone(), self.skipping);
        let ti = shared.ti.current();
        let mut alerts: Vec<SensorAlert> = Vec::new();
        let mut start = 0;
        let base = self.read_pos;
        for (i, _) in data.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            let piece = &data[start..i];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                self.line(&ti, piece, shared, &mut alerts);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(piece);
                self.line(&ti, &line, shared, &mut alerts);
            }
            start = i + 1;
            self.offset = base + i as u64 + 1;
        }
        let rest = &data[start..];
        if !self.skipping {
            self.partial.extend_from_slice(rest);
            if self.partial.len() > MAX_LINE_BYTES {
                self.stats.malformed(&self.source, &format_args!("a line longer than {MAX_LINE_BYTES} bytes"));
                self.partial.clear();
                self.skipping = true;
            }
        }
        self.read_pos = base + data.len() as u64;
        if last && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&ti, &line, shared, &mut alerts);
            self.offset = self.read_pos;
        }
        if !alerts.is_empty() {
            let cp = self.checkpoint();
            if let Err(e) = shared.store(&alerts, Some(&cp)) {
                (self.offset, self.read_pos, self.partial, self.skipping) = before;
                std::thread::sleep(Duration::from_secs(1));
                return Err(format!("cannot store alerts: {e}"));
            }
            self.saved = (self.id, self.offset);
            self.stats.alerts.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn line(&self, ti: &crate::ti::ActiveTi, bytes: &[u8], shared: &Shared, alerts: &mut Vec<SensorAlert>) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.stats.malformed(&self.source, &"not UTF-8");
            return;
        };
        let Some(matcher) = &ti.matcher else {
            // Without TI nothing can match; a malformed line is still counted.
            if !text.trim_start().starts_with('{') {
                self.stats.malformed(&self.source, &"not a JSON object");
            }
            return;
        };
        let mut matches = Vec::new();
        match matcher.match_event(text, &mut matches) {
            Ok(()) => make_alerts(ti, &matches, text, &shared.sensor_id, alerts),
            Err(e) => self.stats.malformed(&self.source, &e),
        }
    }

    /// At the end of the file: follows a rename + create or a truncation.
    fn check_rotation(&mut self, shared: &Shared, buf: &mut [u8]) -> Result<bool, String> {
        let Ok(meta) = std::fs::metadata(&self.path) else { return Ok(false) };
        let now = id_of(&meta);
        if Some(now) != self.id {
            // Renamed away: read the old file to its end (its writer may have added lines since
            // the last read), handle an unterminated last line, then move to the new file.
            loop {
                let n = match &self.file {
                    Some(f) => f.read_at(buf, self.read_pos).map_err(|e| e.to_string())?,
                    None => 0,
                };
                if n == 0 {
                    break;
                }
                self.handle(shared, &buf[..n], false)?;
            }
            self.handle(shared, &[], true)?;
            let file = match File::open(&self.path) {
                Ok(f) => f,
                Err(_) => return Ok(false),
            };
            tracing::info!(file = %self.path.display(), "followed file rotated; reading the new file");
            self.id = file.metadata().ok().map(|m| id_of(&m));
            self.file = Some(file);
            self.offset = 0;
            self.read_pos = 0;
            self.partial.clear();
            self.skipping = false;
            self.save(true);
            return Ok(true);
        }
        if meta.len() < self.read_pos {
            tracing::info!(file = %self.path.display(), "followed file truncated; reading it from its start");
            self.offset = 0;
            self.read_pos = 0;
            self.partial.clear();
            self.skipping = false;
            self.save(true);
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::alerts::{AlertStore, list};
    use crate::ti::{ActiveTi, TiHandle};

    fn shared(state: &StateDir) -> Shared {
        let ind = br#"{"indicators":[{"type":"ip","value":"203.0.113.7","severity":"high"},{"type":"domain","value":"evil.example","severity":"low"}]}"#;
        let matcher = picket_ti::Matcher::from_json(ind).unwrap();
        Shared {
            ti: Arc::new(TiHandle::new(ActiveTi { info: None, matcher: Some(matcher) })),
            store: Arc::new(Mutex::new(AlertStore::open(&state.root().join("alerts")).unwrap())),
            stored: Arc::new(tokio::sync::Notify::new()),
            sensor_id: "s1".into(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Steps until nothing happens; returns the excerpts stored so far.
    fn drain(f: &mut Follower, sh: &Shared, state: &StateDir) -> Vec<String> {
        let mut buf = vec![0u8; 64];
        while f.step(sh, &mut buf).unwrap() {}
        list(&state.root().join("alerts")).unwrap().into_iter().map(|a| a.alert.excerpt).collect()
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn follows_partial_lines_both_rotations_and_resumes_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let log = dir.path().join("app.jsonl");
        let sh = shared(&state);
        let mut f = Follower::open(&state, &log, &sh).unwrap();
        assert!(drain(&mut f, &sh, &state).is_empty(), "a missing file is waited for");
        // A small read buffer (64 bytes) splits lines across reads.
        append(
            &log,
            "{\"a\":\"203.0.113.7\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\nnot json\n\n{\"d\":\"x.evil.example\"",
        );
        let got = drain(&mut f, &sh, &state);
        assert_eq!(got.len(), 1, "the partial line waits: {got:?}");
        assert_eq!(f.stats.malformed.load(Ordering::Relaxed), 1);
        append(&log, "}\n");
        assert_eq!(drain(&mut f, &sh, &state)[1], "{\"d\":\"x.evil.example\"}");

        // Rename + create; the old file's writer adds a line without line end after the rename.
        let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::fs::rename(&log, dir.path().join("app.jsonl.1")).unwrap();
        old.write_all(b"{\"late\":\"203.0.113.7\"}").unwrap();
        append(&log, "{\"new\":\"evil.example\"}\n");
        let got = drain(&mut f, &sh, &state);
        assert_eq!(got[2..], ["{\"late\":\"203.0.113.7\"}", "{\"new\":\"evil.example\"}"]);

        // Truncation.
        append(&log, "{\"filler\":\"nothing\"}\n");
        drain(&mut f, &sh, &state);
        std::fs::OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
        append(&log, "{\"t\":\"203.0.113.7\"}\n");
        let got = drain(&mut f, &sh, &state);
        assert_eq!(got[4..], ["{\"t\":\"203.0.113.7\"}"]);

        // A restart resumes from the checkpoint carried by the store: nothing again.
        f.save(true);
        drop(f);
        let mut f = Follower::open(&state, &log, &sh).unwrap();
        append(&log, "{\"after\":\"restart\",\"d\":\"evil.example\"}\n");
        let got = drain(&mut f, &sh, &state);
        assert_eq!(got[5..], ["{\"after\":\"restart\",\"d\":\"evil.example\"}"], "{got:?}");

        // Rotated while stopped: the old file is found by inode and read to its end first.
        drop(f);
        append(&log, "{\"before\":\"203.0.113.7\"}\n");
        std::fs::rename(&log, dir.path().join("app.jsonl.2")).unwrap();
        append(&log, "{\"after\":\"203.0.113.7\"}\n");
        let mut f = Follower::open(&state, &log, &sh).unwrap();
        let got = drain(&mut f, &sh, &state);
        assert_eq!(got[6..], ["{\"before\":\"203.0.113.7\"}", "{\"after\":\"203.0.113.7\"}"], "{got:?}");
    }

    #[test]
    fn the_newest_checkpoint_wins_between_the_file_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let log = dir.path().join("a.jsonl");
        let sh = shared(&state);
        append(&log, "{\"x\":1}\n{\"x\":2}\n");
        let mut f = Follower::open(&state, &log, &sh).unwrap();
        drain(&mut f, &sh, &state);
        f.save(true);
        let g = f.generation;
        drop(f);
        let f = Follower::open(&state, &log, &sh).unwrap();
        assert_eq!((f.offset, f.generation), (16, g), "from the checkpoint file");
    }
}
