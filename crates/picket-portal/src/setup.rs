//! The first run: while no portal user exists, `/`, `/login` and every signed-in page lead
//! here, where the holder of the bootstrap API token creates the first administrator and is
//! signed in. Once any user exists the page answers 404, for good, even if every user is
//! later removed (the store creates the first user only into a users table that never held
//! one, so two racing submissions cannot both win either). The
//! bootstrap token is revoked and replaced by a new admin token shown once
//! (`App::create_first_admin`). Wrong tokens are counted per client address (an IPv6 /64)
//! and a client with too many in 15 minutes gets 429 without its token being checked.

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use picket_domain::user::MIN_PASSWORD_LEN;
use picket_server::app::{AppError, FirstRunClient, FirstRunError};
use picket_server::auth::session::{authenticate_session, sign_in};

use crate::PortalState;
use crate::guard::{clear_cookies, is_secure, same_origin, session_cookie};
use crate::web::{Chrome, PortalError, PortalResult, field, render_status};

/// The first-run form.
#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    chrome: Chrome,
    username: String,
    error: String,
    min_password: usize,
}

/// After the first run.
#[derive(Template)]
#[template(path = "setup_done.html")]
struct SetupDone {
    chrome: Chrome,
    username: String,
    replacement_token: Option<String>,
}

fn gone() -> PortalError {
    PortalError::App(AppError::NotFound("setup page (Picket is already set up; sign in)"))
}

fn form_page(username: String, error: String) -> SetupPage {
    SetupPage { chrome: Chrome::anonymous(), username, error, min_password: MIN_PASSWORD_LEN }
}

/// The client's IP address, when the listener records it (`picket_server::serve` does).
pub struct Peer(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|ConnectInfo(a)| a.ip())))
    }
}

/// `GET /setup`.
pub async fn form(State(state): State<PortalState>) -> PortalResult<Response> {
    if !state.app.first_run_pending().await? {
        return Err(gone());
    }
    render_status(StatusCode::OK, &form_page(String::new(), String::new()))
}

/// `POST /setup`: token, username, password twice.
pub async fn submit(
    State(state): State<PortalState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    jar: CookieJar,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    if !same_origin(&headers) {
        return Err(PortalError::Csrf);
    }
    if !state.app.first_run_pending().await? {
        return Err(gone());
    }
    let token = field(&f, "token").unwrap_or_default();
    let username = field(&f, "username").unwrap_or_default().trim().to_string();
    let password = field(&f, "password").unwrap_or_default().to_string();
    if field(&f, "password2") != Some(password.as_str()) {
        let page = form_page(username, "the two passwords differ: type the same password twice".to_string());
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let client = FirstRunClient::new(peer);
    let created = match state.app.create_first_admin(&client, token, &username, password.clone()).await {
        Ok(c) => c,
        Err(FirstRunError::App(AppError::Conflict(_))) => return Err(gone()),
        Err(e @ FirstRunError::TooManyGuesses) => {
            return render_status(StatusCode::TOO_MANY_REQUESTS, &form_page(username, e.to_string()));
        }
        Err(FirstRunError::App(e @ (AppError::Validation(_) | AppError::Forbidden(_)))) => {
            let status = match e {
                AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            return render_status(status, &form_page(username, e.to_string()));
        }
        Err(FirstRunError::App(e)) => return Err(e.into()),
    };
    let session = sign_in(&state.app, &created.username, &password).await.map_err(|e| match e {
        picket_server::auth::session::SignInError::App(a) => PortalError::App(a),
        e => PortalError::App(AppError::Internal(format!("signing in the first admin: {e}"))),
    })?;
    let chrome = match authenticate_session(&state.app, &session.token).await? {
        Some(user) => Chrome::of(&user, ""),
        None => Chrome::anonymous(),
    };
    let jar = clear_cookies(jar).add(session_cookie(session.token, is_secure(&state, &headers)));
    let page = SetupDone { chrome, username: created.username, replacement_token: created.replacement_token };
    Ok((jar, render_status(StatusCode::OK, &page)?).into_response())
}
