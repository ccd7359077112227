//! Sign-in, sign-out, and the front door (`/` goes to the Sensors page, or to the first-run
//! page while no portal user exists).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use picket_server::auth::session::{SignInError, sign_in, sign_out};

use crate::PortalState;
use crate::guard::{Signed, check_form, clear_cookies, is_secure, same_origin, session_cookie};
use crate::web::{Chrome, PortalError, PortalResult, field, render_status, safe_next};

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    username: String,
    error: String,
}

/// `GET /`: the Sensors page, or the first-run page while no user exists.
pub async fn home(State(state): State<PortalState>) -> PortalResult<Redirect> {
    if state.app.first_run_pending().await? {
        return Ok(Redirect::to("/setup"));
    }
    Ok(Redirect::to("/sensors"))
}

/// `GET /login?next=...` (the first-run page while no user exists).
pub async fn form(State(state): State<PortalState>, Query(q): Query<Vec<(String, String)>>) -> PortalResult<Response> {
    if state.app.first_run_pending().await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let page = LoginPage {
        chrome: Chrome::anonymous(),
        next: safe_next(field(&q, "next")),
        username: String::new(),
        error: String::new(),
    };
    render_status(StatusCode::OK, &page)
}

/// `POST /login`: checks the password, starts a session (a new token every time) and goes
/// to `next` if it is a path on this server.
pub async fn submit(
    State(state): State<PortalState>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    if !same_origin(&headers) {
        return Err(PortalError::Csrf);
    }
    let username = field(&f, "username").unwrap_or_default().trim().to_string();
    let password = field(&f, "password").unwrap_or_default();
    let next = safe_next(field(&f, "next"));
    match sign_in(&state.app, &username, password).await {
        Ok(session) => {
            let jar = clear_cookies(jar).add(session_cookie(session.token, is_secure(&state, &headers)));
            Ok((jar, Redirect::to(&next)).into_response())
        }
        Err(e) => {
            let status = match &e {
                SignInError::Invalid => StatusCode::UNAUTHORIZED,
                SignInError::Locked => StatusCode::TOO_MANY_REQUESTS,
                SignInError::App(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let error = match e {
                SignInError::App(a) => return Err(a.into()),
                e => e.to_string(),
            };
            let page = LoginPage { chrome: Chrome::anonymous(), next, username, error };
            render_status(status, &page)
        }
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(
    State(state): State<PortalState>,
    Signed(user): Signed,
    headers: HeaderMap,
    jar: CookieJar,
    Form(f): Form<Vec<(String, String)>>,
) -> PortalResult<Response> {
    check_form(&headers, &user, &f)?;
    sign_out(&state.app, &user).await?;
    Ok((clear_cookies(jar), Redirect::to("/login")).into_response())
}
