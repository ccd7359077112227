//! Who is signed in, and whether a form may be applied.
//!
//! The session cookie is HttpOnly and SameSite=Strict; it is `Secure` and named with the
//! `__Host-` prefix (which browsers only accept on secure, host-only, path-`/` cookies) when
//! the portal is served over HTTPS, and plainly named otherwise (a `__Host-` cookie over
//! plain HTTP would be refused by the browser). Every form that changes something is checked
//! twice against cross-site request forgery: the browser's own `Sec-Fetch-Site` / `Origin`
//! must say the post came from this site, and the form must carry this session's token.

use axum::extract::FromRequestParts;
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use picket_server::auth::session::{SessionUser, authenticate_session};

use crate::PortalState;
use crate::web::{PortalError, enc, field};

/// Cookie name over HTTPS.
pub const COOKIE_SECURE: &str = "__Host-picket_session";
/// Cookie name over plain HTTP.
pub const COOKIE_PLAIN: &str = "picket_session";
/// The form field carrying the session's token.
pub const CSRF_FIELD: &str = "csrf";

/// Whether this request reached us over HTTPS (configured, or said by the proxy in front).
/// A client faking `X-Forwarded-Proto` only gets a stricter cookie its browser then refuses.
pub fn is_secure(state: &PortalState, headers: &HeaderMap) -> bool {
    state.options.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The session cookie for `token`.
pub fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    let name = if secure { COOKIE_SECURE } else { COOKIE_PLAIN };
    Cookie::build((name, token)).http_only(true).same_site(SameSite::Strict).secure(secure).path("/").build()
}

/// Cookies that clear both possible session cookies.
pub fn clear_cookies(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(COOKIE_SECURE).path("/")).remove(Cookie::build(COOKIE_PLAIN).path("/"))
}

/// A signed-in user; pages that need one take this extractor, which sends everyone else to
/// the sign-in page (and back here afterwards).
pub struct Signed(pub SessionUser);

fn to_login(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/sensors");
    let target = if parts.method == axum::http::Method::GET {
        format!("/login?next={}", enc(here))
    } else {
        "/login".to_string()
    };
    if parts.headers.contains_key("hx-request") {
        // htmx would follow a redirect inside the page fragment; ask it to load the page.
        let mut resp = StatusCode::OK.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            resp.headers_mut().insert("hx-redirect", v);
        }
        return resp;
    }
    Redirect::to(&target).into_response()
}

impl FromRequestParts<PortalState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &PortalState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar.get(COOKIE_SECURE).or_else(|| jar.get(COOKIE_PLAIN)).map(|c| c.value().to_string());
        let Some(token) = token else { return Err(to_login(parts)) };
        match authenticate_session(&state.app, &token).await {
            Ok(Some(user)) => Ok(Signed(user)),
            Ok(None) => Err(to_login(parts)),
            Err(e) => Err(PortalError::from(e).into_response()),
        }
    }
}

/// Whether the browser says this request came from a page of this site: `Sec-Fetch-Site`
/// (sent by every current browser) must be `same-origin` (or `none`: typed by the user), and
/// an `Origin` header must name this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return false;
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else { return false };
        let Ok(origin) = origin.to_str() else { return false };
        let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        return rest == Some(host);
    }
    true
}

/// Refuses a form that is not this session's, from this site.
pub fn check_form(headers: &HeaderMap, user: &SessionUser, form: &[(String, String)]) -> Result<(), PortalError> {
    let token_ok = field(form, CSRF_FIELD).is_some_and(|t| user.csrf_matches(t));
    if same_origin(headers) && token_ok { Ok(()) } else { Err(PortalError::Csrf) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_checks() {
        assert!(same_origin(&headers(&[
            ("host", "p:8080"),
            ("origin", "http://p:8080"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(same_origin(&headers(&[("host", "p:8080")])), "old clients send neither");
        assert!(!same_origin(&headers(&[("host", "p:8080"), ("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("host", "p:8080"), ("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&headers(&[("host", "p:8080"), ("origin", "https://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "p:8080"), ("origin", "null")])));
    }

    #[test]
    fn cookie_flags() {
        let c = session_cookie("t".into(), true);
        assert_eq!(
            (c.name(), c.http_only(), c.secure(), c.same_site()),
            (COOKIE_SECURE, Some(true), Some(true), Some(SameSite::Strict))
        );
        let c = session_cookie("t".into(), false);
        assert_eq!((c.name(), c.secure()), (COOKIE_PLAIN, Some(false)));
        assert_eq!(c.path(), Some("/"));
    }
}
