//! The Sensors page: the contract's columns, filters the operator first chooses and then
//! fills (multi-select), sorting by column header, keyset paging, name search, the CSV export
//! of the current view, and the details pane of the selected row.
//!
//! The page's URL is its whole state, so a view can be bookmarked and shared: filter, `q`,
//! `sort`, `limit` and `cursor` are the REST API's own parameters (parsed by its parser);
//! `show` (which filters are shown), `selected` (the row in the details pane) and `notice`
//! (what just happened) are the portal's.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use picket_domain::{HealthStatus, Mode, SensorStatus, SensorType, ServiceStatus};
use picket_proto::SensorView;
use picket_proto::time::format_ts;
use picket_server::api::params::parse_list;
use picket_store::{Sort, SortKey};

use crate::PortalState;
use crate::details::{PaneView, current_url_pairs, pane_view};
use crate::guard::Signed;
use crate::web::{Chrome, PortalResult, health, label, render, short_time, type_label, url};

/// Parameters only the portal reads.
const PORTAL_ONLY: &[&str] = &["show", "selected", "issue", "notice"];

/// The filters, in DESIGN.md's order: parameter and label.
const FILTERS: &[(&str, &str)] = &[
    ("sensor_status", "Sensor status"),
    ("service_status", "Service status"),
    ("health_status", "Health status"),
    ("type", "Type"),
    ("domain", "Domain"),
    ("subscription", "Subscription"),
    ("site", "Site"),
    ("zone", "Zone"),
    ("tag", "Tag"),
    ("mode", "Mode"),
    ("version", "Version"),
    ("delayed_update", "Delayed update"),
];

/// Sort key of each column, in `CSV_COLUMNS` order.
const COLUMN_KEYS: [SortKey; 16] = [
    SortKey::Name,
    SortKey::Type,
    SortKey::Domain,
    SortKey::Subscription,
    SortKey::Site,
    SortKey::Zone,
    SortKey::Tags,
    SortKey::Mode,
    SortKey::ServiceStatus,
    SortKey::SensorStatus,
    SortKey::Version,
    SortKey::DelayedUpdate,
    SortKey::HealthStatus,
    SortKey::HealthIssues,
    SortKey::Created,
    SortKey::LastSeen,
];

/// The URL state of the page, split into the API's parameters and the portal's.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    /// Filters, `q`, `sort`, `limit`, `cursor`, as given.
    pub api: Vec<(String, String)>,
    /// Filters chosen to be shown.
    pub show: Vec<String>,
    /// Sensor in the details pane.
    pub selected: Option<String>,
    /// Health issue of the selected sensor shown in place of its details pane.
    pub issue: Option<String>,
    /// What just happened (a fixed code).
    pub notice: Option<String>,
}

impl ViewState {
    /// Splits raw query pairs.
    pub fn parse(q: Vec<(String, String)>) -> ViewState {
        let mut v = ViewState::default();
        for (k, val) in q {
            match k.as_str() {
                "show" => v.show.extend(val.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)),
                "selected" => v.selected = Some(val).filter(|s| !s.is_empty()),
                "issue" => v.issue = Some(val).filter(|s| !s.is_empty()),
                "notice" => v.notice = Some(val),
                _ => v.api.push((k, val)),
            }
        }
        v
    }

    /// The view without paging position or selection: filters, `q`, `sort`, `limit`, `show`.
    fn base(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.api.iter().filter(|(k, _)| k != "cursor").cloned().collect();
        out.extend(self.show.iter().map(|s| ("show".to_string(), s.clone())));
        out
    }

    /// The page URL with `sort` replaced.
    fn with_sort(&self, sort: &str) -> String {
        let mut pairs: Vec<(String, String)> = self.base().into_iter().filter(|(k, _)| k != "sort").collect();
        pairs.push(("sort".to_string(), sort.to_string()));
        url("/sensors", &pairs)
    }

    /// The page URL at `cursor`, with `selected` if given.
    fn at(&self, cursor: Option<&str>, selected: Option<&str>) -> String {
        let mut pairs = self.base();
        if let Some(c) = cursor {
            pairs.push(("cursor".to_string(), c.to_string()));
        }
        if let Some(s) = selected {
            pairs.push(("selected".to_string(), s.to_string()));
        }
        url("/sensors", &pairs)
    }

    /// The current page with sensor `id` selected (where an issue pane's Back goes).
    pub fn with_selected(&self, id: &str) -> String {
        self.at(self.cursor(), Some(id))
    }

    /// The current page with sensor `id` selected and its issue `issue` in the pane.
    pub fn with_issue(&self, id: &str, issue: &str) -> String {
        let mut pairs = self.base();
        if let Some(c) = self.cursor() {
            pairs.push(("cursor".to_string(), c.to_string()));
        }
        pairs.push(("selected".to_string(), id.to_string()));
        pairs.push(("issue".to_string(), issue.to_string()));
        url("/sensors", &pairs)
    }

    /// The current page without the selection (where the pane's Close goes).
    pub fn without_selection(&self) -> String {
        self.at(self.cursor(), None)
    }

    fn cursor(&self) -> Option<&str> {
        self.api.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.as_str())
    }

    /// Values given for a filter parameter (comma-separated or repeated).
    fn values(&self, param: &str) -> Vec<String> {
        self.api
            .iter()
            .filter(|(k, _)| k == param)
            .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
            .collect()
    }

    /// The export URL of this view: filters, `q` and `sort` only.
    fn export_href(&self) -> String {
        let pairs: Vec<(String, String)> =
            self.api.iter().filter(|(k, _)| k != "cursor" && k != "limit").cloned().collect();
        url("/sensors/export.csv", &pairs)
    }
}

