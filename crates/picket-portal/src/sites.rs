//! Sites and Sensors: how many sensors are onboarded, cloud connected and locally managed,
//! and a server-paged table of every sensor's connection to the control plane (name,
//! connection type, zone, version, connection status, last seen), each row with a `...` menu
//! (a `<details>` disclosure, so it works by keyboard without script): Edit (name, zone, or a
//! new zone), Delete (after a confirmation saying what it stops) and Reactivate (the steps).
//! Export downloads the CSV of the same sensors.
//!
//! The URL holds the view (`q`, `sort`, `limit`, `cursor`: the REST API's parameters, parsed
//! by its parser). The counts and the table body refresh every few seconds through
//! `/sites/live/...` fragments, which read the view from htmx's `HX-Current-URL`.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use picket_domain::{Mode, SensorStatus};
use picket_proto::time::format_ts;
use picket_proto::{CreateNamed, PatchSensorRequest, SensorView};
use picket_server::api::params::parse_list;
use picket_server::app::AppError;
use picket_server::auth::session::SessionUser;
use picket_store::{Sort, SortKey};

use crate::PortalState;
use crate::details::{DeleteFrom, delete_confirmation};
use crate::guard::{Signed, check_form};
use crate::web::{Chrome, PortalError, PortalResult, enc, field, label, render, render_status, short_time, url};

/// Columns: label and sort key.
const COLUMNS: [(&str, SortKey); 6] = [
    ("Sensor", SortKey::Name),
    ("Connection type", SortKey::Mode),
    ("Zone", SortKey::Zone),
    ("Version", SortKey::Version),
    ("Connection status", SortKey::SensorStatus),
    ("Last seen", SortKey::LastSeen),
];

/// The connection status to the control plane, as people say it: CSS class and text.
pub fn connection(s: SensorStatus) -> (&'static str, &'static str) {
    match s {
        SensorStatus::NotApplicable => ("conn-na", "Not applicable (locally managed)"),
        SensorStatus::PendingActivation => ("conn-pending", "Waiting for activation"),
        SensorStatus::Unreachable => ("conn-bad", "Unreachable (host decommissioned)"),
        SensorStatus::Disconnected => ("conn-bad", "Disconnected"),
        SensorStatus::StartFailed => ("conn-warn", "Connected, failed to start"),
        SensorStatus::UpdateFailed => ("conn-warn", "Connected, update failed"),
        SensorStatus::Updating => ("conn-ok", "Connected, updating"),
        SensorStatus::NotConfigured => ("conn-warn", "Connected, not configured"),
        SensorStatus::Syncing => ("conn-ok", "Connected, syncing configuration"),
        SensorStatus::Outdated => ("conn-warn", "Connected, version outdated"),
        SensorStatus::UpToDate => ("conn-ok", "Connected"),
    }
}

/// The view in the URL: the API's list parameters and the notice.
#[derive(Debug, Clone, Default)]
struct SitesView {
    api: Vec<(String, String)>,
    notice: Option<String>,
}

impl SitesView {
    fn parse(q: Vec<(String, String)>) -> SitesView {
        let mut v = SitesView::default();
        for (k, val) in q {
            match k.as_str() {
                "notice" => v.notice = Some(val),
                "q" | "sort" | "limit" | "cursor" => v.api.push((k, val)),
                _ => {}
            }
        }
        v
    }

    /// From the page URL htmx reports (`HX-Current-URL`) for a live fragment.
    fn from_headers(headers: &HeaderMap) -> SitesView {
        SitesView::parse(crate::details::current_url_pairs(headers))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.api.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn without(&self, drop: &[&str]) -> Vec<(String, String)> {
        self.api.iter().filter(|(k, _)| !drop.contains(&k.as_str())).cloned().collect()
    }

    fn with_sort(&self, sort: &str) -> String {
        let mut pairs = self.without(&["sort", "cursor"]);
        pairs.push(("sort".to_string(), sort.to_string()));
        url("/sites", &pairs)
    }

    fn at(&self, cursor: Option<&str>) -> String {
        let mut pairs = self.without(&["cursor"]);
        if let Some(c) = cursor {
            pairs.push(("cursor".to_string(), c.to_string()));
        }
        url("/sites", &pairs)
    }

    fn export_href(&self) -> String {
        url("/sensors/export.csv", &self.without(&["cursor", "limit"]))
    }
}

/// A column header that sorts.
pub struct Header {
    label: &'static str,
    href: String,
    aria_sort: &'static str,
    arrow: &'static str,
}

/// One row.
pub struct SiteRow {
    id: String,
    name: String,
    mode: String,
    zone: String,
    version: String,
    conn_class: &'static str,
    conn_text: &'static str,
    last_seen: String,
    last_seen_full: String,
}

/// The three counts.
pub struct Counts {
    onboarded: u64,
    cloud_connected: u64,
    locally_managed: u64,
}

/// The page.
#[derive(Template)]
#[template(path = "sites.html")]
struct SitesPage {
    chrome: Chrome,
    counts: Counts,
    q: String,
    hidden: Vec<(String, String)>,
    headers: Vec<Header>,
    rows: Vec<SiteRow>,
    can_operate: bool,
    total: u64,
    next_href: Option<String>,
    first_href: Option<String>,
    export_href: String,
    notice: &'static str,
}

/// The live table body.
#[derive(Template)]
#[template(path = "sites_rows.html")]
struct RowsFragment {
    rows: Vec<SiteRow>,
    can_operate: bool,
}

/// The live counts.
#[derive(Template)]
#[template(path = "sites_counts.html")]
struct CountsFragment {
    counts: Counts,
}

fn notice_text(code: Option<&str>) -> &'static str {
    match code {
        Some("saved") => "Changes saved.",
        Some("deleted") => "Sensor deleted.",
        _ => "",
    }
}

