//! The details pane of a sensor (every field, its health) and the Manage sensor actions:
//! edit name, site, zone, tags and description; enable or disable delayed update and delete,
//! each after a confirmation page that says what will happen; download a new activation
//! file while the sensor waits for activation. Viewers see no controls, and the server
//! refuses their forms anyway: the handlers need an `Operator`, which a viewer cannot get.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use picket_domain::{Mode, SensorStatus, format_duration};
use picket_proto::{PatchSensorRequest, SensorView};
use picket_server::auth::Operator;
use picket_server::auth::session::SessionUser;

use crate::PortalState;
use crate::guard::{Signed, check_form};
use crate::sensors::ViewState;
use crate::web::{Chrome, PortalError, PortalResult, enc, field, health, label, render, short_time, type_label};

/// The details pane of one sensor.
pub struct PaneView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) fields: Vec<(&'static str, String)>,
    pub(crate) health_class: &'static str,
    pub(crate) health_text: &'static str,
    pub(crate) health_issues: i64,
    pub(crate) status_detail: String,
    pub(crate) can_operate: bool,
    pub(crate) csrf: String,
    pub(crate) close_href: String,
    pub(crate) issues: Vec<crate::health::IssueRow>,
    pub(crate) site: String,
    pub(crate) tags: String,
    pub(crate) description: String,
    pub(crate) zones: Vec<ZoneOpt>,
    pub(crate) delayed_update: bool,
    pub(crate) pending_activation: bool,
}

/// A zone in the edit form's select.
pub struct ZoneOpt {
    pub(crate) name: String,
    pub(crate) selected: bool,
}

/// The pane alone, for htmx to put beside the table.
#[derive(Template)]
#[template(path = "pane_fragment.html")]
struct PaneFragment {
    pane: PaneView,
}

/// A "are you sure" page for an action.
#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    title: String,
    paragraphs: Vec<String>,
    action: String,
    hidden: Vec<(String, String)>,
    confirm_label: String,
    danger: bool,
    cancel_href: String,
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_string()
}

fn ts(t: Option<picket_domain::Timestamp>) -> String {
    t.map(|t| format!("{} UTC", short_time(t))).unwrap_or_else(|| "never".to_string())
}

/// Builds the pane of sensor `id` for `user` on the Sensors page's `view` (where Close and
/// the issue links go).
pub async fn pane_view(state: &PortalState, user: &SessionUser, id: &str, view: &ViewState) -> PortalResult<PaneView> {
    let viewer = user.viewer();
    let s: SensorView = state.app.get_sensor(&viewer, id).await?;
    let issues = crate::health::sensor_issues(state, user, &s.id)
        .await?
        .iter()
        .map(|i| crate::health::issue_row(i, view.with_issue(&s.id, &i.id), false))
        .collect();
    let can_operate = user.operator().is_some();
    let zones = if can_operate {
        state
            .app
            .list_zones(&viewer)
            .await?
            .into_iter()
            .map(|z| ZoneOpt { selected: z.name == s.zone, name: z.name })
            .collect()
    } else {
        Vec::new()
    };
    let (health_class, health_text) = health(s.health_status);
    let fields = vec![
        ("ID", s.id.clone()),
        ("Type", type_label(s.sensor_type).to_string()),
        ("Domain", s.domain.clone()),
        ("Subscription", s.subscription.clone()),
        ("Site", s.site.clone()),
        ("Zone", s.zone.clone()),
        ("Tags", s.tags.join(", ")),
        ("Mode", label(s.mode.as_str())),
        ("Automatic TI updates", yes_no(s.auto_ti_updates)),
        ("Service status", label(s.service_status.as_str())),
        ("Sensor status", label(s.sensor_status.as_str())),
        ("Version", s.version.clone().unwrap_or_else(|| "unknown".to_string())),
        ("Delayed update", yes_no(s.delayed_update)),
        ("Created", ts(Some(s.created_at))),
        ("Last seen", ts(s.last_seen_at)),
        ("Activated", ts(s.activated_at)),
        ("Decommissioned", ts(s.decommissioned_at)),
        (
            "Configuration version",
            format!("{} applied, {} desired", s.config_version_applied, s.config_version_desired),
        ),
        ("TI version", s.ti_version.map(|v| v.to_string()).unwrap_or_else(|| "none".to_string())),
        ("Capture setting", s.config.capture.clone().unwrap_or_else(|| "none".to_string())),
        ("Description", s.description.clone()),
    ];
    Ok(PaneView {
        fields,
        health_class,
        health_text,
        health_issues: s.health_issues,
        status_detail: s.sensor_status_detail.clone().unwrap_or_default(),
        can_operate,
        csrf: user.csrf_token().to_string(),
        close_href: view.without_selection(),
        issues,
        site: s.site.clone(),
        tags: s.tags.join(", "),
        description: s.description.clone(),
        zones,
        delayed_update: s.delayed_update,
        pending_activation: s.sensor_status == SensorStatus::PendingActivation,
        id: s.id,
        name: s.name,
    })
}

