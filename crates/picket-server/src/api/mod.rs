//! The REST API (`/api/v1`), `/healthz`, `/metrics` and `/api/openapi.json`.
//!
//! Handlers are thin: extract (permissions are extractor types from `auth`), call one use
//! case of `app`, render. The route table is kept beside the router so a test can check
//! that the hand-written `openapi.json` lists every route and nothing else.

mod admin;
pub mod alerts;
pub mod error;
pub mod extract;
pub mod health;
mod ops;
pub mod params;
mod releases;
mod rollouts;
mod sensors;
mod ti;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::App;
use error::ApiError;

/// The OpenAPI document, written by hand and served as is.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// What handlers share: the use cases and the metrics handle.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub app: Arc<App>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

impl FromRef<AppState> for Arc<App> {
    fn from_ref(s: &AppState) -> Arc<App> {
        s.app.clone()
    }
}

impl FromRef<AppState> for PrometheusHandle {
    fn from_ref(s: &AppState) -> PrometheusHandle {
        s.metrics.clone()
    }
}

/// A router being built, with the `(method, path)` of each route recorded.
struct Routes {
    router: Router<AppState>,
    table: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(mut self, method: &'static str, path: &'static str, mr: MethodRouter<AppState>) -> Routes {
        self.table.push((method, path));
        self.router = self.router.route(path, mr);
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add("GET", path, get(h))
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add("POST", path, post(h))
    }

    fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add("PATCH", path, patch(h))
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add("DELETE", path, delete(h))
    }

    fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add("PUT", path, put(h))
    }
}

fn routes() -> Routes {
    Routes { router: Router::new(), table: Vec::new() }
        .get("/healthz", ops::healthz)
        .get("/metrics", ops::metrics)
        .get("/api/openapi.json", ops::openapi)
        .post("/api/v1/sensors", sensors::onboard)
        .get("/api/v1/sensors", sensors::list)
        .get("/api/v1/sensors/export.csv", sensors::export_csv)
        .get("/api/v1/sensors/{id}", sensors::get_one)
        .patch("/api/v1/sensors/{id}", sensors::patch_one)
        .delete("/api/v1/sensors/{id}", sensors::delete_one)
        .post("/api/v1/sensors/{id}/decommission", sensors::decommission)
        .get("/api/v1/sensors/{id}/activation-file", sensors::activation_file)
        .get("/api/v1/sensors/{id}/health-issues", health::of_sensor)
        .get("/api/v1/health-issues", health::list)
        .post("/api/v1/health-issues/{id}/close", health::close)
        .post("/api/v1/health-issues/{id}/reopen", health::reopen)
        .get("/api/v1/summary", sensors::summary)
        .get("/api/v1/releases", releases::list)
        .post("/api/v1/releases", releases::publish)
        .get("/api/v1/ti-packages", ti::list)
        .post("/api/v1/ti-packages", ti::publish)
        .get("/api/v1/ti-packages/{version}/download", ti::download)
        .get("/api/v1/rollouts/current", rollouts::current)
        .post("/api/v1/rollouts/current/pause", rollouts::pause)
        .post("/api/v1/rollouts/current/resume", rollouts::resume)
        .post("/api/v1/rollouts/current/rollback", rollouts::rollback)
        .get("/api/v1/alerts", alerts::list)
        .get("/api/v1/zones", admin::list_zones)
        .post("/api/v1/zones", admin::create_zone)
        .get("/api/v1/subscriptions", admin::list_subscriptions)
        .post("/api/v1/subscriptions", admin::create_subscription)
        .get("/api/v1/tokens", admin::list_tokens)
        .post("/api/v1/tokens", admin::create_token)
        .delete("/api/v1/tokens/{id}", admin::revoke_token)
        .get("/api/v1/audit", admin::list_audit)
        .get("/api/v1/users", users::list)
        .post("/api/v1/users", users::create)
        .delete("/api/v1/users/{name}", users::delete)
        .put("/api/v1/users/{name}/password", users::set_password)
        .get("/api/v1/webhooks", webhooks::list)
        .post("/api/v1/webhooks", webhooks::create)
        .delete("/api/v1/webhooks/{id}", webhooks::delete)
}

/// Every `(method, path)` the router serves.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    routes().table
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The HTTP face of the control plane over `app`.
pub fn router(app: Arc<App>, metrics: PrometheusHandle) -> Router {
    routes()
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(AppState { app, metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_route_and_only_those() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        let paths = doc["paths"].as_object().unwrap();
        let table = route_table();
        for (method, path) in &table {
            let op = &paths.get(*path).unwrap_or_else(|| panic!("{path} missing in openapi.json"))
                [method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} missing in openapi.json");
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
        }
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
                let m = method.to_ascii_uppercase();
                assert!(
                    table.iter().any(|(tm, tp)| *tm == m && tp == path),
                    "openapi.json lists {m} {path}, which the router does not serve"
                );
            }
        }
    }
}
