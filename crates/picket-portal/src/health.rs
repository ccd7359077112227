//! Health issues: the Health issues page (every sensor's issues in the caller's scope,
//! filtered by severity, status and kind, newest first, keyset paged; the view is in the
//! URL), the issue pane (detail, recommendation, Close or Reopen for operators), shown beside
//! the Health issues table or in place of a sensor's details pane, and the issue list of a
//! sensor's details pane. Reads and changes are `picket_server::App`'s health use cases; the
//! page's filters are parsed by the REST API's parser (`parse_issue_list`); `issue`, `sensor`
//! (the issue in the pane) and `notice` are the portal's own parameters.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use picket_domain::Severity;
use picket_domain::issues::{HealthIssueKind, IssueStatus};
use picket_proto::health::HealthIssueView;
use picket_proto::time::format_ts;
use picket_server::api::health::parse_issue_list;
use picket_server::app::health::IssueListRequest;
use picket_server::app::{AppError, MAX_LIMIT};
use picket_server::auth::session::SessionUser;

use crate::PortalState;
use crate::details::current_url_pairs;
use crate::guard::{Signed, check_form};
use crate::web::{Chrome, PortalError, PortalResult, enc, field, label, render, safe_next, short_time, url};

/// The colour class and text of a severity (colour is never the only signal).
pub fn severity(s: Severity) -> (&'static str, &'static str) {
    match s {
        Severity::Low => ("health-low", "Low"),
        Severity::Medium => ("health-medium", "Medium"),
        Severity::High => ("health-high", "High"),
    }
}

/// One issue in a list.
pub struct IssueRow {
    pub(crate) id: String,
    pub(crate) sensor_id: String,
    pub(crate) sensor_name: String,
    pub(crate) title: String,
    pub(crate) kind: String,
    pub(crate) severity_class: &'static str,
    pub(crate) severity_text: &'static str,
    pub(crate) open: bool,
    pub(crate) opened: String,
    pub(crate) opened_full: String,
    pub(crate) closed: String,
    /// Where selecting it goes (a page with the issue pane).
    pub(crate) href: String,
    /// The pane fragment (htmx).
    pub(crate) pane_href: String,
    pub(crate) selected: bool,
}

/// The issue pane.
pub struct IssuePane {
    pub(crate) id: String,
    pub(crate) sensor_id: String,
    pub(crate) sensor_name: String,
    pub(crate) title: String,
    pub(crate) kind: String,
    pub(crate) severity_class: &'static str,
    pub(crate) severity_text: &'static str,
    pub(crate) open: bool,
    pub(crate) opened: String,
    pub(crate) closed: String,
    pub(crate) closed_by: String,
    pub(crate) detail: String,
    pub(crate) recommendation: String,
    pub(crate) can_operate: bool,
    pub(crate) csrf: String,
    /// Where Close/Reopen return, and where the pane's Back goes.
    pub(crate) back: String,
    pub(crate) back_label: &'static str,
}

/// An issue as a list row; `href` and `pane_href` as given.
pub fn issue_row(i: &HealthIssueView, href: String, selected: bool) -> IssueRow {
    let (severity_class, severity_text) = severity(i.severity);
    IssueRow {
        pane_href: format!("/sensors/{}/issues/{}/pane", enc(&i.sensor_id), enc(&i.id)),
        href,
        selected,
        id: i.id.clone(),
        sensor_id: i.sensor_id.clone(),
        sensor_name: i.sensor_name.clone(),
        title: i.title.clone(),
        kind: label(i.kind.as_str()),
        severity_class,
        severity_text,
        open: i.status == IssueStatus::Open,
        opened: short_time(i.opened_at),
        opened_full: format_ts(i.opened_at),
        closed: i.closed_at.map(short_time).unwrap_or_default(),
    }
}

/// The issues of a sensor, open ones first, newest first within each.
pub async fn sensor_issues(
    state: &PortalState,
    user: &SessionUser,
    sensor_id: &str,
) -> PortalResult<Vec<HealthIssueView>> {
    let req = IssueListRequest { limit: MAX_LIMIT, ..IssueListRequest::default() };
    let mut items = state.app.sensor_health_issues(&user.viewer(), sensor_id, req).await?.items;
    items.sort_by_key(|i| i.status != IssueStatus::Open);
    Ok(items)
}

