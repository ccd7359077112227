//! Health issue endpoints: `GET /api/v1/health-issues` (filters `status`, `severity`, `kind`,
//! `sensor_id`, comma-separated or repeated; `limit`, `cursor`), `GET
//! /api/v1/sensors/{id}/health-issues`, `POST /api/v1/health-issues/{id}/close` and
//! `.../reopen` (operator; audited).

use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use picket_proto::ListPage;
use picket_proto::health::HealthIssueView;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use crate::app::health::IssueListRequest;
use crate::app::{App, AppError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::auth::{Operator, Viewer};

type ApiResult<T> = Result<T, ApiError>;

/// Query parameters of the issue lists.
pub const ISSUE_PARAMS: &[&str] = &["status", "severity", "kind", "sensor_id", "limit", "cursor"];

fn parse_all<T: FromStr>(param: &str, raw: &str, out: &mut Vec<T>) -> Result<(), AppError>
where
    T::Err: std::fmt::Display,
{
    for v in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        out.push(v.parse::<T>().map_err(|e| AppError::BadRequest(format!("{param}: {e}")))?);
    }
    Ok(())
}

/// Parses the parameters of an issue list; unknown ones are refused, naming the accepted ones.
pub fn parse_issue_list(pairs: &[(String, String)], sensor_id_allowed: bool) -> Result<IssueListRequest, AppError> {
    let mut req = IssueListRequest { limit: DEFAULT_LIMIT, ..IssueListRequest::default() };
    for (name, raw) in pairs {
        match name.as_str() {
            "status" => parse_all(name, raw, &mut req.filter.status)?,
            "severity" => parse_all(name, raw, &mut req.filter.severity)?,
            "kind" => parse_all(name, raw, &mut req.filter.kind)?,
            "sensor_id" if sensor_id_allowed => parse_all(name, raw, &mut req.filter.sensor_id)?,
            "limit" => {
                req.limit =
                    raw.trim().parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                        AppError::BadRequest(format!("limit: {raw:?} is not a number from 1 to {MAX_LIMIT}"))
                    })?;
            }
            "cursor" => req.cursor = Some(raw.trim().to_string()).filter(|c| !c.is_empty()),
            other => {
                let accepted: Vec<&str> =
                    ISSUE_PARAMS.iter().copied().filter(|p| sensor_id_allowed || *p != "sensor_id").collect();
                return Err(AppError::BadRequest(format!(
                    "unknown parameter {other:?}; accepted: {}",
                    accepted.join(", ")
                )));
            }
        }
    }
    Ok(req)
}

/// `GET /api/v1/health-issues`.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Viewer,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<ListPage<HealthIssueView>>> {
    let req = parse_issue_list(&q, true)?;
    Ok(Json(app.list_health_issues(&who, req).await?))
}

/// `GET /api/v1/sensors/{id}/health-issues`.
pub async fn of_sensor(
    State(app): State<Arc<App>>,
    who: Viewer,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<ListPage<HealthIssueView>>> {
    let req = parse_issue_list(&q, false)?;
    Ok(Json(app.sensor_health_issues(&who, &id, req).await?))
}

/// `POST /api/v1/health-issues/{id}/close`.
pub async fn close(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<HealthIssueView>> {
    Ok(Json(app.close_health_issue(&who, &id).await?))
}

/// `POST /api/v1/health-issues/{id}/reopen`.
pub async fn reopen(
    State(app): State<Arc<App>>,
    who: Operator,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<HealthIssueView>> {
    Ok(Json(app.reopen_health_issue(&who, &id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::Severity;
    use picket_domain::issues::{HealthIssueKind, IssueStatus};

    fn q(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn filters_accumulate_and_refusals_name_the_accepted() {
        let r = parse_issue_list(
            &q(&[
                ("status", "open"),
                ("severity", "high,low"),
                ("kind", "disconnected"),
                ("sensor_id", "a,b"),
                ("limit", "3"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(r.filter.status, [IssueStatus::Open]);
        assert_eq!(r.filter.severity, [Severity::High, Severity::Low]);
        assert_eq!(r.filter.kind, [HealthIssueKind::Disconnected]);
        assert_eq!(r.filter.sensor_id, ["a", "b"]);
        assert_eq!(r.limit, 3);
        let err = |p: &[(&str, &str)], s: bool| parse_issue_list(&q(p), s).unwrap_err().to_string();
        assert!(err(&[("status", "done")], true).contains("open, closed"));
        assert!(err(&[("kind", "fire")], true).contains("service_stopped"));
        assert!(err(&[("limit", "0")], true).contains("1 to 1000"));
        assert!(err(&[("sensor_id", "x")], false).contains("accepted: status, severity, kind, limit, cursor"));
    }
}