fn site_row(s: &SensorView) -> SiteRow {
    let (conn_class, conn_text) = connection(s.sensor_status);
    SiteRow {
        id: s.id.clone(),
        name: s.name.clone(),
        mode: label(s.mode.as_str()),
        zone: s.zone.clone(),
        version: s.version.clone().unwrap_or_else(|| "unknown".to_string()),
        conn_class,
        conn_text,
        last_seen: s.last_seen_at.map(short_time).unwrap_or_else(|| "never".to_string()),
        last_seen_full: s.last_seen_at.map(format_ts).unwrap_or_default(),
    }
}

async fn counts(state: &PortalState, user: &SessionUser) -> PortalResult<Counts> {
    let s = state.app.summary(&user.viewer()).await?;
    Ok(Counts { onboarded: s.total, cloud_connected: s.cloud_connected, locally_managed: s.locally_managed })
}

/// `GET /sites`.
pub async fn page(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let view = SitesView::parse(q);
    let req = parse_list(&view.api, true)?;
    let sort: Sort = req.sort;
    let page = state.app.list_sensors(&user.viewer(), req).await?;
    let headers = COLUMNS
        .iter()
        .map(|&(label, key)| {
            let current = sort.key == key;
            let (aria_sort, arrow) = match (current, sort.descending) {
                (true, false) => ("ascending", " ▲"),
                (true, true) => ("descending", " ▼"),
                _ => ("none", ""),
            };
            let next =
                if current && !sort.descending { format!("-{}", key.as_str()) } else { key.as_str().to_string() };
            Header { label, href: view.with_sort(&next), aria_sort, arrow }
        })
        .collect();
    let hidden = view.api.iter().filter(|(k, _)| k == "sort" || k == "limit").cloned().collect();
    let page = SitesPage {
        chrome: Chrome::of(&user, "sites"),
        counts: counts(&state, &user).await?,
        q: view.get("q").unwrap_or_default().to_string(),
        hidden,
        headers,
        rows: page.items.iter().map(site_row).collect(),
        can_operate: user.operator().is_some(),
        total: page.total,
        next_href: page.next_cursor.as_deref().map(|c| view.at(Some(c))),
        first_href: view.get("cursor").map(|_| view.at(None)),
        export_href: view.export_href(),
        notice: notice_text(view.notice.as_deref()),
    };
    render(&page)
}

/// `GET /sites/live/rows` (htmx polling): the table body of the page's current view.
pub async fn live_rows(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let view = SitesView::from_headers(&headers);
    let req = parse_list(&view.api, true)?;
    // The rows only: the live refresh leaves the page's total as rendered, so it does not
    // count every match again every 5 s per open page (like the Sensors page's live rows).
    let (items, _) = state.app.list_sensor_rows(&user.viewer(), req).await?;
    render(&RowsFragment { rows: items.iter().map(site_row).collect(), can_operate: user.operator().is_some() })
}

/// `GET /sites/live/counts` (htmx polling).
pub async fn live_counts(State(state): State<PortalState>, Signed(user): Signed) -> PortalResult<Response> {
    render(&CountsFragment { counts: counts(&state, &user).await? })
}

// ---- Edit ----

/// The edit form: name and zone, or a new zone.
#[derive(Template)]
#[template(path = "site_edit.html")]
struct EditPage {
    chrome: Chrome,
    id: String,
    original_name: String,
    name: String,
    zones: Vec<(String, bool)>,
    new_zone: String,
    mode_note: &'static str,
    error: String,
}

async fn edit_page(
    state: &PortalState,
    user: &SessionUser,
    s: &SensorView,
    name: String,
    zone: &str,
    new_zone: String,
    error: String,
) -> PortalResult<EditPage> {
    let zones =
        state.app.list_zones(&user.viewer()).await?.into_iter().map(|z| (z.name.clone(), z.name == zone)).collect();
    Ok(EditPage {
        chrome: Chrome::of(user, "sites"),
        id: s.id.clone(),
        original_name: s.name.clone(),
        name,
        zones,
        new_zone,
        mode_note: match s.mode {
            Mode::CloudConnected => "A cloud-connected sensor's name is set here only.",
            Mode::LocallyManaged => {
                "A locally managed sensor may also be renamed on its host (picket-sensor rename NAME); this control plane keeps the name set here."
            }
        },
        error,
    })
}

fn operator(user: &SessionUser) -> PortalResult<picket_server::auth::Operator> {
    user.operator().ok_or_else(PortalError::read_only)
}

