//! Health issue calls of the client: list (all, or one sensor's), close, reopen.

use picket_proto::ListPage;
use picket_proto::health::HealthIssueView;
use reqwest::Method;

use crate::{CALL_TIMEOUT, Client, ClientError};

/// Filters and paging of `GET /api/v1/health-issues`; empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueListParams {
    /// `open`, `closed`.
    pub status: Vec<String>,
    /// `low`, `medium`, `high`.
    pub severity: Vec<String>,
    /// Kinds (`disconnected`, ...).
    pub kind: Vec<String>,
    /// Sensor ids.
    pub sensor_id: Vec<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl IssueListParams {
    /// The query pairs to send, skipping empty fields.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, values) in [
            ("status", &self.status),
            ("severity", &self.severity),
            ("kind", &self.kind),
            ("sensor_id", &self.sensor_id),
        ] {
            if !values.is_empty() {
                out.push((name, values.join(",")));
            }
        }
        if let Some(l) = self.limit {
            out.push(("limit", l.to_string()));
        }
        if let Some(c) = &self.cursor {
            out.push(("cursor", c.clone()));
        }
        out
    }
}

impl Client {
    /// `GET /api/v1/health-issues`: one page, newest first.
    pub async fn list_health_issues(&self, params: &IssueListParams) -> Result<ListPage<HealthIssueView>, ClientError> {
        let url = self.url(&["api", "v1", "health-issues"]);
        let req = self.request(Method::GET, url.clone()).query(&params.to_query()).timeout(CALL_TIMEOUT);
        self.json(req, url).await
    }

    /// `POST /api/v1/health-issues/{id}/close` (operator).
    pub async fn close_health_issue(&self, id: &str) -> Result<HealthIssueView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "health-issues", id, "close"], &serde_json::json!({})).await
    }

    /// `POST /api/v1/health-issues/{id}/reopen` (operator).
    pub async fn reopen_health_issue(&self, id: &str) -> Result<HealthIssueView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "health-issues", id, "reopen"], &serde_json::json!({})).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_not_sent() {
        assert!(IssueListParams::default().to_query().is_empty());
        let p = IssueListParams {
            status: vec!["open".into()],
            kind: vec!["disconnected".into(), "outdated".into()],
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(
            p.to_query(),
            vec![
                ("status", "open".to_string()),
                ("kind", "disconnected,outdated".to_string()),
                ("limit", "5".to_string())
            ]
        );
    }
}
