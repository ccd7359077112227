//! Embedded static files: htmx (committed as shipped, 2.0.11), the portal's stylesheet and script,
//! served under versioned names so they can be cached for a year and never go stale.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// htmx, exactly as released.
const HTMX: &[u8] = include_bytes!("../assets/htmx-2.0.11.min.js");
/// The portal's one stylesheet.
const CSS: &[u8] = include_bytes!("../assets/portal.css");
/// The portal's own script (menus, pausing live refreshes).
const JS: &[u8] = include_bytes!("../assets/portal.js");

/// URL of htmx (its version is in the name).
pub const HTMX_URL: &str = "/static/htmx-2.0.11.min.js";
/// URL of the stylesheet; bump the number when `portal.css` changes.
pub const CSS_URL: &str = "/static/portal-6.css";
/// URL of the script; bump the number when `portal.js` changes.
pub const JS_URL: &str = "/static/portal-1.js";

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match format!("/static/{file}").as_str() {
        HTMX_URL => (HTMX, "text/javascript; charset=utf-8"),
        CSS_URL => (CSS, "text/css; charset=utf-8"),
        JS_URL => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    resp
}
