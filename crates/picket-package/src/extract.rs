//! Reading the payload of a verified package: `extract` writes it into a new directory,
//! `check_payload` only checks it. Only regular files and directories are accepted, every
//! path part must be a plain name, owners, times and extended attributes are ignored, modes
//! come from the signed manifest (755 or 644), entries and bytes are capped, every file must
//! be listed in the manifest with its size and SHA-256, and the compressed payload must hash
//! to the signed digest. Extraction happens in a temp directory beside the target, which is
//! renamed into place only when all of that held (and removed otherwise).

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{PackageError, Result};
use crate::verify::{entry_size, next_entry};
use crate::{HashingReader, Limits, MANIFEST_ENTRY, MODE_EXEC, PAYLOAD_ENTRY, SIGNATURE_ENTRY, Verified};

/// Tar overhead allowed per entry on top of file bytes (header, padding, long names).
const PER_ENTRY_OVERHEAD: u64 = 4096;

/// Where payload entries go.
trait Sink {
    fn dir(&mut self, rel: &str) -> Result<()>;
    fn file(&mut self, rel: &str, mode: u32, data: &mut dyn Read) -> Result<()>;
}

/// Reads and checks, writes nothing.
struct Discard;

impl Sink for Discard {
    fn dir(&mut self, _: &str) -> Result<()> {
        Ok(())
    }
    fn file(&mut self, rel: &str, _: u32, data: &mut dyn Read) -> Result<()> {
        std::io::copy(data, &mut std::io::sink()).map_err(PackageError::io(format!("reading {rel}")))?;
        Ok(())
    }
}

/// Writes under `root` (a fresh directory only this process writes to).
struct ToDir {
    root: PathBuf,
    dirs: Vec<PathBuf>,
}

impl ToDir {
    fn mkdirs(&mut self, path: &Path) -> Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent()
            && parent != self.root
        {
            self.mkdirs(parent)?;
        }
        DirBuilder::new()
            .mode(MODE_EXEC)
            .create(path)
            .map_err(PackageError::io(format!("creating {}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE_EXEC))
            .map_err(PackageError::io(format!("creating {}", path.display())))?;
        self.dirs.push(path.to_path_buf());
        Ok(())
    }
}

impl Sink for ToDir {
    fn dir(&mut self, rel: &str) -> Result<()> {
        let path = self.root.join(rel);
        self.mkdirs(&path)
    }

    fn file(&mut self, rel: &str, mode: u32, data: &mut dyn Read) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            self.mkdirs(parent)?;
        }
        let ctx = || format!("writing {}", path.display());
        let mut f =
            OpenOptions::new().write(true).create_new(true).mode(mode).open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => PackageError::DuplicateEntry(rel.to_string()),
                _ => PackageError::Io { context: ctx(), source: e },
            })?;
        std::io::copy(data, &mut f).map_err(PackageError::io(ctx()))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(PackageError::io(ctx()))?;
        f.flush().map_err(PackageError::io(ctx()))?;
        f.sync_all().map_err(PackageError::io(ctx()))?;
        Ok(())
    }
}

/// The `/`-joined plain names of an entry path; refuses anything else.
fn safe_rel(path: &Path, shown: &str) -> Result<String> {
    let unsafe_path = |reason| PackageError::UnsafePath { path: shown.to_string(), reason };
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => {
                let n = n.to_str().ok_or_else(|| unsafe_path("not UTF-8"))?;
                if n.contains('\\') {
                    return Err(unsafe_path("backslash in a name"));
                }
                parts.push(n);
            }
            Component::ParentDir => return Err(unsafe_path("'..' component")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_path("absolute path")),
            Component::CurDir => return Err(unsafe_path("'.' component")),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path("empty path"));
    }
    Ok(parts.join("/"))
}

fn kind_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        other => format!("{other:?} entry"),
    }
}

