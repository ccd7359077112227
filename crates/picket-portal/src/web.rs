//! What every page shares: the error page, rendering, the page chrome (who is signed in,
//! the form token), URL building and form fields, safe redirects, and display labels.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use picket_domain::HealthStatus;
use picket_server::app::AppError;
use picket_server::auth::session::SessionUser;

use crate::assets::{CSS_URL, HTMX_URL, JS_URL};

/// Why a page could not be shown or a form not applied.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A use case refused or failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// The role is too low for this page or form.
    #[error("{0}")]
    Forbidden(String),
    /// A form without this session's token, or posted from another site.
    #[error(
        "this form is not from this portal (missing or wrong form token, or another site posted it); reload the page and try again"
    )]
    Csrf,
    /// A template failed to render (a bug).
    #[error("rendering: {0}")]
    Render(#[from] askama::Error),
}

impl PortalError {
    /// 403 for a role that may not change things.
    pub fn read_only() -> PortalError {
        PortalError::Forbidden("your role is viewer: you can look but not change anything".to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            PortalError::App(AppError::NotFound(_)) => StatusCode::NOT_FOUND,
            PortalError::App(AppError::Conflict(_)) => StatusCode::CONFLICT,
            PortalError::App(AppError::Validation(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            PortalError::App(AppError::BadRequest(_)) => StatusCode::BAD_REQUEST,
            PortalError::App(AppError::Forbidden(_)) | PortalError::Forbidden(_) | PortalError::Csrf => {
                StatusCode::FORBIDDEN
            }
            PortalError::App(AppError::Internal(_)) | PortalError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    title: String,
    message: String,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            PortalError::App(AppError::Internal(m)) => {
                tracing::error!(error = %m, "portal request failed");
                "internal error; see the server log".to_string()
            }
            PortalError::Render(e) => {
                tracing::error!(error = %e, "portal template failed");
                "internal error; see the server log".to_string()
            }
            e => e.to_string(),
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(),
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, page.message).into_response(),
        }
    }
}

/// Result of a portal handler.
pub type PortalResult<T> = Result<T, PortalError>;

/// Renders a template as an HTML answer.
pub fn render(t: &impl Template) -> PortalResult<Response> {
    Ok(Html(t.render()?).into_response())
}

/// Renders a template with a status.
pub fn render_status(status: StatusCode, t: &impl Template) -> PortalResult<Response> {
    Ok((status, Html(t.render()?)).into_response())
}

/// The frame around every page: assets, who is signed in, the sign-out form's token.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// URL of htmx.
    pub htmx: &'static str,
    /// URL of the stylesheet.
    pub css: &'static str,
    /// URL of the portal's script.
    pub js: &'static str,
    /// Whether someone is signed in.
    pub signed_in: bool,
    /// Their name.
    pub username: String,
    /// Their role.
    pub role: String,
    /// The session's form token.
    pub csrf: String,
    /// Whether they may change sensors.
    pub can_operate: bool,
    /// Which nav entry is current (`sensors`, `sites`, `onboard`, `releases`, ...).
    pub current: &'static str,
}

impl Chrome {
    /// For pages shown before sign-in.
    pub fn anonymous() -> Chrome {
        Chrome {
            htmx: HTMX_URL,
            css: CSS_URL,
            js: JS_URL,
            signed_in: false,
            username: String::new(),
            role: String::new(),
            csrf: String::new(),
            can_operate: false,
            current: "",
        }
    }

    /// For a signed-in user.
    pub fn of(user: &SessionUser, current: &'static str) -> Chrome {
        Chrome {
            signed_in: true,
            username: user.username().to_string(),
            role: user.principal().role.to_string(),
            csrf: user.csrf_token().to_string(),
            can_operate: user.operator().is_some(),
            current,
            ..Chrome::anonymous()
        }
    }
}

/// Percent-encodes a query value or path segment (everything but RFC 3986 unreserved).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` from pairs (just `path` when there are none).
pub fn url(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    format!("{path}?{}", q.join("&"))
}

/// Where to go after sign-in: only a path on this server (`/...`, not `//host` or `/\host`,
/// which browsers treat as another host), else the Sensors page. Never an absolute URL.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() <= 2048 =>
        {
            n.to_string()
        }
        _ => "/sensors".to_string(),
    }
}

/// The first value of a form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A contract value (`up_to_date`) as a label (`Up to date`).
pub fn label(value: &str) -> String {
    let spaced = value.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A sensor type as people write it.
pub fn type_label(t: picket_domain::SensorType) -> &'static str {
    match t {
        picket_domain::SensorType::DomainController => "Domain controller",
        picket_domain::SensorType::Adfs => "AD FS",
        picket_domain::SensorType::Standalone => "Standalone",
        picket_domain::SensorType::OtNetwork => "OT network",
    }
}

/// A time for tables: `2026-11-22 08:31` (UTC, to the minute); the exact RFC 3339 value
/// goes in the cell's title.
pub fn short_time(t: picket_domain::Timestamp) -> String {
    let full = picket_proto::time::format_ts(t);
    match (full.get(0..10), full.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm}"),
        _ => full,
    }
}

/// The colour class and text of a health status (colour is never the only signal).
pub fn health(h: HealthStatus) -> (&'static str, &'static str) {
    match h {
        HealthStatus::Healthy => ("health-healthy", "Healthy"),
        HealthStatus::NotHealthyLow => ("health-low", "Not healthy (low)"),
        HealthStatus::NotHealthyMedium => ("health-medium", "Not healthy (medium)"),
        HealthStatus::NotHealthyHigh => ("health-high", "Not healthy (high)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_local_path() {
        for (input, expected) in [
            (Some("/sensors?zone=a"), "/sensors?zone=a"),
            (Some("https://evil.example"), "/sensors"),
            (Some("//evil.example/x"), "/sensors"),
            (Some("/\\evil.example"), "/sensors"),
            (Some("/\tevil"), "/sensors"),
            (Some("javascript:alert(1)"), "/sensors"),
            (Some(""), "/sensors"),
            (None, "/sensors"),
        ] {
            assert_eq!(safe_next(input), expected, "{input:?}");
        }
    }

    #[test]
    fn urls_escape_everything_but_unreserved() {
        let pairs = vec![("q".to_string(), "a b&c=d/é".to_string()), ("zone".to_string(), "x".to_string())];
        assert_eq!(url("/sensors", &pairs), "/sensors?q=a%20b%26c%3Dd%2F%C3%A9&zone=x");
        assert_eq!(url("/sensors", &[]), "/sensors");
    }

    #[test]
    fn labels() {
        assert_eq!(label("up_to_date"), "Up to date");
        assert_eq!(label(""), "");
    }
}