/// `GET /sites/{id}/edit`.
pub async fn edit_form(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    operator(&user)?;
    let s = state.app.get_sensor(&user.viewer(), &id).await?;
    render(&edit_page(&state, &user, &s, s.name.clone(), &s.zone, String::new(), String::new()).await?)
}

/// `POST /sites/{id}/edit`: name, zone, and `new_zone` (created first, then used) if given.
pub async fn edit(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = operator(&user)?;
    let s = state.app.get_sensor(&user.viewer(), &id).await?;
    let name = field(&f, "name").unwrap_or_default().trim().to_string();
    let zone = field(&f, "zone").unwrap_or_default().trim().to_string();
    let new_zone = field(&f, "new_zone").unwrap_or_default().trim().to_string();
    let zone = if new_zone.is_empty() {
        zone.clone()
    } else {
        let req = CreateNamed { name: new_zone.clone(), description: String::new() };
        match state.app.create_zone(&who, req).await {
            Ok(z) => z.name,
            Err(e @ (AppError::Validation(_) | AppError::Conflict(_))) => {
                return refuse(&state, &user, &s, name, &zone, new_zone, e).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let patch =
        PatchSensorRequest { name: Some(name.clone()), zone: Some(zone.clone()), ..PatchSensorRequest::default() };
    match state.app.patch_sensor(&who, &id, patch).await {
        Ok(_) => Ok(Redirect::to("/sites?notice=saved").into_response()),
        Err(e @ (AppError::Validation(_) | AppError::Conflict(_))) => {
            refuse(&state, &user, &s, name, &zone, String::new(), e).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The edit form again, with what was typed and why it was refused.
async fn refuse(
    state: &PortalState,
    user: &SessionUser,
    s: &SensorView,
    name: String,
    zone: &str,
    new_zone: String,
    e: AppError,
) -> PortalResult<Response> {
    let status = match e {
        AppError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let page = edit_page(state, user, s, name, zone, new_zone, e.to_string()).await?;
    render_status(status, &page)
}

// ---- Delete ----

/// `GET /sites/{id}/delete[?then=onboard]`: the confirmation (from Reactivate, the delete is
/// followed by the onboarding form).
pub async fn confirm_delete(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let from = if field(&q, "then") == Some("onboard") { DeleteFrom::Reactivate } else { DeleteFrom::Sites };
    delete_confirmation(&state, &user, &id, from).await
}

/// `POST /sites/{id}/delete`.
pub async fn delete(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = operator(&user)?;
    let s = state.app.get_sensor(&user.viewer(), &id).await?;
    state.app.delete_sensor(&who, &id).await?;
    if field(&f, "then") == Some("onboard") {
        return Ok(Redirect::to(&onboard_again_href(&s)).into_response());
    }
    Ok(Redirect::to("/sites?notice=deleted").into_response())
}

// ---- Reactivate ----

/// The steps to reactivate a sensor.
#[derive(Template)]
#[template(path = "reactivate.html")]
struct ReactivatePage {
    chrome: Chrome,
    id: String,
    name: String,
    mode: String,
    onboard_href: String,
    file_name: String,
}

/// The onboarding form prefilled with a sensor's settings.
fn onboard_again_href(s: &SensorView) -> String {
    let prefill = vec![
        ("name".to_string(), s.name.clone()),
        ("type".to_string(), s.sensor_type.to_string()),
        ("domain".to_string(), s.domain.clone()),
        ("subscription".to_string(), s.subscription.clone()),
        ("site".to_string(), s.site.clone()),
        ("zone".to_string(), s.zone.clone()),
        ("tags".to_string(), s.tags.join(", ")),
        ("mode".to_string(), s.mode.to_string()),
    ];
    url("/sensors/onboard", &prefill)
}

/// `GET /sites/{id}/reactivate`: why and how (delete, onboard again, new activation file,
/// `picket-sensor reactivate --activation-file F`), with links to each step.
pub async fn reactivate(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    operator(&user)?;
    let s = state.app.get_sensor(&user.viewer(), &id).await?;
    let page = ReactivatePage {
        chrome: Chrome::of(&user, "sites"),
        onboard_href: onboard_again_href(&s),
        file_name: format!("{}.activation.json", s.name),
        mode: label(s.mode.as_str()),
        id: enc(&s.id),
        name: s.name,
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_as_a_connection() {
        for s in SensorStatus::ALL {
            let (class, text) = connection(*s);
            assert!(class.starts_with("conn-") && !text.is_empty(), "{s}");
        }
        assert_eq!(connection(SensorStatus::UpToDate).1, "Connected");
    }

    #[test]
    fn view_urls_keep_the_view() {
        let v = SitesView::parse(
            [("q", "dc"), ("sort", "-zone"), ("cursor", "c"), ("notice", "saved"), ("show", "x")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        );
        assert_eq!(v.with_sort("name"), "/sites?q=dc&sort=name");
        assert_eq!(v.at(None), "/sites?q=dc&sort=-zone");
        assert_eq!(v.export_href(), "/sensors/export.csv?q=dc&sort=-zone");
    }
}
