//! Alert calls of the client: `GET /api/v1/alerts` (filters `sensor_id`, `severity`, `since`;
//! newest first, keyset paged).

use picket_proto::ListPage;
use picket_proto::ti::AlertView;
use reqwest::Method;

use crate::{CALL_TIMEOUT, Client, ClientError};

/// Filters and paging of `GET /api/v1/alerts`; empty fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertListParams {
    /// Sensor ids.
    pub sensor_id: Vec<String>,
    /// `low`, `medium`, `high`.
    pub severity: Vec<String>,
    /// RFC 3339 time: only alerts at or after it.
    pub since: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl AlertListParams {
    /// The query pairs to send, skipping empty fields.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, values) in [("sensor_id", &self.sensor_id), ("severity", &self.severity)] {
            if !values.is_empty() {
                out.push((name, values.join(",")));
            }
        }
        if let Some(s) = &self.since {
            out.push(("since", s.clone()));
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
    /// `GET /api/v1/alerts`: one page, newest first.
    pub async fn list_alerts(&self, params: &AlertListParams) -> Result<ListPage<AlertView>, ClientError> {
        let url = self.url(&["api", "v1", "alerts"]);
        let req = self.request(Method::GET, url.clone()).query(&params.to_query()).timeout(CALL_TIMEOUT);
        self.json(req, url).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_not_sent() {
        assert!(AlertListParams::default().to_query().is_empty());
        let p = AlertListParams {
            severity: vec!["high".into(), "medium".into()],
            since: Some("2026-11-22T10:00:00Z".into()),
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(
            p.to_query(),
            vec![
                ("severity", "high,medium".to_string()),
                ("since", "2026-11-22T10:00:00Z".to_string()),
                ("limit", "5".to_string())
            ]
        );
    }
}
