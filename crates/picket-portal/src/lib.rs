//! The Picket web portal: server-rendered pages (askama templates, escaped by default) with a
//! little htmx, all assets embedded in the binary. Sign-in with portal users and a session
//! cookie; a signed-in user acts with their role and subscriptions through picket-server's
//! permission types (`Viewer`, `Operator`, `Admin`), exactly as an API token would.
//!
//! This crate must not hold SQL or business rules: every read and change goes through the
//! use cases of `picket_server::App` (and `picket_server::auth::session` for sign-in), and the
//! query parameters of the Sensors page are parsed by the REST API's own parser, so a
//! bookmarked portal view and an API call mean the same thing. It must not load anything
//! from outside the binary (no CDN, no fonts, no Node build).

mod alerts;
mod assets;
mod details;
mod guard;
mod health;
mod login;
mod onboard;
mod releases;
mod sensors;
mod setup;
mod sites;
mod ti;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use picket_server::App;

/// How the portal is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortalOptions {
    /// Mark the session cookie `Secure` (and name it `__Host-...`) on every response: set it
    /// when browsers reach the portal over HTTPS (a TLS-terminating proxy in front). Requests
    /// that arrive with `X-Forwarded-Proto: https` get a secure cookie either way.
    pub secure_cookies: bool,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct PortalState {
    pub app: Arc<App>,
    pub options: PortalOptions,
}

/// Headers every portal answer carries: no framing, no sniffing, scripts and styles only
/// from this server, and pages not cached (they show live state and carry form tokens).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The portal's routes over `app`, to merge beside the REST API (no fallback of its own).
pub fn router(app: Arc<App>, options: PortalOptions) -> Router {
    Router::new()
        .route("/", get(login::home))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/setup", get(setup::form).post(setup::submit))
        .route("/sensors", get(sensors::page))
        .route("/sensors/export.csv", get(sensors::export))
        .route("/sensors/onboard", get(onboard::form).post(onboard::submit))
        .route("/sensors/{id}/onboarded", get(onboard::done))
        .route("/sensors/{id}/pane", get(details::pane))
        .route("/sensors/{id}/edit", post(details::edit))
        .route("/sensors/{id}/delayed-update", get(details::confirm_delayed).post(details::set_delayed))
        .route("/sensors/{id}/delete", get(details::confirm_delete).post(details::delete))
        .route("/sensors/{id}/activation-file", post(details::activation_file))
        .route("/sensors/live/rows", get(sensors::live_rows))
        .route("/sensors/{id}/pane/live", get(details::live_pane))
        .route("/sensors/{id}/issues/{issue}/pane", get(health::pane))
        .route("/health-issues", get(health::page))
        .route("/health-issues/live/rows", get(health::live_rows))
        .route("/health-issues/{id}/close", post(health::close))
        .route("/health-issues/{id}/reopen", post(health::reopen))
        .route("/alerts", get(alerts::page))
        .route("/alerts/live/rows", get(alerts::live_rows))
        .route("/sites", get(sites::page))
        .route("/sites/live/rows", get(sites::live_rows))
        .route("/sites/live/counts", get(sites::live_counts))
        .route("/sites/{id}/edit", get(sites::edit_form).post(sites::edit))
        .route("/sites/{id}/delete", get(sites::confirm_delete).post(sites::delete))
        .route("/sites/{id}/reactivate", get(sites::reactivate))
        .route("/releases", get(releases::page))
        .route("/releases/live/rollout", get(releases::live_rollout))
        .route("/releases/rollout/pause", post(releases::pause))
        .route("/releases/rollout/resume", post(releases::resume))
        .route("/threat-intel", get(ti::page))
        .route("/threat-intel/{version}/download", get(ti::download))
        .route("/static/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(PortalState { app, options })
}