fn operator(user: &SessionUser) -> PortalResult<Operator> {
    user.operator().ok_or_else(PortalError::read_only)
}

fn back_to(id: &str, notice: &str) -> Redirect {
    Redirect::to(&format!("/sensors?selected={}&notice={notice}", enc(id)))
}

/// `GET /sensors/{id}/pane` (htmx): the pane alone; Close returns to the page it was opened
/// from (`HX-Current-URL`).
pub async fn pane(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let view = ViewState::parse(current_url_pairs(&headers));
    let pane = pane_view(&state, &user, &id, &view).await?;
    render(&PaneFragment { pane })
}

/// The query of the page htmx is on (`HX-Current-URL`), as pairs; none without the header.
pub fn current_url_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get("hx-current-url")
        .and_then(|v| v.to_str().ok())
        .and_then(|u| u.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or_default().to_string()))
        .map(|q| serde_urlencoded_pairs(&q))
        .unwrap_or_default()
}

/// The live part of the pane (health and fields), refreshed by htmx polling.
#[derive(Template)]
#[template(path = "pane_live.html")]
struct PaneLive {
    pane: PaneView,
}

/// `GET /sensors/{id}/pane/live` (htmx polling): the pane's health and fields, without the
/// Manage sensor form (which is never replaced under the user's typing).
pub async fn live_pane(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let view = ViewState::parse(current_url_pairs(&headers));
    let pane = pane_view(&state, &user, &id, &view).await?;
    render(&PaneLive { pane })
}

/// Decodes `a=b&c=d` (percent and `+` escapes) into pairs.
fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

/// `POST /sensors/{id}/edit`: name, site, zone, tags (comma-separated), description.
pub async fn edit(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = operator(&user)?;
    let text = |name: &str| field(&f, name).map(|v| v.trim().to_string());
    let patch = PatchSensorRequest {
        name: text("name"),
        site: text("site"),
        zone: text("zone"),
        tags: field(&f, "tags")
            .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()),
        description: field(&f, "description").map(|d| d.replace("\r\n", "\n")),
        ..PatchSensorRequest::default()
    };
    state.app.patch_sensor(&who, &id, patch).await?;
    Ok(back_to(&id, "saved").into_response())
}

/// `GET /sensors/{id}/delayed-update?enable=true|false`: the confirmation.
pub async fn confirm_delayed(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    operator(&user)?;
    let s = state.app.get_sensor(&user.viewer(), &id).await?;
    let enable = field(&q, "enable") == Some("true");
    let ring = state.app.config().delay_ring_after;
    let delay = match ring.as_secs() {
        s if s > 0 && s % 3600 == 0 => format!("{} hours", s / 3600),
        _ => format_duration(ring),
    };
    let (title, paragraphs) = if enable {
        (
            format!("Enable delayed update for {}?", s.name),
            vec![
                format!(
                    "{} joins the delayed update ring: it receives each new release {delay} after the release is published, once the sensors without delayed update have taken it.",
                    s.name
                ),
                "Use it for sensors that must not be among the first to run a new version.".to_string(),
            ],
        )
    } else {
        (
            format!("Disable delayed update for {}?", s.name),
            vec![format!(
                "{} leaves the delayed update ring: it takes new releases in the first wave, one sensor at a time, as soon as they are published.",
                s.name
            )],
        )
    };
    let page = ConfirmPage {
        chrome: Chrome::of(&user, "sensors"),
        title,
        paragraphs,
        action: format!("/sensors/{}/delayed-update", enc(&s.id)),
        hidden: vec![("enable".to_string(), enable.to_string())],
        confirm_label: if enable { "Enable delayed update" } else { "Disable delayed update" }.to_string(),
        danger: false,
        cancel_href: format!("/sensors?selected={}", enc(&s.id)),
    };
    render(&page)
}