/// One choice of a multi-select filter.
pub struct Opt {
    value: String,
    label: String,
    selected: bool,
}

/// One filter: shown or not, and its values.
pub struct FilterView {
    param: &'static str,
    label: &'static str,
    shown: bool,
    is_select: bool,
    options: Vec<Opt>,
    text: String,
}

/// A column header: a link that sorts by it (again: the other way).
pub struct Header {
    label: &'static str,
    href: String,
    aria_sort: &'static str,
    arrow: &'static str,
}

/// One table row.
pub struct RowView {
    id: String,
    name: String,
    href: String,
    pane_href: String,
    selected: bool,
    sensor_type: String,
    domain: String,
    subscription: String,
    site: String,
    zone: String,
    tags: String,
    mode: String,
    service_status: String,
    sensor_status: String,
    version: String,
    delayed_update: &'static str,
    health_class: &'static str,
    health_text: &'static str,
    health_issues: i64,
    created: String,
    created_full: String,
    last_seen: String,
    last_seen_full: String,
}

/// The Sensors page.
#[derive(Template)]
#[template(path = "sensors.html")]
struct SensorsPage {
    chrome: Chrome,
    q: String,
    hidden: Vec<(String, String)>,
    filters: Vec<FilterView>,
    any_shown: bool,
    headers: Vec<Header>,
    rows: Vec<RowView>,
    total: u64,
    next_href: Option<String>,
    first_href: Option<String>,
    export_href: String,
    notice: &'static str,
    pane: Option<PaneView>,
    ipane: Option<crate::health::IssuePane>,
}

fn fixed<T: Copy + std::fmt::Display>(all: &[T]) -> Vec<(String, String)> {
    all.iter().map(|v| (v.to_string(), label(&v.to_string()))).collect()
}

fn notice_text(code: Option<&str>) -> &'static str {
    match code {
        Some("saved") => "Changes saved.",
        Some("deleted") => "Sensor deleted.",
        Some("delayed_on") => "Delayed update enabled.",
        Some("delayed_off") => "Delayed update disabled.",
        code => crate::health::notice_text(code),
    }
}

/// A sensor as a table row.
fn row(s: &SensorView, view: &ViewState) -> RowView {
    let (health_class, health_text) = health(s.health_status);
    RowView {
        href: view.at(view.cursor(), Some(&s.id)),
        pane_href: format!("/sensors/{}/pane", crate::web::enc(&s.id)),
        selected: view.selected.as_deref() == Some(s.id.as_str()),
        id: s.id.clone(),
        name: s.name.clone(),
        sensor_type: type_label(s.sensor_type).to_string(),
        domain: s.domain.clone(),
        subscription: s.subscription.clone(),
        site: s.site.clone(),
        zone: s.zone.clone(),
        tags: s.tags.join(", "),
        mode: label(s.mode.as_str()),
        service_status: label(s.service_status.as_str()),
        sensor_status: label(s.sensor_status.as_str()),
        version: s.version.clone().unwrap_or_default(),
        delayed_update: if s.delayed_update { "Yes" } else { "No" },
        health_class,
        health_text,
        health_issues: s.health_issues,
        created: short_time(s.created_at),
        created_full: format_ts(s.created_at),
        last_seen: s.last_seen_at.map(short_time).unwrap_or_else(|| "never".to_string()),
        last_seen_full: s.last_seen_at.map(format_ts).unwrap_or_default(),
    }
}

