//! Onboard sensor: the form (DESIGN.md's fields), then the page with the "Download
//! activation file" button and the install command line.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use picket_domain::{Mode, SensorType};
use picket_proto::{OnboardRequest, SensorConfig};
use picket_server::app::AppError;
use picket_server::auth::session::SessionUser;

use crate::PortalState;
use crate::guard::{Signed, check_form};
use crate::web::{Chrome, PortalError, PortalResult, enc, field, label, render, render_status, type_label};

/// What the form holds (kept when it is refused, so nothing is typed twice).
#[derive(Debug, Clone)]
struct Values {
    name: String,
    sensor_type: String,
    domain: String,
    subscription: String,
    site: String,
    zone: String,
    tags: String,
    cloud_connected: bool,
    auto_ti_updates: bool,
    description: String,
}

/// The onboarding form.
#[derive(Template)]
#[template(path = "onboard.html")]
struct OnboardPage {
    chrome: Chrome,
    v: Values,
    types: Vec<(String, String)>,
    subscriptions: Vec<String>,
    zones: Vec<String>,
    error: String,
}

/// After onboarding: download the activation file, then install.
#[derive(Template)]
#[template(path = "onboarded.html")]
struct OnboardedPage {
    chrome: Chrome,
    id: String,
    name: String,
    file_name: String,
    mode: String,
    pending: bool,
}

async fn form_page(state: &PortalState, user: &SessionUser, v: Values, error: String) -> PortalResult<OnboardPage> {
    let viewer = user.viewer();
    Ok(OnboardPage {
        chrome: Chrome::of(user, "onboard"),
        v,
        types: SensorType::ALL.iter().map(|t| (t.to_string(), type_label(*t).to_string())).collect(),
        subscriptions: state.app.list_subscriptions(&viewer).await?.into_iter().map(|s| s.name).collect(),
        zones: state.app.list_zones(&viewer).await?.into_iter().map(|z| z.name).collect(),
        error,
    })
}

/// `GET /sensors/onboard`, optionally prefilled from the query (`name`, `type`, `domain`,
/// `subscription`, `site`, `zone`, `tags`, `mode`), as Reactivate links to it.
pub async fn form(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Query(q): Query<Vec<(String, String)>>,
) -> PortalResult<Response> {
    user.operator().ok_or_else(PortalError::read_only)?;
    let given = |n: &str, default: &str| field(&q, n).unwrap_or(default).to_string();
    let v = Values {
        name: given("name", ""),
        sensor_type: given("type", SensorType::DomainController.as_str()),
        domain: given("domain", ""),
        subscription: given("subscription", "default"),
        site: given("site", ""),
        zone: given("zone", "default"),
        tags: given("tags", ""),
        cloud_connected: field(&q, "mode") != Some(Mode::LocallyManaged.as_str()),
        auto_ti_updates: true,
        description: String::new(),
    };
    render(&form_page(&state, &user, v, String::new()).await?)
}

/// `POST /sensors/onboard`.
pub async fn submit(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    let who = user.operator().ok_or_else(PortalError::read_only)?;
    let text = |n: &str| field(&f, n).unwrap_or_default().trim().to_string();
    let v = Values {
        name: text("name"),
        sensor_type: text("type"),
        domain: text("domain"),
        subscription: text("subscription"),
        site: text("site"),
        zone: text("zone"),
        tags: text("tags"),
        cloud_connected: field(&f, "cloud_connected").is_some(),
        auto_ti_updates: field(&f, "auto_ti_updates").is_some(),
        description: field(&f, "description").unwrap_or_default().replace("\r\n", "\n"),
    };
    let sensor_type = match v.sensor_type.parse::<SensorType>() {
        Ok(t) => t,
        Err(e) => {
            let page = form_page(&state, &user, v, format!("type: {e}")).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let req = OnboardRequest {
        name: v.name.clone(),
        sensor_type,
        domain: v.domain.clone(),
        subscription: v.subscription.clone(),
        site: v.site.clone(),
        zone: v.zone.clone(),
        tags: v.tags.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        mode: if v.cloud_connected { Mode::CloudConnected } else { Mode::LocallyManaged },
        auto_ti_updates: v.auto_ti_updates,
        description: v.description.clone(),
        delayed_update: false,
        config: SensorConfig::default(),
    };
    match state.app.onboard(&who, req).await {
        Ok(s) => Ok(Redirect::to(&format!("/sensors/{}/onboarded", enc(&s.id))).into_response()),
        Err(e @ (AppError::Validation(_) | AppError::Conflict(_) | AppError::Forbidden(_))) => {
            let status = match e {
                AppError::Conflict(_) => StatusCode::CONFLICT,
                AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let page = form_page(&state, &user, v, e.to_string()).await?;
            render_status(status, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /sensors/{id}/onboarded`.
pub async fn done(
    State(state): State<PortalState>,
    Signed(user): Signed,
    Path(id): Path<String>,
) -> PortalResult<Response> {
    user.operator().ok_or_else(PortalError::read_only)?;
    let s = state.app.get_sensor(&user.viewer(), &id).await?;
    let page = OnboardedPage {
        chrome: Chrome::of(&user, "onboard"),
        file_name: format!("{}.activation.json", s.name),
        mode: label(s.mode.as_str()),
        pending: s.sensor_status == picket_domain::SensorStatus::PendingActivation,
        id: s.id,
        name: s.name,
    };
    render(&page)
}