/// `POST /sensors/{id}/delayed-update`.
pub async fn set_delayed(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = operator(&user)?;
    let enable = field(&f, "enable") == Some("true");
    let patch = PatchSensorRequest { delayed_update: Some(enable), ..PatchSensorRequest::default() };
    state.app.patch_sensor(&who, &id, patch).await?;
    Ok(back_to(&id, if enable { "delayed_on" } else { "delayed_off" }).into_response())
}

/// Which page a delete starts from (where its form posts and Cancel returns).
pub enum DeleteFrom {
    /// The details pane of the Sensors page.
    Sensors,
    /// The Sites and Sensors page.
    Sites,
    /// The Reactivate steps: after the delete, the onboarding form comes next.
    Reactivate,
}

/// The delete confirmation, saying what deleting stops.
pub async fn delete_confirmation(
    state: &PortalState,
    user: &SessionUser,
    id: &str,
    from: DeleteFrom,
) -> PortalResult<Response> {
    operator(user)?;
    let s = state.app.get_sensor(&user.viewer(), id).await?;
    let mut paragraphs = match s.mode {
        Mode::CloudConnected => vec![
            format!("Deleting the cloud-connected sensor {} stops it working with the control plane at once: its certificate is revoked, so it can no longer send heartbeats, health or alerts, and it no longer receives configuration, updates or threat-intelligence packages.", s.name),
            "The software stays installed on the host until you uninstall it there. To connect the host again, onboard it again and activate it with the new activation file.".to_string(),
        ],
        Mode::LocallyManaged => vec![format!(
            "Deleting the locally managed sensor {} removes its record here. The sensor on the host keeps running and keeps its alerts locally.",
            s.name
        )],
    };
    paragraphs.push("This cannot be undone.".to_string());
    let (action, cancel_href, current) = match from {
        DeleteFrom::Sensors => {
            (format!("/sensors/{}/delete", enc(&s.id)), format!("/sensors?selected={}", enc(&s.id)), "sensors")
        }
        DeleteFrom::Sites => (format!("/sites/{}/delete", enc(&s.id)), "/sites".to_string(), "sites"),
        DeleteFrom::Reactivate => {
            (format!("/sites/{}/delete", enc(&s.id)), format!("/sites/{}/reactivate", enc(&s.id)), "sites")
        }
    };
    let hidden = match from {
        DeleteFrom::Reactivate => vec![("then".to_string(), "onboard".to_string())],
        _ => Vec::new(),
    };
    let page = ConfirmPage {
        chrome: Chrome::of(user, current),
        title: format!("Delete sensor {}?", s.name),
        paragraphs,
        action,
        hidden,
        confirm_label: format!("Delete {}", s.name),
        danger: true,
        cancel_href,
    };
    render(&page)
}

/// `GET /sensors/{id}/delete`: the confirmation, saying what deleting stops.
pub async fn confirm_delete(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    delete_confirmation(&state, &user, &id, DeleteFrom::Sensors).await
}

/// `POST /sensors/{id}/delete`.
pub async fn delete(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = operator(&user)?;
    state.app.delete_sensor(&who, &id).await?;
    Ok(Redirect::to("/sensors?notice=deleted").into_response())
}

/// `POST /sensors/{id}/activation-file`: mints a one-time token and downloads the file
/// (`<name>.activation.json`); any earlier file of this sensor stops working.
pub async fn activation_file(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = operator(&user)?;
    let file = state.app.activation_file(&who, &id).await?;
    let body = serde_json::to_vec_pretty(&file)
        .map_err(|e| PortalError::App(picket_server::app::AppError::Internal(format!("activation file: {e}"))))?;
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.activation.json\"", file.sensor_name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
