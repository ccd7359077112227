//! The Releases page (`/releases`): the published versions (the current one marked), the
//! rollout of the current release (state, why it is paused, its rules, counts per sensor
//! state, and every sensor's progress: state, ring, version, grant times, error), and Pause /
//! Resume for operators whose scope is the whole fleet (a rollout spans it). The rollout part
//! refreshes itself every 5 s (`/releases/live/rollout`, htmx polling, paused like the other
//! pages' live regions). `state` (a filter of the sensor table by rollout state, from the
//! count cards) and `notice` are the page's URL state. Reads and changes are
//! `picket_server::App`'s release and rollout use cases.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use picket_proto::releases::ReleaseView;
use picket_proto::rollouts::{PausedBy, Ring, RolloutSensorState, RolloutSensorView, RolloutState, RolloutView};
use picket_proto::time::format_ts;
use picket_server::auth::session::SessionUser;
use picket_store::Scope;

use crate::PortalState;
use crate::details::current_url_pairs;
use crate::guard::{Signed, check_form};
use crate::web::{Chrome, PortalError, PortalResult, enc, field, label, render, short_time};

/// Sensor rows shown at most (the counts cover every sensor; a state filter narrows the rows).
pub const MAX_ROWS: usize = 500;

/// A published release as a table row.
pub struct ReleaseRow {
    version: String,
    current: bool,
    published: String,
    published_full: String,
    published_by: String,
    signed: String,
    expires: String,
    expires_full: String,
    size: String,
    files: u64,
    signing_key_id: String,
    sha256: String,
    sha256_short: String,
}

/// One rollout state's count card: a link that filters the sensor table.
pub struct CountCard {
    state: &'static str,
    label: String,
    count: u64,
    href: String,
    chosen: bool,
}

/// One sensor's progress as a table row.
pub struct ProgressRow {
    id: String,
    name: String,
    href: String,
    ring: &'static str,
    state: &'static str,
    state_text: String,
    state_class: &'static str,
    version: String,
    action: String,
    started: String,
    started_full: String,
    finished: String,
    finished_full: String,
    deadline: String,
    deadline_full: String,
    error: String,
}

/// The rollout part of the page (refreshed live).
pub struct RolloutPart {
    version: String,
    previous_version: String,
    state: &'static str,
    state_text: &'static str,
    state_class: &'static str,
    paused: bool,
    paused_reason: String,
    started: String,
    started_full: String,
    concurrency: u32,
    failures: u32,
    max_failures: u32,
    delayed_ring: String,
    total: u64,
    cards: Vec<CountCard>,
    rows: Vec<ProgressRow>,
    /// Sensors matching the state filter (more than `rows` when capped).
    matching: u64,
    filter_label: String,
    /// The state filter's wire name (empty: all).
    filter_state: &'static str,
    /// Whether more sensors match than are shown.
    capped: bool,
    all_href: &'static str,
    can_control: bool,
    csrf: String,
}

/// The Releases page.
#[derive(Template)]
#[template(path = "releases.html")]
struct ReleasesPage {
    chrome: Chrome,
    notice: &'static str,
    releases: Vec<ReleaseRow>,
    rollout: Option<RolloutPart>,
    can_operate: bool,
    narrow_scope: bool,
}

/// The live fragment.
#[derive(Template)]
#[template(path = "rollout.html")]
struct RolloutFragment {
    rollout: Option<RolloutPart>,
}

fn notice_text(code: Option<&str>) -> &'static str {
    match code {
        Some("paused") => "Rollout paused: no new updates start; updates in progress carry on.",
        Some("resumed") => "Rollout resumed (its failure count starts again from zero).",
        _ => "",
    }
}

/// Bytes for people (`31.5 MB`).
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn release_row(r: &ReleaseView) -> ReleaseRow {
    ReleaseRow {
        version: r.version.to_string(),
        current: r.current,
        published: short_time(r.created_at),
        published_full: format_ts(r.created_at),
        published_by: r.published_by.clone(),
        signed: short_time(r.signed_at),
        expires: short_time(r.expires_at),
        expires_full: format_ts(r.expires_at),
        size: size_text(r.size),
        files: r.files,
        signing_key_id: r.signing_key_id.clone(),
        sha256_short: r.sha256.chars().take(12).collect(),
        sha256: r.sha256.clone(),
    }
}