/// Walks the payload of `package` into `sink`, checking it against `verified.manifest`.
fn walk<R: Read>(package: R, verified: &Verified, limits: &Limits, sink: &mut dyn Sink) -> Result<()> {
    let m = &verified.manifest;
    let mut outer = tar::Archive::new(package);
    let mut entries = outer.entries().map_err(|e| PackageError::Malformed(e.to_string()))?;
    next_entry(&mut entries, MANIFEST_ENTRY)?;
    next_entry(&mut entries, SIGNATURE_ENTRY)?;
    let payload = next_entry(&mut entries, PAYLOAD_ENTRY)?;
    let size = entry_size(&payload, PAYLOAD_ENTRY, limits.max_package_bytes)?;
    if size != m.payload_size {
        return Err(PackageError::DigestMismatch("the payload is not the one that was verified".into()));
    }
    let hashed = HashingReader::new(payload);
    let mut decoder = zstd::stream::read::Decoder::new(hashed).map_err(PackageError::io("starting zstd"))?;
    decoder.window_log_max(27).map_err(PackageError::io("starting zstd"))?;
    let cap = limits
        .max_unpacked_bytes
        .saturating_add(limits.max_entries.saturating_add(2).saturating_mul(PER_ENTRY_OVERHEAD));
    let mut inner = tar::Archive::new(decoder.take(cap));
    let expected: HashMap<&str, &crate::ManifestFile> = m.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut dirs: HashSet<String> = HashSet::new();
    let (mut count, mut total) = (0u64, 0u64);
    let bad_tar = |e: std::io::Error| PackageError::Malformed(format!("payload: {e}"));
    for entry in inner.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        count += 1;
        if count > limits.max_entries {
            return Err(PackageError::TooManyEntries { limit: limits.max_entries });
        }
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry.path().map_err(|_| PackageError::UnsafePath { path: shown.clone(), reason: "not UTF-8" })?;
        let rel = safe_rel(&path, &shown)?;
        // A path under a file, or a file where a directory is, can never be extracted.
        let mut prefix = String::new();
        for part in rel.split('/') {
            if !prefix.is_empty() && seen.contains(&prefix) {
                return Err(PackageError::Malformed(format!("{rel:?} is under the file {prefix:?}")));
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
        }
        if dirs.contains(&rel) && entry.header().entry_type() != tar::EntryType::Directory {
            return Err(PackageError::Malformed(format!("{rel:?} is both a directory and a file")));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if expected.contains_key(rel.as_str()) {
                    return Err(PackageError::DuplicateEntry(rel));
                }
                sink.dir(&rel)?;
                dirs.insert(rel);
            }
            tar::EntryType::Regular => {
                let want = expected.get(rel.as_str()).ok_or_else(|| PackageError::UnexpectedFile(rel.clone()))?;
                if !seen.insert(rel.clone()) {
                    return Err(PackageError::DuplicateEntry(rel));
                }
                let size = entry.header().size().map_err(bad_tar)?;
                if size != want.size {
                    return Err(PackageError::DigestMismatch(format!(
                        "{rel:?} has {size} bytes; the manifest says {}",
                        want.size
                    )));
                }
                total = total.saturating_add(size);
                if total > limits.max_unpacked_bytes {
                    return Err(PackageError::TooLarge {
                        what: "the unpacked files".into(),
                        limit: limits.max_unpacked_bytes,
                    });
                }
                let mut data = HashingReader::new((&mut entry).take(size));
                sink.file(&rel, want.mode, &mut data)?;
                let (n, sha) = data.finish();
                if n != size {
                    return Err(PackageError::Malformed(format!("{rel:?} is truncated")));
                }
                if sha != want.sha256 {
                    return Err(PackageError::DigestMismatch(format!("{rel:?} does not match its signed SHA-256")));
                }
            }
            other => return Err(PackageError::ForbiddenEntry { path: shown, kind: kind_name(other) }),
        }
    }
    if let Some(missing) = m.files.iter().find(|f| !seen.contains(&f.path)) {
        return Err(PackageError::MissingFile(missing.path.clone()));
    }
    // Hash what is left of the compressed payload (what the decoder had not asked for).
    let decoder = inner.into_inner().into_inner();
    let mut rest = decoder.finish();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(PackageError::io("reading the payload"))?;
    let (n, sha) = rest.into_inner().finish();
    if n != m.payload_size || sha != m.payload_sha256 {
        return Err(PackageError::DigestMismatch("the payload does not match the signed manifest".into()));
    }
    Ok(())
}

/// Checks every file of the payload of `package` against `verified` without writing anything.
pub fn check_payload<R: Read>(package: R, verified: &Verified, limits: &Limits) -> Result<()> {
    walk(package, verified, limits, &mut Discard)
}

/// Extracts the payload of `package` (already checked by `verify`, whose result is
/// `verified`) into the new directory `dest`: written and synced in a temp directory beside
/// it, renamed into place only if every check passed. On error nothing is left behind.
pub fn extract<R: Read>(package: R, verified: &Verified, dest: &Path, limits: &Limits) -> Result<()> {
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(PackageError::DestinationExists(dest.display().to_string()));
    }
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PackageError::Input(format!("{} has no usable directory name", dest.display())))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(&parent)
        .map_err(PackageError::io(format!("creating a temp directory in {}", parent.display())))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(MODE_EXEC))
        .map_err(PackageError::io(format!("creating a temp directory in {}", parent.display())))?;
    let mut sink = ToDir { root: tmp.path().to_path_buf(), dirs: Vec::new() };
    walk(package, verified, limits, &mut sink)?;
    for d in sink.dirs.iter().rev().chain(std::iter::once(&sink.root)) {
        sync_dir(d)?;
    }
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, dest) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(PackageError::Io {
            context: format!("moving the extracted files to {}", dest.display()),
            source: e,
        });
    }
    sync_dir(&parent)
}

/// `extract` of the package file at `package`.
pub fn extract_file(package: &Path, verified: &Verified, dest: &Path, limits: &Limits) -> Result<()> {
    let f = std::fs::File::open(package).map_err(PackageError::io(format!("opening {}", package.display())))?;
    extract(std::io::BufReader::with_capacity(1 << 16, f), verified, dest, limits)
}

fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(PackageError::io(format!("syncing {}", path.display())))
}
