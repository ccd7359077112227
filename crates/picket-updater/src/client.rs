//! Downloads over mutual TLS with the sensor's identity: reqwest with rustls, trusting only
//! the CA from the activation (no built-in roots), like `picket-sensor`'s client; resumable
//! with `Range`, size-capped.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Why a download stopped.
#[derive(Debug)]
pub enum FetchError {
    /// The file is over the cap.
    TooLarge,
    /// Anything else (retried later).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for FetchError {
    fn from(e: anyhow::Error) -> FetchError {
        FetchError::Other(e)
    }
}

/// A client trusting only `ca_pem`, presenting `cert_pem`/`key_pem`.
pub fn mtls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("the CA certificate")?;
    let mut pem = cert_pem.as_bytes().to_vec();
    pem.push(b'\n');
    pem.extend_from_slice(key_pem.as_bytes());
    let identity = reqwest::Identity::from_pem(&pem).context("the sensor's certificate")?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("picket-updater/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Downloads `url` into `part`, continuing after the bytes already there; at most `cap` bytes.
pub async fn fetch_resumable(client: &reqwest::Client, url: &str, part: &Path, cap: u64) -> Result<(), FetchError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > cap {
        return Err(FetchError::TooLarge);
    }
    let mut req = client.get(url);
    if have > 0 {
        tracing::info!(url, from = have, "resuming a partial download with Range");
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    if status == 206 {
        let range = resp.headers().get(reqwest::header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !range.starts_with(&format!("bytes {have}-")) {
            let _ = std::fs::remove_file(part);
            return Err(FetchError::Other(anyhow::anyhow!(
                "the server resumed at {range:?}, not at byte {have}; restarting the download"
            )));
        }
    }
    let mut file = match status {
        206 => std::fs::OpenOptions::new().append(true).open(part).context("opening the partial download")?,
        200 => std::fs::File::create(part).context("creating the download")?,
        416 => {
            // The partial file is not a prefix of this package (or is complete but unrenamed).
            let _ = std::fs::remove_file(part);
            return Err(FetchError::Other(anyhow::anyhow!("range not satisfiable; restarting the download")));
        }
        s => {
            let body = resp.text().await.unwrap_or_default();
            return Err(FetchError::Other(anyhow::anyhow!("GET {url}: HTTP {s}: {body}")));
        }
    };
    let mut written = if status == 206 { have } else { 0 };
    if let Some(len) = resp.content_length()
        && written + len > cap
    {
        return Err(FetchError::TooLarge);
    }
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("reading {url}"))? {
        written += chunk.len() as u64;
        if written > cap {
            return Err(FetchError::TooLarge);
        }
        file.write_all(&chunk).context("writing the download")?;
    }
    file.sync_all().context("syncing the download")?;
    Ok(())
}