/// The pane of issue `issue_id` of sensor `sensor_id`; `back` is where its forms return.
pub async fn issue_pane(
    state: &PortalState,
    user: &SessionUser,
    sensor_id: &str,
    issue_id: &str,
    back: String,
    back_label: &'static str,
) -> PortalResult<IssuePane> {
    let issue = sensor_issues(state, user, sensor_id)
        .await?
        .into_iter()
        .find(|i| i.id == issue_id)
        .ok_or(PortalError::App(AppError::NotFound("health issue")))?;
    let (severity_class, severity_text) = severity(issue.severity);
    Ok(IssuePane {
        id: issue.id,
        sensor_id: issue.sensor_id,
        sensor_name: issue.sensor_name,
        title: issue.title,
        kind: label(issue.kind.as_str()),
        severity_class,
        severity_text,
        open: issue.status == IssueStatus::Open,
        opened: format!("{} UTC", short_time(issue.opened_at)),
        closed: issue.closed_at.map(|t| format!("{} UTC", short_time(t))).unwrap_or_default(),
        closed_by: issue.closed_by.unwrap_or_default(),
        detail: issue.detail,
        recommendation: issue.recommendation,
        can_operate: user.operator().is_some(),
        csrf: user.csrf_token().to_string(),
        back,
        back_label,
    })
}

/// The view of the Health issues page in its URL.
#[derive(Debug, Clone, Default)]
struct IssuesView {
    api: Vec<(String, String)>,
    issue: Option<String>,
    sensor: Option<String>,
    notice: Option<String>,
}

impl IssuesView {
    fn parse(q: Vec<(String, String)>) -> IssuesView {
        let mut v = IssuesView::default();
        for (k, val) in q {
            match k.as_str() {
                "issue" => v.issue = Some(val).filter(|s| !s.is_empty()),
                "sensor" => v.sensor = Some(val).filter(|s| !s.is_empty()),
                "notice" => v.notice = Some(val),
                _ => v.api.push((k, val)),
            }
        }
        v
    }

    fn values(&self, param: &str) -> Vec<String> {
        self.api
            .iter()
            .filter(|(k, _)| k == param)
            .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
            .collect()
    }

    /// The page at `cursor` (filters kept), with an issue selected if given.
    fn at(&self, cursor: Option<&str>, selected: Option<(&str, &str)>) -> String {
        let mut pairs: Vec<(String, String)> = self.api.iter().filter(|(k, _)| k != "cursor").cloned().collect();
        if let Some(c) = cursor {
            pairs.push(("cursor".to_string(), c.to_string()));
        }
        if let Some((issue, sensor)) = selected {
            pairs.push(("issue".to_string(), issue.to_string()));
            pairs.push(("sensor".to_string(), sensor.to_string()));
        }
        url("/health-issues", &pairs)
    }

    fn cursor(&self) -> Option<&str> {
        self.api.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.as_str())
    }

    fn without_selection(&self) -> String {
        self.at(self.cursor(), None)
    }
}

/// One choice of a filter.
pub struct Opt {
    value: String,
    label: String,
    selected: bool,
}

/// A multi-select filter.
pub struct FilterView {
    param: &'static str,
    label: &'static str,
    options: Vec<Opt>,
}

/// The page.
#[derive(Template)]
#[template(path = "health_issues.html")]
struct IssuesPage {
    chrome: Chrome,
    filters: Vec<FilterView>,
    rows: Vec<IssueRow>,
    total: u64,
    next_href: Option<String>,
    first_href: Option<String>,
    notice: &'static str,
    ipane: Option<IssuePane>,
}

/// The live table body.
#[derive(Template)]
#[template(path = "issue_rows.html")]
struct RowsFragment {
    rows: Vec<IssueRow>,
}

/// The issue pane alone (htmx).
#[derive(Template)]
#[template(path = "issue_pane_fragment.html")]
struct PaneFragment {
    ipane: IssuePane,
}

/// What a notice code says.
pub fn notice_text(code: Option<&str>) -> &'static str {
    match code {
        Some("issue_closed") => "Health issue closed.",
        Some("issue_reopened") => "Health issue reopened.",
        _ => "",
    }
}

fn options<T: Copy + std::fmt::Display>(all: &[T], chosen: &[String], text: impl Fn(T) -> String) -> Vec<Opt> {
    all.iter()
        .map(|v| {
            let value = v.to_string();
            Opt { selected: chosen.contains(&value), label: text(*v), value }
        })
        .collect()
}

async fn rows_of(
    state: &PortalState,
    user: &SessionUser,
    view: &IssuesView,
) -> PortalResult<(Vec<IssueRow>, u64, Option<String>)> {
    let req = parse_issue_list(&view.api, true)?;
    let page = state.app.list_health_issues(&user.viewer(), req).await?;
    let rows = page
        .items
        .iter()
        .map(|i| {
            let selected = view.issue.as_deref() == Some(i.id.as_str());
            issue_row(i, view.at(view.cursor(), Some((&i.id, &i.sensor_id))), selected)
        })
        .collect();
    Ok((rows, page.total, page.next_cursor))
}

