//! The Threat intelligence page (`/threat-intel`): every published TI package, newest first
//! (version, the current one marked, how many sensors run it, indicator count, size, signing
//! key, publisher, publishing and signing times, digest), each with a Download link; how many
//! sensors run the current version, are behind it or have no TI yet (in the user's scope:
//! `App::ti_sensor_counts`); and the steps that bring a package to a sensor without automatic
//! TI updates (locally managed, or `auto_ti_updates` off): download, copy to the host,
//! `picket-sensor ti import PKG --state-dir D`.
//! `GET /threat-intel/{version}/download` streams the signed package file from the store as an
//! attachment named like the REST API's download (`picket-ti-<version>.tipkg`: not `.pkg`,
//! which browsers hold as a macOS installer until the user confirms). TI packages are
//! fleet-wide, so every signed-in user (viewer too) may see and download them; the sensor
//! counts are scoped like every sensor count. Reads are `picket_server::App`'s TI use cases
//! (`list_ti_packages`, `ti_sensor_counts`, `ti_package`, `read_ti_package`).

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use picket_proto::ti::TiPackageView;
use picket_proto::time::format_ts;
use picket_server::app::AppError;
use picket_server::app::ti::TiSensorCounts;

use crate::PortalState;
use crate::guard::Signed;
use crate::web::{Chrome, PortalError, PortalResult, render, short_time};

/// How many bytes one read from the store returns while streaming a download.
const PIECE: usize = 4 << 20;

/// A published TI package as a table row.
pub struct TiRow {
    version: i64,
    current: bool,
    /// How many sensors (in the user's scope) report this version.
    sensors: u64,
    indicators: u64,
    size: String,
    size_bytes: u64,
    signing_key_id: String,
    published_by: String,
    published: String,
    published_full: String,
    signed: String,
    signed_full: String,
    sha256: String,
    sha256_short: String,
    download: String,
    file_name: String,
}

/// The page.
#[derive(Template)]
#[template(path = "ti.html")]
struct TiPage {
    chrome: Chrome,
    packages: Vec<TiRow>,
    /// The current TI version, for the import steps (empty before the first publish).
    current_version: String,
    /// Its download's file name.
    current_file: String,
    /// Sensors running the current version.
    on_current: u64,
    /// Sensors reporting a lower version.
    behind: u64,
    /// Sensors that reported no TI version yet.
    without_ti: u64,
}

/// The file name a downloaded package gets (the REST API's too, and the `--out` the page
/// suggests for `picket ti download`).
fn file_name(version: i64) -> String {
    picket_proto::ti::ti_package_file_name(version)
}

/// Bytes for people (`31.5 MB`).
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn ti_row(p: &TiPackageView, counts: &TiSensorCounts) -> TiRow {
    TiRow {
        version: p.version,
        current: p.current,
        sensors: counts.by_version.get(&p.version).copied().unwrap_or(0),
        indicators: p.indicator_count,
        size: size_text(p.size),
        size_bytes: p.size,
        signing_key_id: p.signing_key_id.clone(),
        published_by: p.published_by.clone(),
        published: short_time(p.created_at),
        published_full: format_ts(p.created_at),
        signed: short_time(p.signed_at),
        signed_full: format_ts(p.signed_at),
        sha256_short: p.sha256.chars().take(12).collect(),
        sha256: p.sha256.clone(),
        download: format!("/threat-intel/{}/download", p.version),
        file_name: file_name(p.version),
    }
}

/// `GET /threat-intel` (any signed-in user).
pub async fn page(State(state): State<PortalState>, Signed(user): Signed) -> PortalResult<Response> {
    let viewer = user.viewer();
    let list = state.app.list_ti_packages(&viewer).await?;
    let counts = state.app.ti_sensor_counts(&viewer, list.current).await?;
    // The list comes by version ascending; newest first on the page.
    let packages: Vec<TiRow> = list.items.iter().rev().map(|p| ti_row(p, &counts)).collect();
    let (current_version, current_file) = match list.current {
        Some(v) => (v.to_string(), file_name(v)),
        None => (String::new(), String::new()),
    };
    let on_current = list.current.and_then(|v| counts.by_version.get(&v).copied()).unwrap_or(0);
    render(&TiPage {
        chrome: Chrome::of(&user, "ti"),
        packages,
        current_version,
        current_file,
        on_current,
        behind: counts.behind,
        without_ti: counts.without_ti,
    })
}

/// `GET /threat-intel/{version}/download` (any signed-in user): the signed package file,
/// streamed from the store in pieces. An unknown (or non-integer) version is 404.
pub async fn download(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(version): Path<String>,
) -> PortalResult<Response> {
    let not_found = || PortalError::App(AppError::NotFound("TI package"));
    let version: i64 = version.parse().map_err(|_| not_found())?;
    let p = state.app.ti_package(&user.viewer(), version).await?;
    let (size, sha256, app) = (p.size, p.sha256.clone(), state.app.clone());
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let app = app.clone();
        let sha256 = sha256.clone();
        async move {
            if offset >= size {
                return None;
            }
            let len = PIECE.min((size - offset) as usize);
            match app.read_ti_package(&sha256, offset, len).await {
                Ok(bytes) if !bytes.is_empty() => {
                    let next = offset + bytes.len() as u64;
                    Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), next))
                }
                // Ending early makes the client see a body shorter than Content-Length.
                Ok(_) => Some((Err(std::io::Error::other("TI package bytes missing from the store")), size)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), size)),
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", p.sha256)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file_name(p.version))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(file_name(42), "picket-ti-42.tipkg");
        assert_eq!(size_text(2_048), "2.0 kB");
        assert_eq!(size_text(12), "12 B");
    }
}
