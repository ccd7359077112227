//! Detection alerts: the upload of a cloud-connected sensor (`POST /sensor/v1/alerts`: checked
//! whole before anything is stored, excerpts cut to `MAX_EXCERPT_BYTES` on a char boundary,
//! stored idempotently per (sensor, alert id) with one `alert.raised` notification per newly
//! stored alert, in one transaction: `picket_store::AlertStore`), and the list of the REST
//! API and portal (`GET /api/v1/alerts`), newest first, in the caller's subscription scope.
//! Forwarding is the notification worker's (`notify`): an alert is an outbox row.

use picket_domain::alerts::{check_alert_id, check_description, check_indicator, check_ti_version, cut_excerpt};
use picket_domain::{Mode, Severity};
use picket_proto::ListPage;
use picket_proto::ti::{
    AlertIndicator, AlertUpload, AlertUploadResponse, AlertView, MAX_ALERTS_PER_UPLOAD, MAX_EXCERPT_BYTES, SensorAlert,
};
use picket_store::SensorRow;
use picket_store::alerts::{AlertCursor, AlertFilter, AlertQuery, NewAlert, StoredAlert};

use super::{App, AppError, AppResult, MAX_LIMIT};
use crate::auth::Viewer;

/// Why an upload was refused (nothing of it was stored).
#[derive(Debug, thiserror::Error)]
pub enum AlertRefusal {
    /// More alerts than `MAX_ALERTS_PER_UPLOAD` in one batch.
    #[error(
        "an upload carries at most {max} alerts, this one {got}; send the queue in batches of {max}",
        max = MAX_ALERTS_PER_UPLOAD
    )]
    TooMany {
        /// How many it carried.
        got: usize,
    },
    /// The sensor is locally managed: it keeps its alerts on its host.
    #[error(
        "sensor {0} is locally managed: its alerts stay on its host (picket-sensor alerts list); \
only cloud-connected sensors upload alerts"
    )]
    LocallyManaged(String),
    /// A field is refused; the message names the alert and the field.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    App(#[from] AppError),
}

/// A parsed list request for alerts.
#[derive(Debug, Clone, Default)]
pub struct AlertListRequest {
    /// Filters.
    pub filter: AlertFilter,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1..=`MAX_LIMIT`).
    pub limit: u32,
}

/// An alert as the API shows it.
pub fn alert_view(a: StoredAlert) -> AlertView {
    AlertView {
        id: a.id,
        sensor_id: a.sensor_id,
        sensor_name: a.sensor_name,
        time: a.time,
        indicator: AlertIndicator { kind: a.indicator_type, value: a.indicator_value },
        severity: a.severity.as_str().to_string(),
        excerpt: a.excerpt,
        description: a.description,
        ti_version: a.ti_version,
        received_at: a.received_at,
    }
}

/// Checks one uploaded alert and normalizes it (excerpt cut); errors name the field.
pub fn check_alert(a: &SensorAlert) -> Result<NewAlert, String> {
    check_alert_id(&a.id)?;
    check_indicator(&a.indicator.kind, &a.indicator.value)?;
    let severity: Severity = a.severity.parse().map_err(|e| format!("severity: {e}"))?;
    check_description(a.description.as_deref())?;
    check_ti_version(a.ti_version)?;
    Ok(NewAlert {
        id: a.id.clone(),
        time: a.time,
        indicator_type: a.indicator.kind.clone(),
        indicator_value: a.indicator.value.clone(),
        severity,
        excerpt: cut_excerpt(&a.excerpt, MAX_EXCERPT_BYTES).to_string(),
        description: a.description.clone().filter(|d| !d.is_empty()),
        ti_version: a.ti_version,
    })
}

/// Checks a whole upload: its size, then every alert (the first bad one is named by its
/// position and id).
pub fn check_upload(upload: &AlertUpload) -> Result<Vec<NewAlert>, AlertRefusal> {
    if upload.alerts.len() > MAX_ALERTS_PER_UPLOAD {
        return Err(AlertRefusal::TooMany { got: upload.alerts.len() });
    }
    upload
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| check_alert(a).map_err(|e| AlertRefusal::Invalid(format!("alerts[{i}] (id {:?}): {e}", a.id))))
        .collect()
}