/// `GET /health-issues`.
pub async fn page(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let view = IssuesView::parse(q);
    let (rows, total, next) = rows_of(&state, &user, &view).await?;
    let filters = vec![
        FilterView {
            param: "severity",
            label: "Severity",
            options: options(Severity::ALL, &view.values("severity"), |s| severity(s).1.to_string()),
        },
        FilterView {
            param: "status",
            label: "Status",
            options: options(IssueStatus::ALL, &view.values("status"), |s| label(s.as_str())),
        },
        FilterView {
            param: "kind",
            label: "Kind",
            options: options(HealthIssueKind::ALL, &view.values("kind"), |k| k.title().to_string()),
        },
    ];
    let ipane = match (view.issue.as_deref(), view.sensor.as_deref()) {
        (Some(issue), Some(sensor)) => {
            Some(issue_pane(&state, &user, sensor, issue, view.without_selection(), "Close").await?)
        }
        _ => None,
    };
    let page = IssuesPage {
        chrome: Chrome::of(&user, "health"),
        filters,
        rows,
        total,
        next_href: next.as_deref().map(|c| view.at(Some(c), None)),
        first_href: view.cursor().map(|_| view.at(None, None)),
        notice: notice_text(view.notice.as_deref()),
        ipane,
    };
    render(&page)
}

/// `GET /health-issues/live/rows` (htmx polling): the table body of the page's current view.
pub async fn live_rows(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let view = IssuesView::parse(current_url_pairs(&headers));
    let (rows, _, _) = rows_of(&state, &user, &view).await?;
    render(&RowsFragment { rows })
}

/// `GET /sensors/{sid}/issues/{iid}/pane` (htmx): the issue pane alone. From the Health
/// issues page its Back returns to that page's view; from the Sensors page, to the sensor.
pub async fn pane(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path((sensor_id, issue_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let on_issues_page = headers
        .get("hx-current-url")
        .and_then(|v| v.to_str().ok())
        .and_then(|u| u.find("://").map(|i| &u[i + 3..]))
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .is_some_and(|path| path.starts_with("/health-issues"));
    let (back, back_label) = if on_issues_page {
        (IssuesView::parse(current_url_pairs(&headers)).without_selection(), "Close")
    } else {
        let view = crate::sensors::ViewState::parse(current_url_pairs(&headers));
        (view.with_selected(&sensor_id), "Back to sensor")
    };
    let ipane = issue_pane(&state, &user, &sensor_id, &issue_id, back, back_label).await?;
    render(&PaneFragment { ipane })
}

/// Adds `notice=code` to a local URL.
fn with_notice(back: &str, code: &str) -> String {
    let sep = if back.contains('?') { '&' } else { '?' };
    format!("{back}{sep}notice={code}")
}

/// `POST /health-issues/{id}/close` and `.../reopen` (operator): applies it and returns to
/// the form's `back` (a path on this server).
async fn act(
    state: &PortalState,
    user: &SessionUser,
    headers: &HeaderMap,
    id: &str,
    f: &[(String, String)],
    reopen: bool,
) -> PortalResult<Response> {
    check_form(headers, user, f)?;
    let who = user.operator().ok_or_else(PortalError::read_only)?;
    if reopen {
        state.app.reopen_health_issue(&who, id).await?;
    } else {
        state.app.close_health_issue(&who, id).await?;
    }
    let back = safe_next(field(f, "back"));
    let code = if reopen { "issue_reopened" } else { "issue_closed" };
    Ok(Redirect::to(&with_notice(&back, code)).into_response())
}

/// `POST /health-issues/{id}/close`.
pub async fn close(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    act(&state, &user, &headers, &id, &f, false).await
}

/// `POST /health-issues/{id}/reopen`.
pub async fn reopen(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    act(&state, &user, &headers, &id, &f, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_view_urls() {
        let v = IssuesView::parse(
            [
                ("severity", "high"),
                ("status", "open"),
                ("cursor", "c"),
                ("issue", "i"),
                ("sensor", "s"),
                ("notice", "x"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        );
        assert_eq!(v.without_selection(), "/health-issues?severity=high&status=open&cursor=c");
        assert_eq!(v.at(None, Some(("i2", "s2"))), "/health-issues?severity=high&status=open&issue=i2&sensor=s2");
        assert!(parse_issue_list(&v.api, true).is_ok(), "portal-only parameters never reach the API parser");
        assert!(["issue", "sensor", "notice"].iter().all(|p| !v.api.iter().any(|(k, _)| k == p)));
        assert_eq!(with_notice("/sensors?selected=a", "issue_closed"), "/sensors?selected=a&notice=issue_closed");
        assert_eq!(with_notice("/health-issues", "issue_closed"), "/health-issues?notice=issue_closed");
    }
}
