//! `picket release keygen|sign|verify|publish|list`: release signing keys (made and kept
//! offline, never sent anywhere), signing a directory into a package, checking a package
//! against public keys, and publishing it to the control plane over the REST API.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use picket_domain::{Timestamp, Version, parse_duration};
use picket_package::{BuildOptions, Limits, PublicKey, SecretKey, Trust};

use super::{connect, stdout};
use crate::cli::ApiArgs;
use crate::exit::CliError;
use crate::output::{self, Table};

/// `picket release ...`.
#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Make an Ed25519 release signing key: KEY (secret, 0600, keep it offline) and KEY.pub.
    Keygen(KeygenArgs),
    /// Sign the files of a directory into a package (tar + zstd, signed manifest).
    Sign(SignArgs),
    /// Check a package's signature, digests and expiry against public keys, and show it.
    Verify(VerifyArgs),
    /// Upload a package to the control plane, which verifies it and makes it the current release.
    Publish(PublishArgs),
    /// List published releases by version; the newest is the current release.
    List(ApiArgs),
}

/// `picket release keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (PKCS#8 PEM, mode 0600); the public key goes to KEY.pub.
    #[arg(long, value_name = "KEY")]
    pub out: PathBuf,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// `picket release sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key from `picket release keygen`.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The release version (MAJOR.MINOR.PATCH); what sensors started from it report.
    #[arg(long, value_name = "V")]
    pub version: Version,
    /// The program the updater starts, relative to --input (made executable).
    #[arg(long, value_name = "FILE")]
    pub entrypoint: String,
    /// The directory whose files (regular files and directories only) make the package.
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,
    /// Where to write the package (must not exist).
    #[arg(long, value_name = "PKG")]
    pub out: PathBuf,
    /// How long it is offered as an update; afterwards sensors keep running it but do not
    /// take it as a new update.
    #[arg(long, value_parser = duration, default_value = "365d", value_name = "DURATION")]
    pub expires_in: Duration,
    /// The oldest picket-updater that can install it.
    #[arg(long, default_value = "0.1.0", value_name = "V")]
    pub min_updater_version: Version,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `picket release verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The package.
    pub package: PathBuf,
    /// A trusted public key file (KEY.pub; repeatable).
    #[arg(long = "key-pub", required = true, value_name = "FILE")]
    pub key_pub: Vec<PathBuf>,
    /// Also decompress and check every file against its signed SHA-256.
    #[arg(long)]
    pub full: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `picket release publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The package from `picket release sign`.
    pub package: PathBuf,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// The public key file that goes with a secret key file.
fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Writes `text` to a new file with `mode`; refuses to replace one.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let public = pub_path(&a.out);
    for p in [&a.out, &public] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(CliError::Usage(format!("{} already exists; keys are never overwritten", p.display())).into());
        }
    }
    let key = SecretKey::generate()?;
    write_new(&a.out, &key.to_pem(), 0o600)?;
    write_new(&public, &format!("{}\n", key.public().to_base64()), 0o644)?;
    let mut out = stdout();
    writeln!(
        out,
        "Wrote the secret key to {} (mode 0600: keep it offline) and the public key to {} (key id {}).\n\
         Start the control plane with: picket serve --release-key-pub {}",
        a.out.display(),
        public.display(),
        key.public().key_id(),
        public.display()
    )?;
    out.flush()?;
    Ok(())
}

fn read_secret(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the key {}", path.display()))?;
    SecretKey::from_pem(&text).with_context(|| format!("reading the key {}", path.display()))
}

