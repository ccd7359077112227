//! `install` without `--package`: the updater activates the sensor's identity itself, so that
//! it can download the current release over mutual TLS (the control plane serves packages
//! only to activated sensors).
//!
//! It makes the identity the sensor would make (an ECDSA P-256 self-signed client certificate
//! valid two years, backdated an hour) at `<state-dir>/identity/cert.pem` and `key.pem` (0600),
//! and presents it with the one-time token to `POST /sensor/v1/activate`; the answer names the
//! current release. Everything else in the state dir stays the sensor's: the package's own
//! `activate`, run afterwards, finds that identity, activates it again (the control plane
//! answers a repeated activation by the certificate it pinned) and writes `sensor.json`.
//! An identity already in the state dir is reused, so an install that stopped (no release yet,
//! a refused package, a crash) resumes with the same pinned certificate and no new token.
//!
//! The certificate code mirrors `picket-sensor`'s `identity` module on purpose: the updater
//! must not depend on the sensor crate (it has to keep working when a sensor build is broken).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use picket_domain::Timestamp;
use picket_proto::ActivationFile;
use picket_proto::sensor::{ActivateRequest, ActivateResponse};
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::layout::{Shared, sync_dir};

/// How long a sensor certificate is valid (as `picket-sensor`'s).
const CERT_VALIDITY: Duration = Duration::from_secs(730 * 86400);
/// How far back its validity starts, for hosts whose clock runs ahead.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A new key and self-signed client certificate for `common_name`, as PEM (certificate, key).
fn generate(common_name: &str, now: Timestamp) -> anyhow::Result<(String, String)> {
    let odt = |t: Timestamp| {
        time::OffsetDateTime::from_unix_timestamp(t.0.div_euclid(1000)).context("the clock is out of range")
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("making the sensor's key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Picket sensor");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = odt(now.minus(BACKDATE))?;
    params.not_after = odt(now.plus(CERT_VALIDITY))?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("OS random numbers: {e}"))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    let cert = params.self_signed(&key).context("making the sensor's certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `path` through a synced temporary file and a rename, with `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a file path has a parent")?;
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))?;
    sync_dir(dir)
}

/// The identity in the state dir: the one found there (an earlier attempt), else a new one
/// written there (key first, 0600 in a 0700 dir, then the certificate). Returns (certificate,
/// key) PEM and whether it is new.
pub fn identity(shared: &Shared, common_name: &str, now: Timestamp) -> anyhow::Result<(String, String, bool)> {
    if let (Ok(cert), Ok(key)) = (std::fs::read_to_string(shared.cert()), std::fs::read_to_string(shared.key())) {
        return Ok((cert, key, false));
    }
    let dir = shared.state_dir.join("identity");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("protecting {}", dir.display()))?;
    }
    let (cert, key) = generate(common_name, now)?;
    write_file(&shared.key(), key.as_bytes(), 0o600)?;
    write_file(&shared.cert(), cert.as_bytes(), 0o644)?;
    Ok((cert, key, true))
}

/// The `{"error": {"code", "message"}}` of a refusal.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// `POST /sensor/v1/activate` with `client` (presenting the identity) and the file's token:
/// each URL in order, moving on only when one cannot be reached. Returns the answer and the
/// URL that gave it.
pub async fn activate(client: &reqwest::Client, file: &ActivationFile) -> anyhow::Result<(ActivateResponse, String)> {
    let req = ActivateRequest { sensor_id: file.sensor_id.clone(), activation_token: file.activation_token.clone() };
    let mut last = None;
    for base in &file.control_plane_urls {
        let base = base.trim_end_matches('/').to_string();
        let url = format!("{base}/sensor/v1/activate");
        let resp = match client.post(&url).json(&req).send().await {
            Ok(r) => r,
            Err(e) => {
                last = Some(anyhow::Error::new(e).context(format!("cannot reach the control plane at {url}")));
                continue;
            }
        };
        let status = resp.status();
        let body = resp.bytes().await.with_context(|| format!("reading the answer of {url}"))?;
        if status.is_success() {
            let answer: ActivateResponse =
                serde_json::from_slice(&body).with_context(|| format!("{url} answered something unexpected"))?;
            return Ok((answer, base));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => bail!(
                "the control plane refused the activation ({}, {}): {}",
                status.as_u16(),
                b.error.code,
                b.error.message
            ),
            Err(_) => bail!(
                "the control plane refused the activation ({}): {}",
                status.as_u16(),
                String::from_utf8_lossy(&body).chars().take(200).collect::<String>()
            ),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("the activation file names no control-plane URL")))
}
