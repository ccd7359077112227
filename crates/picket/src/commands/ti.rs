//! `picket ti sign|verify|publish|list|download`: threat-intelligence packages. Signing uses
//! the release signing key (kept offline) and checks the indicators file first; publishing
//! uploads the package to the control plane, which verifies it again and offers it to
//! cloud-connected sensors with auto TI updates; downloading fetches one for
//! `picket-sensor ti import` on hosts without them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use picket_domain::Timestamp;
use picket_package::{PublicKey, SecretKey, TiBuildOptions, TiLimits};

use super::{connect, stdout};
use crate::cli::ApiArgs;
use crate::exit::CliError;
use crate::output::{self, Table};

/// `picket ti ...`.
#[derive(Debug, Subcommand)]
pub enum TiCmd {
    /// Check an indicators file and sign it into a TI package with a release signing key.
    Sign(SignArgs),
    /// Check a TI package's signature and indicators against public keys, and show it.
    Verify(VerifyArgs),
    /// Upload a TI package to the control plane, which verifies it and makes it current.
    Publish(PublishArgs),
    /// List published TI packages by version; the newest is current.
    List(ApiArgs),
    /// Download a published TI package (for picket-sensor ti import on the host).
    Download(DownloadArgs),
}

/// `picket ti sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key from `picket release keygen` (TI packages use the release keys).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The TI version: an integer above 0, above every published one.
    #[arg(long, value_name = "V", value_parser = clap::value_parser!(i64).range(1..))]
    pub version: i64,
    /// The indicators file: {"indicators": [{"type", "value", "severity", "description"}]}.
    #[arg(long, value_name = "INDICATORS.json")]
    pub input: PathBuf,
    /// Where to write the package (must not exist).
    #[arg(long, value_name = "PKG")]
    pub out: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `picket ti verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The TI package.
    pub package: PathBuf,
    /// A trusted public key file (KEY.pub; repeatable).
    #[arg(long = "key-pub", required = true, value_name = "FILE")]
    pub key_pub: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `picket ti publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The package from `picket ti sign`.
    pub package: PathBuf,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket ti download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The TI version to download.
    #[arg(value_name = "V")]
    pub version: i64,
    /// Where to write the package (must not exist).
    #[arg(long, value_name = "PKG")]
    pub out: PathBuf,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn sign(a: SignArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.key).with_context(|| format!("reading the key {}", a.key.display()))?;
    let key = SecretKey::from_pem(&text).with_context(|| format!("reading the key {}", a.key.display()))?;
    let indicators = std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let parsed = picket_ti::parse_indicators(&indicators)
        .map_err(|e| CliError::Usage(format!("{} is not a valid indicators file: {e}", a.input.display())))?;
    let opts = TiBuildOptions { version: a.version, indicator_count: parsed.len() as u64, signed_at: now() };
    let (sha256, size) = picket_package::write_ti(&indicators, &opts, &key, &a.out)?;
    let mut out = stdout();
    if a.json {
        output::write_json(
            &mut out,
            &serde_json::json!({
                "version": a.version,
                "indicator_count": parsed.len(),
                "sha256": sha256,
                "size": size,
                "key_id": key.public().key_id(),
                "out": a.out,
            }),
        )?;
    } else {
        writeln!(
            out,
            "Signed TI version {} ({} indicators; package {size} bytes) with key {} into {}\nsha256 {sha256}",
            a.version,
            parsed.len(),
            key.public().key_id(),
            a.out.display(),
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
    let v = picket_package::verify_ti_file(&a.package, &keys, &TiLimits::default())
        .with_context(|| format!("{} was refused", a.package.display()))?;
    let parsed = picket_ti::parse_indicators(&v.indicators_json)
        .with_context(|| format!("{} was refused: its indicators file is invalid", a.package.display()))?;
    let mut out = stdout();
    if a.json {
        output::write_json(
            &mut out,
            &serde_json::json!({
                "sha256": v.package_sha256,
                "size": v.package_size,
                "key_id": v.key_id,
                "manifest": v.manifest,
            }),
        )?;
    } else {
        writeln!(
            out,
            "OK: TI version {} signed by key {} at {}; {} indicators\nsha256 {}",
            v.version,
            v.key_id,
            picket_proto::time::format_ts(v.signed_at),
            parsed.len(),
            v.package_sha256
        )?;
    }
    out.flush()?;
    Ok(())
}

async fn publish(a: PublishArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let bytes = std::fs::read(&a.package).with_context(|| format!("reading {}", a.package.display()))?;
    let view = api.client.publish_ti_package(bytes.into()).await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &view)?;
    } else {
        writeln!(
            out,
            "Published TI version {} ({} indicators, {} bytes, sha256 {}); it is now the current TI package.",
            view.version, view.indicator_count, view.size, view.sha256
        )?;
    }
    out.flush()?;
    Ok(())
}

async fn list(args: ApiArgs) -> anyhow::Result<()> {
    let api = connect(&args)?;
    let list = api.client.list_ti_packages().await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if args.json {
        output::write_json(&mut out, &list)?;
    } else {
        let mut t = Table::new(&["VERSION", "CURRENT", "INDICATORS", "SIZE", "SHA256", "KEY", "PUBLISHED"]);
        for p in &list.items {
            t.row(vec![
                p.version.to_string(),
                if p.current { "yes".into() } else { String::new() },
                p.indicator_count.to_string(),
                p.size.to_string(),
                p.sha256.clone(),
                p.signing_key_id.clone(),
                picket_proto::time::format_ts(p.created_at),
            ]);
        }
        t.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

async fn download(a: DownloadArgs) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(&a.out).is_ok() {
        return Err(CliError::Usage(format!("{} already exists; choose another --out", a.out.display())).into());
    }
    let api = connect(&a.api)?;
    let bytes = api.client.download_ti_package(a.version).await.map_err(|e| api.explain(e))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&a.out)
        .with_context(|| format!("creating {}", a.out.display()))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", a.out.display()))?;
    let sha256 = picket_package::sha256_hex(&bytes);
    let mut out = stdout();
    if a.api.json {
        output::write_json(
            &mut out,
            &serde_json::json!({"version": a.version, "sha256": sha256, "size": bytes.len(), "out": a.out}),
        )?;
    } else {
        writeln!(
            out,
            "Downloaded TI version {} ({} bytes, sha256 {sha256}) to {}.\nOn the sensor host: picket-sensor ti import {} --state-dir DIR",
            a.version,
            bytes.len(),
            a.out.display(),
            a.out.display()
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `picket ti ...`.
pub async fn run(cmd: TiCmd) -> anyhow::Result<()> {
    match cmd {
        TiCmd::Sign(a) => sign(a),
        TiCmd::Verify(a) => verify(a),
        TiCmd::Publish(a) => publish(a).await,
        TiCmd::List(a) => list(a).await,
        TiCmd::Download(a) => download(a).await,
    }
}