/// `GET /sensors`.
pub async fn page(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let view = ViewState::parse(q);
    let req = parse_list(&view.api, true)?;
    let sort: Sort = req.sort;
    let viewer = user.viewer();
    let app = &state.app;
    let page = app.list_sensors(&viewer, req).await?;
    let zones: Vec<(String, String)> =
        app.list_zones(&viewer).await?.into_iter().map(|z| (z.name.clone(), z.name)).collect();
    let subs: Vec<(String, String)> =
        app.list_subscriptions(&viewer).await?.into_iter().map(|s| (s.name.clone(), s.name)).collect();
    let filters: Vec<FilterView> = FILTERS
        .iter()
        .map(|&(param, flabel)| {
            let chosen = view.values(param);
            let choices: Option<Vec<(String, String)>> = match param {
                "sensor_status" => Some(fixed(SensorStatus::ALL)),
                "service_status" => Some(fixed(ServiceStatus::ALL)),
                "health_status" => {
                    Some(HealthStatus::ALL.iter().map(|h| (h.to_string(), health(*h).1.to_string())).collect())
                }
                "type" => Some(SensorType::ALL.iter().map(|t| (t.to_string(), type_label(*t).to_string())).collect()),
                "mode" => Some(fixed(Mode::ALL)),
                "delayed_update" => Some(vec![("true".into(), "Yes".into()), ("false".into(), "No".into())]),
                "zone" => Some(zones.clone()),
                "subscription" => Some(subs.clone()),
                _ => None,
            };
            FilterView {
                param,
                label: flabel,
                shown: !chosen.is_empty() || view.show.iter().any(|s| s == param),
                is_select: choices.is_some(),
                options: choices
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(value, label)| Opt { selected: chosen.contains(&value), value, label })
                    .collect(),
                text: chosen.join(", "),
            }
        })
        .collect();
    let headers = picket_proto::CSV_COLUMNS
        .iter()
        .zip(COLUMN_KEYS)
        .map(|(&label, key)| {
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
    let rows = page.items.iter().map(|s| row(s, &view)).collect();
    let (pane, ipane) = match (view.selected.as_deref(), view.issue.as_deref()) {
        (Some(id), Some(issue)) => {
            let back = view.with_selected(id);
            (None, Some(crate::health::issue_pane(&state, &user, id, issue, back, "Back to sensor").await?))
        }
        (Some(id), None) => (Some(pane_view(&state, &user, id, &view).await?), None),
        _ => (None, None),
    };
    let mut hidden = Vec::new();
    for (k, v) in &view.api {
        if k == "sort" || k == "limit" {
            hidden.push((k.clone(), v.clone()));
        }
    }
    let q = view.api.iter().find(|(k, _)| k == "q").map(|(_, v)| v.clone()).unwrap_or_default();
    let page = SensorsPage {
        chrome: Chrome::of(&user, "sensors"),
        q,
        hidden,
        any_shown: filters.iter().any(|f| f.shown),
        filters,
        headers,
        rows,
        total: page.total,
        next_href: page.next_cursor.as_deref().map(|c| view.at(Some(c), None)),
        first_href: view.cursor().map(|_| view.at(None, None)),
        export_href: view.export_href(),
        notice: notice_text(view.notice.as_deref()),
        pane,
        ipane,
    };
    render(&page)
}

/// The live table body.
#[derive(Template)]
#[template(path = "sensor_rows.html")]
struct RowsFragment {
    rows: Vec<RowView>,
}

/// `GET /sensors/live/rows` (htmx polling): the table body of the page's current view (its
/// filters, sort, cursor and selection, read from `HX-Current-URL`).
pub async fn live_rows(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let view = ViewState::parse(current_url_pairs(&headers));
    let req = parse_list(&view.api, true)?;
    // The rows only: the live refresh leaves the page's total as rendered, so it does not
    // count every match again every 5 s per open page.
    let (items, _) = state.app.list_sensor_rows(&user.viewer(), req).await?;
    render(&RowsFragment { rows: items.iter().map(|s| row(s, &view)).collect() })
}

/// `GET /sensors/export.csv`: the CSV of the current filters, streamed by the same code as
/// `GET /api/v1/sensors/export.csv`.
pub async fn export(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let api: Vec<(String, String)> =
        q.into_iter().filter(|(k, _)| !PORTAL_ONLY.contains(&k.as_str()) && k != "cursor" && k != "limit").collect();
    let req = parse_list(&api, false)?;
    let batches = state.app.export_sensors(&user.viewer(), req.filter, req.sort).await?;
    Ok(picket_server::csv::response(batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn view_state_round_trips_through_urls() {
        let v = ViewState::parse(pairs(&[
            ("zone", "a,b"),
            ("show", "zone,type"),
            ("sort", "-name"),
            ("cursor", "c1"),
            ("selected", "id1"),
            ("notice", "saved"),
        ]));
        assert_eq!(v.values("zone"), ["a", "b"]);
        assert_eq!(v.show, ["zone", "type"]);
        assert_eq!(v.selected.as_deref(), Some("id1"));
        assert_eq!(v.with_sort("name"), "/sensors?zone=a%2Cb&show=zone&show=type&sort=name");
        assert_eq!(v.without_selection(), "/sensors?zone=a%2Cb&sort=-name&show=zone&show=type&cursor=c1");
        assert_eq!(v.export_href(), "/sensors/export.csv?zone=a%2Cb&sort=-name");
        assert!(parse_list(&v.api, true).is_ok(), "portal-only parameters never reach the API parser");
    }
}
