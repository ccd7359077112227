//! The Alerts page (`/alerts`): detection alerts uploaded by cloud-connected sensors in the
//! caller's scope, newest first, keyset paged, filtered by severity, sensor and time (the view
//! is in the URL, so it can be bookmarked and shared). The table body refreshes every 5 s by
//! htmx polling (`/alerts/live/rows`, which reads the view from `HX-Current-URL`). Reads go
//! through `picket_server::App::list_alerts`; the filters are parsed by the REST API's parser
//! (`parse_alert_list`), so the page and `GET /api/v1/alerts` agree.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use picket_domain::Severity;
use picket_proto::ti::AlertView;
use picket_proto::time::format_ts;
use picket_server::api::alerts::parse_alert_list;
use picket_server::auth::session::SessionUser;

use crate::PortalState;
use crate::details::current_url_pairs;
use crate::guard::Signed;
use crate::health::severity;
use crate::web::{Chrome, PortalResult, render, short_time, url};

/// Longest excerpt shown in the table (the full one is in the cell's title).
const EXCERPT_CHARS: usize = 120;

/// One alert in the table.
pub struct AlertRow {
    pub(crate) key: String,
    pub(crate) sensor_id: String,
    pub(crate) sensor_name: String,
    pub(crate) severity_class: &'static str,
    pub(crate) severity_text: &'static str,
    pub(crate) indicator_type: String,
    pub(crate) indicator_value: String,
    pub(crate) description: String,
    pub(crate) excerpt: String,
    pub(crate) excerpt_full: String,
    pub(crate) time: String,
    pub(crate) time_full: String,
}

fn alert_row(a: &AlertView) -> AlertRow {
    let (severity_class, severity_text) = match a.severity.parse::<Severity>() {
        Ok(s) => severity(s),
        Err(_) => ("health-low", "Unknown"),
    };
    let mut excerpt: String = a.excerpt.chars().take(EXCERPT_CHARS).collect();
    if excerpt.len() < a.excerpt.len() {
        excerpt.push('…');
    }
    AlertRow {
        key: format!("{}-{}", a.sensor_id, a.id),
        sensor_id: a.sensor_id.clone(),
        sensor_name: a.sensor_name.clone(),
        severity_class,
        severity_text,
        indicator_type: a.indicator.kind.clone(),
        indicator_value: a.indicator.value.clone(),
        description: a.description.clone().unwrap_or_default(),
        excerpt,
        excerpt_full: a.excerpt.clone(),
        time: short_time(a.time),
        time_full: format_ts(a.time),
    }
}

/// The view of the page in its URL: the REST API's parameters.
#[derive(Debug, Clone, Default)]
struct AlertsView {
    api: Vec<(String, String)>,
}

impl AlertsView {
    fn parse(q: Vec<(String, String)>) -> AlertsView {
        // Empty form fields (an unset sensor or time) are not filters.
        AlertsView { api: q.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect() }
    }

    fn values(&self, param: &str) -> Vec<String> {
        self.api
            .iter()
            .filter(|(k, _)| k == param)
            .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
            .collect()
    }

    fn one(&self, param: &str) -> String {
        self.api.iter().find(|(k, _)| k == param).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// The page at `cursor` (filters kept).
    fn at(&self, cursor: Option<&str>) -> String {
        let mut pairs: Vec<(String, String)> = self.api.iter().filter(|(k, _)| k != "cursor").cloned().collect();
        if let Some(c) = cursor {
            pairs.push(("cursor".to_string(), c.to_string()));
        }
        url("/alerts", &pairs)
    }

    fn cursor(&self) -> Option<&str> {
        self.api.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.as_str())
    }
}

/// One severity choice.
pub struct SeverityOpt {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// The page.
#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    severities: Vec<SeverityOpt>,
    sensor_id: String,
    since: String,
    rows: Vec<AlertRow>,
    total: u64,
    next_href: Option<String>,
    first_href: Option<String>,
}

/// The live table body.
#[derive(Template)]
#[template(path = "alert_rows.html")]
struct RowsFragment {
    rows: Vec<AlertRow>,
}

async fn rows_of(
    state: &PortalState,
    user: &SessionUser,
    view: &AlertsView,
) -> PortalResult<(Vec<AlertRow>, u64, Option<String>)> {
    let req = parse_alert_list(&view.api)?;
    let page = state.app.list_alerts(&user.viewer(), req).await?;
    Ok((page.items.iter().map(alert_row).collect(), page.total, page.next_cursor))
}

/// `GET /alerts`.
pub async fn page(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let view = AlertsView::parse(q);
    let (rows, total, next) = rows_of(&state, &user, &view).await?;
    let chosen = view.values("severity");
    let severities = Severity::ALL
        .iter()
        .map(|s| SeverityOpt {
            value: s.as_str(),
            label: severity(*s).1,
            selected: chosen.iter().any(|c| c == s.as_str()),
        })
        .collect();
    let page = AlertsPage {
        chrome: Chrome::of(&user, "alerts"),
        severities,
        sensor_id: view.one("sensor_id"),
        since: view.one("since"),
        rows,
        total,
        next_href: next.as_deref().map(|c| view.at(Some(c))),
        first_href: view.cursor().map(|_| view.at(None)),
    };
    render(&page)
}

/// `GET /alerts/live/rows` (htmx polling): the table body of the page's current view.
pub async fn live_rows(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let view = AlertsView::parse(current_url_pairs(&headers));
    let (rows, _, _) = rows_of(&state, &user, &view).await?;
    render(&RowsFragment { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_keeps_filters_and_drops_empty_fields() {
        let v = AlertsView::parse(
            [("severity", "high"), ("sensor_id", ""), ("since", "2026-11-22T10:00:00Z"), ("cursor", "c")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        );
        assert_eq!(v.at(None), "/alerts?severity=high&since=2026-11-22T10%3A00%3A00Z");
        assert_eq!(v.at(Some("d")), "/alerts?severity=high&since=2026-11-22T10%3A00%3A00Z&cursor=d");
        assert!(parse_alert_list(&v.api).is_ok(), "the page's parameters are the API's");
        assert_eq!(v.one("sensor_id"), "");
    }
}