impl App {
    /// `POST /sensor/v1/alerts`: stores `sensor`'s batch (each alert once, however often it
    /// is sent) and its notifications; the answer counts what was new and what was a repeat.
    pub async fn upload_alerts(
        &self,
        sensor: &SensorRow,
        upload: &AlertUpload,
    ) -> Result<AlertUploadResponse, AlertRefusal> {
        if sensor.mode == Mode::LocallyManaged {
            return Err(AlertRefusal::LocallyManaged(sensor.name.clone()));
        }
        let alerts = check_upload(upload)?;
        let stored = self.store.insert_alerts(sensor, &alerts, self.now()).await.map_err(AppError::from)?;
        if stored.accepted > 0 {
            metrics::counter!("picket_alerts_received_total").increment(stored.accepted);
            tracing::info!(sensor = %sensor.name, accepted = stored.accepted, duplicates = stored.duplicates, "alerts stored");
        }
        Ok(AlertUploadResponse { accepted: stored.accepted, duplicates: stored.duplicates })
    }

    /// `GET /api/v1/alerts`: newest first, in the caller's scope.
    pub async fn list_alerts(&self, who: &Viewer, req: AlertListRequest) -> AppResult<ListPage<AlertView>> {
        let scope = who.principal().scope.clone();
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let after = match req.cursor.as_deref() {
            Some(c) => Some(AlertCursor::decode(c).ok_or_else(|| {
                AppError::BadRequest("cursor: not a cursor returned by this server; start again without one".into())
            })?),
            None => None,
        };
        let total = self.store.count_alerts(&scope, &req.filter).await?;
        let query = AlertQuery { scope, filter: req.filter, after, limit: limit + 1 };
        let mut rows = self.store.list_alerts(&query).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => {
                Some(AlertCursor { time: last.time.0, sensor_id: last.sensor_id.clone(), id: last.id.clone() }.encode())
            }
            _ => None,
        };
        Ok(ListPage { items: rows.into_iter().map(alert_view).collect(), next_cursor, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::Timestamp;

    fn alert(id: &str) -> SensorAlert {
        SensorAlert {
            id: id.to_string(),
            time: Timestamp(1_800_000_000_000),
            indicator: AlertIndicator { kind: "ip".into(), value: "203.0.113.7".into() },
            severity: "high".into(),
            excerpt: "x".into(),
            description: None,
            ti_version: Some(3),
            sensor_id: Some("ignored".into()),
        }
    }

    #[test]
    fn uploads_are_checked_whole() {
        let ok = AlertUpload { alerts: vec![alert("a"), alert("b")] };
        assert_eq!(check_upload(&ok).unwrap().len(), 2);
        let too_many = AlertUpload { alerts: vec![alert("a"); MAX_ALERTS_PER_UPLOAD + 1] };
        let e = check_upload(&too_many).unwrap_err();
        assert!(matches!(e, AlertRefusal::TooMany { got } if got == MAX_ALERTS_PER_UPLOAD + 1));
        assert!(e.to_string().contains("at most 500"), "{e}");
        let full = AlertUpload { alerts: vec![alert("a"); MAX_ALERTS_PER_UPLOAD] };
        assert!(check_upload(&full).is_ok(), "exactly the maximum is fine");
        let mut bad = alert("c");
        bad.severity = "critical".into();
        let e = check_upload(&AlertUpload { alerts: vec![alert("a"), bad] }).unwrap_err().to_string();
        assert!(e.starts_with("alerts[1] (id \"c\"): severity") && e.contains("low, medium, high"), "{e}");
        let mut bad = alert("d");
        bad.indicator.kind = "url".into();
        assert!(check_upload(&AlertUpload { alerts: vec![bad] }).unwrap_err().to_string().contains("indicator.type"));
    }

    #[test]
    fn excerpts_are_cut_on_a_char_boundary() {
        let mut a = alert("e");
        a.excerpt = format!("{}€tail", "a".repeat(MAX_EXCERPT_BYTES - 1));
        let n = check_alert(&a).unwrap();
        assert_eq!(n.excerpt, "a".repeat(MAX_EXCERPT_BYTES - 1), "the € would cross the limit");
        a.excerpt = "short".into();
        assert_eq!(check_alert(&a).unwrap().excerpt, "short");
    }
}