fn sign(a: SignArgs) -> anyhow::Result<()> {
    let key = read_secret(&a.key)?;
    let created_at = now();
    let opts = BuildOptions {
        version: a.version,
        entrypoint: a.entrypoint,
        created_at,
        expires_at: created_at.plus(a.expires_in),
        min_updater_version: a.min_updater_version,
        compression_level: a.level,
    };
    let manifest = picket_package::build(&a.input, &opts, &key, &a.out)?;
    let bytes = std::fs::read(&a.out).with_context(|| format!("reading {}", a.out.display()))?;
    let mut out = stdout();
    if a.json {
        output::write_json(&mut out, &manifest)?;
    } else {
        let total: u64 = manifest.files.iter().map(|f| f.size).sum();
        writeln!(
            out,
            "Signed {} ({} file{}, {total} bytes; package {} bytes) with key {} into {}\nsha256 {}\nexpires {}",
            manifest.version,
            manifest.files.len(),
            if manifest.files.len() == 1 { "" } else { "s" },
            bytes.len(),
            key.public().key_id(),
            a.out.display(),
            picket_package::sha256_hex(&bytes),
            picket_proto::time::format_ts(manifest.expires_at),
        )?;
    }
    out.flush()?;
    Ok(())
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for p in &a.key_pub {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        keys.push(PublicKey::parse(&text).with_context(|| format!("reading {}", p.display()))?);
    }
    let trust = Trust { keys, now: now(), limits: Limits::default() };
    let verified = picket_package::verify_file(&a.package, &trust)
        .with_context(|| format!("{} was refused", a.package.display()))?;
    if a.full {
        let f = std::fs::File::open(&a.package).with_context(|| format!("opening {}", a.package.display()))?;
        picket_package::check_payload(std::io::BufReader::new(f), &verified, &trust.limits)
            .with_context(|| format!("{} was refused", a.package.display()))?;
    }
    let mut out = stdout();
    if a.json {
        output::write_json(
            &mut out,
            &serde_json::json!({
                "sha256": verified.package_sha256,
                "size": verified.package_size,
                "key_id": verified.key_id,
                "manifest": verified.manifest,
            }),
        )?;
    } else {
        let m = &verified.manifest;
        writeln!(
            out,
            "OK: {} signed by key {}; {} file{}{}; entry point {}; expires {}\nsha256 {}",
            m.version,
            verified.key_id,
            m.files.len(),
            if m.files.len() == 1 { "" } else { "s" },
            if a.full { " checked" } else { "" },
            m.entrypoint,
            picket_proto::time::format_ts(m.expires_at),
            verified.package_sha256
        )?;
    }
    out.flush()?;
    Ok(())
}

async fn publish(a: PublishArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let bytes = std::fs::read(&a.package).with_context(|| format!("reading {}", a.package.display()))?;
    let bar = indicatif::ProgressBar::new(bytes.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style);
    }
    if bytes.len() < (8 << 20) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let b = bar.clone();
    let progress: picket_client::Progress = Arc::new(move |n| b.set_position(n));
    let result = api.client.publish_release(bytes.into(), Some(progress)).await;
    bar.finish_and_clear();
    let view = result.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &view)?;
    } else {
        writeln!(
            out,
            "Published {} ({} bytes, sha256 {}); it is now the current release.",
            view.version, view.size, view.sha256
        )?;
    }
    out.flush()?;
    Ok(())
}

async fn list(args: ApiArgs) -> anyhow::Result<()> {
    let api = connect(&args)?;
    let list = api.client.list_releases().await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if args.json {
        output::write_json(&mut out, &list)?;
    } else {
        let mut t = Table::new(&["VERSION", "CURRENT", "SIZE", "SHA256", "KEY", "PUBLISHED", "EXPIRES"]);
        for r in &list.items {
            t.row(vec![
                r.version.to_string(),
                if r.current { "yes".into() } else { String::new() },
                r.size.to_string(),
                r.sha256.clone(),
                r.signing_key_id.clone(),
                picket_proto::time::format_ts(r.created_at),
                picket_proto::time::format_ts(r.expires_at),
            ]);
        }
        t.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `picket release ...`.
pub async fn run(cmd: ReleaseCmd) -> anyhow::Result<()> {
    match cmd {
        ReleaseCmd::Keygen(a) => keygen(a),
        ReleaseCmd::Sign(a) => sign(a),
        ReleaseCmd::Verify(a) => verify(a),
        ReleaseCmd::Publish(a) => publish(a).await,
        ReleaseCmd::List(a) => list(a).await,
    }
}