/// The colour class of a sensor's rollout state (the text always says it too).
fn state_class(s: RolloutSensorState) -> &'static str {
    match s {
        RolloutSensorState::Updated => "health-healthy",
        RolloutSensorState::Updating | RolloutSensorState::RollingBack => "health-low",
        RolloutSensorState::Failed => "health-high",
        RolloutSensorState::RolledBack => "health-medium",
        RolloutSensorState::Pending | RolloutSensorState::WaitingDelay | RolloutSensorState::Skipped => "state-idle",
    }
}

/// Display order of the sensor table: what needs attention first.
fn urgency(s: RolloutSensorState) -> u8 {
    match s {
        RolloutSensorState::Failed => 0,
        RolloutSensorState::Updating => 1,
        RolloutSensorState::RollingBack => 2,
        RolloutSensorState::Pending => 3,
        RolloutSensorState::WaitingDelay => 4,
        RolloutSensorState::RolledBack => 5,
        RolloutSensorState::Updated => 6,
        RolloutSensorState::Skipped => 7,
    }
}

fn time_pair(t: Option<picket_domain::Timestamp>) -> (String, String) {
    (t.map(short_time).unwrap_or_default(), t.map(format_ts).unwrap_or_default())
}

fn progress_row(s: &RolloutSensorView) -> ProgressRow {
    let (started, started_full) = time_pair(s.started_at);
    let (finished, finished_full) = time_pair(s.finished_at);
    // A deadline only matters while the grant is open.
    let open = matches!(s.state, RolloutSensorState::Updating | RolloutSensorState::RollingBack);
    let (deadline, deadline_full) = time_pair(s.deadline.filter(|_| open));
    ProgressRow {
        href: format!("/sensors?selected={}", enc(&s.sensor_id)),
        id: s.sensor_id.clone(),
        name: s.sensor_name.clone(),
        ring: match s.ring {
            Ring::Immediate => "Immediate",
            Ring::Delayed => "Delayed",
        },
        state: s.state.as_str(),
        state_text: label(s.state.as_str()),
        state_class: state_class(s.state),
        version: s.version.clone().unwrap_or_default(),
        action: s.action.as_deref().map(label).unwrap_or_default(),
        started,
        started_full,
        finished,
        finished_full,
        deadline,
        deadline_full,
        error: s.error.clone().unwrap_or_default(),
    }
}

/// Whether `user` may pause and resume: an operator or admin whose scope is the whole fleet.
fn can_control(user: &SessionUser) -> bool {
    user.operator().is_some() && user.principal().scope == Scope::All
}

