//! Building and signing a package from a directory: walk it (regular files and directories
//! only), write the payload tar through zstd into a temp file beside the output while hashing
//! every file, then write the manifest, its signature and the payload into the package tar,
//! which appears at its path only when complete.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use picket_domain::{Timestamp, Version};
use serde::{Deserialize, Serialize};

use crate::error::{PackageError, Result};
use crate::{
    HashingReader, MANIFEST_ENTRY, MANIFEST_FORMAT, MODE_EXEC, MODE_FILE, Manifest, ManifestFile, PAYLOAD_ENTRY,
    SIGNATURE_CONTEXT, SIGNATURE_ENTRY, SecretKey, check_rel_path,
};

/// What to put in the manifest besides the files.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The release version.
    pub version: Version,
    /// Path of the entry point relative to the input directory (made executable).
    pub entrypoint: String,
    /// When it is signed (now).
    pub created_at: Timestamp,
    /// When it stops being offered as an update.
    pub expires_at: Timestamp,
    /// The oldest updater that can install it.
    pub min_updater_version: Version,
    /// zstd level (1..=19; 3 is a good default).
    pub compression_level: i32,
}

/// The contents of `manifest.sig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignatureFile {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Which key signed (`PublicKey::key_id`).
    pub key_id: String,
    /// Base64 of the 64-byte signature of `SIGNATURE_CONTEXT` + manifest bytes.
    pub signature: String,
}

/// An input entry: a directory, or a file with its mode.
enum Item {
    Dir(String),
    File { rel: String, path: PathBuf, mode: u32 },
}

fn walk(root: &Path, rel: &str, out: &mut Vec<Item>) -> Result<()> {
    let dir = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(PackageError::io(format!("reading {}", dir.display())))? {
        let e = e.map_err(PackageError::io(format!("reading {}", dir.display())))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| PackageError::Input(format!("{}: file names must be UTF-8 ({n:?} is not)", dir.display())))?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let rel_path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        check_rel_path(&rel_path).map_err(|r| PackageError::Input(format!("{rel_path:?}: {r}")))?;
        let path = root.join(&rel_path);
        let meta = std::fs::symlink_metadata(&path).map_err(PackageError::io(format!("reading {}", path.display())))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(Item::Dir(rel_path.clone()));
            walk(root, &rel_path, out)?;
        } else if ft.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 { MODE_EXEC } else { MODE_FILE };
            out.push(Item::File { rel: rel_path, path, mode });
        } else {
            let kind = if ft.is_symlink() { "symbolic link" } else { "special file" };
            return Err(PackageError::Input(format!(
                "{} is a {kind}; a package holds only regular files and directories",
                path.display()
            )));
        }
    }
    Ok(())
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_path(path).map_err(|e| PackageError::Input(format!("{path:?} cannot be stored in a tar: {e}")))?;
    h.set_cksum();
    Ok(h)
}

fn append<W: Write>(b: &mut tar::Builder<W>, h: &tar::Header, data: impl std::io::Read, what: &str) -> Result<()> {
    b.append(h, data).map_err(PackageError::io(format!("writing {what} into the package")))
}

