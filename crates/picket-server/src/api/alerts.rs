//! `GET /api/v1/alerts`: detection alerts, newest first, as `{"items", "next_cursor",
//! "total"}`; filters `sensor_id` and `severity` (comma-separated or repeated), `since`
//! (RFC 3339: alerts whose time is at or after it), `limit`, `cursor`. Any role; the caller's
//! subscription scope applies (alerts of sensors outside it are invisible).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use picket_domain::Severity;
use picket_proto::ListPage;
use picket_proto::ti::AlertView;

use super::error::ApiError;
use super::extract::ApiQuery;
use crate::app::alerts::AlertListRequest;
use crate::app::{App, AppError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::auth::Viewer;

/// Query parameters of the alert list.
pub const ALERT_PARAMS: &[&str] = &["sensor_id", "severity", "since", "limit", "cursor"];

/// Parses the parameters of the alert list; unknown ones are refused, naming the accepted ones.
pub fn parse_alert_list(pairs: &[(String, String)]) -> Result<AlertListRequest, AppError> {
    let mut req = AlertListRequest { limit: DEFAULT_LIMIT, ..AlertListRequest::default() };
    for (name, raw) in pairs {
        let values = || raw.split(',').map(str::trim).filter(|v| !v.is_empty());
        match name.as_str() {
            "sensor_id" => req.filter.sensor_id.extend(values().map(str::to_string)),
            "severity" => {
                for v in values() {
                    let s: Severity = v.parse().map_err(|e| AppError::BadRequest(format!("severity: {e}")))?;
                    req.filter.severity.push(s);
                }
            }
            "since" => {
                let raw = raw.trim();
                if !raw.is_empty() {
                    req.filter.since = Some(picket_proto::time::parse_ts(raw).ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "since: {raw:?} is not an RFC 3339 time; write e.g. 2026-11-22T10:00:00Z"
                        ))
                    })?);
                }
            }
            "limit" => {
                req.limit =
                    raw.trim().parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                        AppError::BadRequest(format!("limit: {raw:?} is not a number from 1 to {MAX_LIMIT}"))
                    })?;
            }
            "cursor" => req.cursor = Some(raw.trim().to_string()).filter(|c| !c.is_empty()),
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown parameter {other:?}; accepted: {}",
                    ALERT_PARAMS.join(", ")
                )));
            }
        }
    }
    Ok(req)
}

/// `GET /api/v1/alerts`.
pub async fn list(
    State(app): State<Arc<App>>,
    who: Viewer,
    ApiQuery(q): ApiQuery,
) -> Result<Json<ListPage<AlertView>>, ApiError> {
    let req = parse_alert_list(&q)?;
    Ok(Json(app.list_alerts(&who, req).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn filters_parse_and_refusals_say_what_is_accepted() {
        let r = parse_alert_list(&q(&[
            ("sensor_id", "a,b"),
            ("severity", "high"),
            ("severity", "low"),
            ("since", "2026-11-22T10:00:00Z"),
            ("limit", "7"),
        ]))
        .unwrap();
        assert_eq!(r.filter.sensor_id, ["a", "b"]);
        assert_eq!(r.filter.severity, [Severity::High, Severity::Low]);
        assert_eq!(r.filter.since, picket_proto::time::parse_ts("2026-11-22T10:00:00Z"));
        assert_eq!(r.limit, 7);
        let err = |p: &[(&str, &str)]| parse_alert_list(&q(p)).unwrap_err().to_string();
        assert!(err(&[("severity", "critical")]).contains("low, medium, high"));
        assert!(err(&[("since", "yesterday")]).contains("RFC 3339"));
        assert!(err(&[("limit", "0")]).contains("1 to 1000"));
        assert!(err(&[("kind", "x")]).contains("accepted: sensor_id, severity, since, limit, cursor"));
        assert_eq!(parse_alert_list(&q(&[("since", "")])).unwrap().filter.since, None);
    }
}