/// The rollout part for `view`, its sensor table filtered to `filter` (a state's wire name).
fn rollout_part(view: RolloutView, filter: Option<&str>, user: &SessionUser) -> RolloutPart {
    let filter = RolloutSensorState::ALL.iter().copied().find(|s| Some(s.as_str()) == filter);
    let cards = RolloutSensorState::ALL
        .iter()
        .map(|&s| CountCard {
            state: s.as_str(),
            label: label(s.as_str()),
            count: view.counts.get(s),
            href: format!("/releases?state={}", s.as_str()),
            chosen: filter == Some(s),
        })
        .collect();
    let mut chosen: Vec<&RolloutSensorView> =
        view.sensors.iter().filter(|s| filter.is_none_or(|f| s.state == f)).collect();
    // The view lists a bounded page of the sensors; its counts cover them all.
    let matching = filter.map_or(view.counts.total, |f| view.counts.get(f)).max(chosen.len() as u64);
    // Stable sort: within a state, the view's order (ring, then id).
    chosen.sort_by_key(|s| urgency(s.state));
    let capped = matching > chosen.len().min(MAX_ROWS) as u64;
    let rows = chosen.into_iter().take(MAX_ROWS).map(progress_row).collect();
    let (state_text, state_class) = match view.state {
        RolloutState::Active => ("Active", "health-low"),
        RolloutState::Paused => match view.paused_by {
            Some(PausedBy::Failures) => ("Paused by failures", "health-high"),
            _ => ("Paused", "health-medium"),
        },
        RolloutState::Finished => ("Finished", "health-healthy"),
    };
    let delayed_ring = if view.delayed_ring_due {
        format!("started {} UTC", short_time(view.delayed_ring_starts_at))
    } else {
        format!("starts {} UTC", short_time(view.delayed_ring_starts_at))
    };
    RolloutPart {
        version: view.version.to_string(),
        previous_version: view.previous_version.map(|v| v.to_string()).unwrap_or_default(),
        state: view.state.as_str(),
        state_text,
        state_class,
        paused: view.state == RolloutState::Paused,
        paused_reason: view.paused_reason.unwrap_or_default(),
        started: short_time(view.started_at),
        started_full: format_ts(view.started_at),
        concurrency: view.concurrency,
        failures: view.failures,
        max_failures: view.max_failures,
        delayed_ring,
        total: view.counts.total,
        cards,
        rows,
        matching,
        filter_label: filter.map(|f| label(f.as_str())).unwrap_or_default(),
        filter_state: filter.map_or("", |f| f.as_str()),
        capped,
        all_href: "/releases",
        can_control: can_control(user),
        csrf: user.csrf_token().to_string(),
    }
}

/// `GET /releases`.
pub async fn page(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    let viewer = user.viewer();
    // Newest first.
    let releases = state.app.list_releases(&viewer).await?.items.iter().rev().map(release_row).collect();
    let rollout = state.app.current_rollout(&viewer).await?.map(|v| rollout_part(v, field(&q, "state"), &user));
    let page = ReleasesPage {
        chrome: Chrome::of(&user, "releases"),
        notice: notice_text(field(&q, "notice")),
        releases,
        rollout,
        can_operate: user.operator().is_some(),
        narrow_scope: user.principal().scope != Scope::All,
    };
    render(&page)
}

/// `GET /releases/live/rollout` (htmx polling): the rollout part of the page's current view
/// (its state filter, read from `HX-Current-URL`).
pub async fn live_rollout(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let pairs = current_url_pairs(&headers);
    let rollout =
        state.app.current_rollout(&user.viewer()).await?.map(|v| rollout_part(v, field(&pairs, "state"), &user));
    render(&RolloutFragment { rollout })
}

/// `POST /releases/rollout/pause` and `.../resume` (operator, whole-fleet scope).
async fn set_paused(
    state: &PortalState,
    user: &SessionUser,
    headers: &HeaderMap,
    f: &[(String, String)],
    paused: bool,
) -> PortalResult<Response> {
    check_form(headers, user, f)?;
    let who = user.operator().ok_or_else(PortalError::read_only)?;
    if paused {
        state.app.pause_rollout(&who).await?;
    } else {
        state.app.resume_rollout(&who).await?;
    }
    let back = match field(f, "state").filter(|s| RolloutSensorState::ALL.iter().any(|x| x.as_str() == *s)) {
        Some(s) => format!("/releases?state={s}&"),
        None => "/releases?".to_string(),
    };
    let code = if paused { "paused" } else { "resumed" };
    Ok(Redirect::to(&format!("{back}notice={code}")).into_response())
}

/// `POST /releases/rollout/pause`.
pub async fn pause(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    set_paused(&state, &user, &headers, &f, true).await
}

/// `POST /releases/rollout/resume`.
pub async fn resume(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    set_paused(&state, &user, &headers, &f, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_urgency() {
        assert_eq!(size_text(31_500_000), "31.5 MB");
        assert_eq!(size_text(2_048), "2.0 kB");
        assert_eq!(size_text(12), "12 B");
        let mut states = RolloutSensorState::ALL.to_vec();
        states.sort_by_key(|s| urgency(*s));
        assert_eq!(states[0], RolloutSensorState::Failed, "failures first");
        assert_eq!(states.len(), 8);
    }
}
