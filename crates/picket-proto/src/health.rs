//! Health issues on the wire: `GET /api/v1/health-issues` (a `ListPage` of these),
//! `GET /api/v1/sensors/{id}/health-issues`, and the answers of `.../close` and `.../reopen`.
//! The notification document written to the outbox (`{"event", "issue", "sensor"}`) is
//! `HealthIssueEvent`.

use picket_domain::Timestamp;
use picket_domain::issues::{HealthIssueKind, IssueStatus};
use picket_domain::{SensorType, Severity};
use serde::{Deserialize, Serialize};

/// A health issue as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthIssueView {
    /// Unique id.
    pub id: String,
    /// The sensor it is about.
    pub sensor_id: String,
    /// The sensor's name.
    pub sensor_name: String,
    /// `disconnected`, `service_stopped`, `start_failed`, ...
    pub kind: HealthIssueKind,
    /// `low`, `medium`, `high`.
    pub severity: Severity,
    /// `open` or `closed`.
    pub status: IssueStatus,
    /// When it (last) opened.
    #[serde(with = "crate::time::rfc3339")]
    pub opened_at: Timestamp,
    /// When it closed; null while open.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub closed_at: Option<Timestamp>,
    /// Who closed it: `system` (the condition ended) or the operator; null while open.
    pub closed_by: Option<String>,
    /// The kind's title.
    pub title: String,
    /// What was observed.
    pub detail: String,
    /// What an operator can do.
    pub recommendation: String,
}

/// The issue inside a notification (the contract's fields of a health issue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventIssue {
    /// Unique id.
    pub id: String,
    /// The sensor.
    pub sensor_id: String,
    /// Kind.
    pub kind: HealthIssueKind,
    /// Severity.
    pub severity: Severity,
    /// `open` for both events.
    pub status: IssueStatus,
    /// When it opened (or was reopened).
    #[serde(with = "crate::time::rfc3339")]
    pub opened_at: Timestamp,
    /// Null for both events.
    #[serde(with = "crate::time::rfc3339_opt")]
    pub closed_at: Option<Timestamp>,
    /// Title.
    pub title: String,
    /// Detail.
    pub detail: String,
    /// Recommendation.
    pub recommendation: String,
}

/// The sensor inside a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSensor {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub sensor_type: SensorType,
    /// Domain.
    pub domain: String,
    /// Site.
    pub site: String,
    /// Zone.
    pub zone: String,
    /// Subscription.
    pub subscription: String,
}

/// The document of a `health_issue.opened` / `health_issue.reopened` notification (outbox
/// payload, webhook body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthIssueEvent {
    /// `health_issue.opened` or `health_issue.reopened`.
    pub event: String,
    /// The issue.
    pub issue: EventIssue,
    /// Its sensor.
    pub sensor: EventSensor,
}