/// Builds a package of every file under `input`, signed with `key`, at `out` (which must not
/// exist). Returns its manifest.
pub fn build(input: &Path, opts: &BuildOptions, key: &SecretKey, out: &Path) -> Result<Manifest> {
    let entrypoint = opts.entrypoint.trim_start_matches("./").to_string();
    check_rel_path(&entrypoint).map_err(|r| PackageError::Input(format!("entry point {entrypoint:?}: {r}")))?;
    if !input.is_dir() {
        return Err(PackageError::Input(format!("{} is not a directory", input.display())));
    }
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(PackageError::Input(format!(
            "{} already exists; remove it or choose another --out",
            out.display()
        )));
    }
    if opts.expires_at <= opts.created_at {
        return Err(PackageError::Input("the expiry must be after the signing time".into()));
    }
    let mut items = Vec::new();
    walk(input, "", &mut items)?;
    if !items.iter().any(|i| matches!(i, Item::File { rel, .. } if *rel == entrypoint)) {
        return Err(PackageError::Input(format!(
            "the entry point {entrypoint:?} is not a regular file in {}",
            input.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let payload = tempfile::tempfile_in(&parent)
        .map_err(PackageError::io(format!("creating a temp file in {}", parent.display())))?;
    let enc = zstd::stream::write::Encoder::new(payload, opts.compression_level)
        .map_err(PackageError::io("starting zstd"))?;
    let mut tb = tar::Builder::new(enc);
    let mut files = Vec::new();
    for item in &items {
        match item {
            Item::Dir(rel) => {
                append(&mut tb, &header(rel, 0, MODE_EXEC, tar::EntryType::Directory)?, std::io::empty(), rel)?
            }
            Item::File { rel, path, mode } => {
                let mode = if *rel == entrypoint { MODE_EXEC } else { *mode };
                let f = File::open(path).map_err(PackageError::io(format!("reading {}", path.display())))?;
                let size = f.metadata().map_err(PackageError::io(format!("reading {}", path.display())))?.len();
                let mut hr = HashingReader::new(std::io::Read::take(f, size));
                append(&mut tb, &header(rel, size, mode, tar::EntryType::Regular)?, &mut hr, rel)?;
                let (n, sha256) = hr.finish();
                if n != size {
                    return Err(PackageError::Input(format!("{} changed while it was packaged", path.display())));
                }
                files.push(ManifestFile { path: rel.clone(), size, sha256, mode });
            }
        }
    }
    let enc = tb.into_inner().map_err(PackageError::io("finishing the payload"))?;
    let mut payload = enc.finish().map_err(PackageError::io("finishing the payload"))?;
    payload.seek(SeekFrom::Start(0)).map_err(PackageError::io("rereading the payload"))?;
    let mut hr = HashingReader::new(&mut payload);
    std::io::copy(&mut hr, &mut std::io::sink()).map_err(PackageError::io("hashing the payload"))?;
    let (payload_size, payload_sha256) = hr.finish();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: opts.version,
        entrypoint,
        files,
        payload_sha256,
        payload_size,
        min_updater_version: opts.min_updater_version,
        created_at: opts.created_at,
        expires_at: opts.expires_at,
    };
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| PackageError::Input(format!("manifest: {e}")))?;
    payload.seek(SeekFrom::Start(0)).map_err(PackageError::io("rereading the payload"))?;
    assemble(&manifest_bytes, key, payload, payload_size, &parent, out)?;
    Ok(manifest)
}

/// Writes the package tar (manifest, signature of exactly `manifest_bytes`, payload) to a temp
/// file in `dir` and moves it to `out` (never replacing a file). Tests use it to sign crafted
/// payloads.
pub(crate) fn assemble(
    manifest_bytes: &[u8],
    key: &SecretKey,
    payload: impl std::io::Read,
    payload_size: u64,
    dir: &Path,
    out: &Path,
) -> Result<()> {
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(manifest_bytes);
    let sig = SignatureFile {
        algorithm: "ed25519".into(),
        key_id: key.public().key_id(),
        signature: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.sign(&message)),
    };
    let sig_bytes = serde_json::to_vec(&sig).map_err(|e| PackageError::Input(format!("signature: {e}")))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(PackageError::io(format!("creating a temp file in {}", dir.display())))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(tmp));
    append(
        &mut b,
        &header(MANIFEST_ENTRY, manifest_bytes.len() as u64, MODE_FILE, tar::EntryType::Regular)?,
        manifest_bytes,
        MANIFEST_ENTRY,
    )?;
    append(
        &mut b,
        &header(SIGNATURE_ENTRY, sig_bytes.len() as u64, MODE_FILE, tar::EntryType::Regular)?,
        &sig_bytes[..],
        SIGNATURE_ENTRY,
    )?;
    append(&mut b, &header(PAYLOAD_ENTRY, payload_size, MODE_FILE, tar::EntryType::Regular)?, payload, PAYLOAD_ENTRY)?;
    let w = b.into_inner().map_err(PackageError::io("finishing the package"))?;
    let tmp = w
        .into_inner()
        .map_err(|e| PackageError::Io { context: "writing the package".into(), source: e.into_error() })?;
    tmp.as_file().sync_all().map_err(PackageError::io("writing the package"))?;
    tmp.persist_noclobber(out)
        .map_err(|e| PackageError::Io { context: format!("writing {}", out.display()), source: e.error })?;
    let perms = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(out, perms).map_err(PackageError::io(format!("writing {}", out.display())))?;
    Ok(())
}
