//! Sensor use cases: onboard, read, list, edit, delete, decommission, mint activation
//! files, count, and stream everything for the export.

use std::collections::BTreeMap;
use std::sync::Arc;

use picket_domain::validate::{
    validate_description, validate_domain, validate_name, validate_site, validate_subscription, validate_tags,
    validate_zone,
};
use picket_domain::{HealthStatus, SensorStatus, StatusContext, ValidationError};
use picket_proto::{ActivationFile, ListPage, OnboardRequest, PatchSensorRequest, SensorConfig, SensorView, Summary};
use picket_store::{
    CursorPos, ExportChunks, ExportEncoder, NewSensor, Scope, SensorFilter, SensorPatch, SensorQuery, SensorRow, Sort,
};

use super::{App, AppError, AppResult, MAX_LIMIT};
use crate::auth::{Operator, Viewer};
use crate::ids::{new_secret_hex, new_uuid, sha256_hex};

/// Longest capture/monitor setting.
pub const MAX_CAPTURE_LEN: usize = 256;

/// A list request after its parameters were parsed.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Filters.
    pub filter: SensorFilter,
    /// Order.
    pub sort: Sort,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1..=`MAX_LIMIT`).
    pub limit: u32,
}

/// A capture setting: trimmed, empty means none; at most 256 characters, no control characters.
fn normalise_capture(config: &SensorConfig) -> Result<Option<String>, ValidationError> {
    let Some(c) = config.capture.as_deref() else { return Ok(None) };
    let c = c.trim();
    if c.is_empty() {
        return Ok(None);
    }
    if c.chars().count() > MAX_CAPTURE_LEN {
        return Err(ValidationError {
            field: "config.capture",
            message: format!("is longer than {MAX_CAPTURE_LEN} characters"),
        });
    }
    if c.chars().any(char::is_control) {
        return Err(ValidationError { field: "config.capture", message: "must not contain control characters".into() });
    }
    Ok(Some(c.to_string()))
}

fn out_of_scope(scope: &Scope) -> AppError {
    let list = match scope {
        Scope::All => String::new(),
        Scope::Subscriptions(s) if s.is_empty() => "none".to_string(),
        Scope::Subscriptions(s) => s.join(", "),
    };
    AppError::Forbidden(format!("this token is limited to the subscriptions: {list}"))
}

/// A sensor as the API shows it, its status derived in `ctx`.
pub fn sensor_view(row: SensorRow, ctx: &StatusContext) -> SensorView {
    let status = picket_domain::derive_sensor_status(&row.facts(), ctx);
    let detail = match status {
        SensorStatus::PendingActivation => Some(match row.activation_expires_at {
            Some(t) if t <= ctx.now => format!(
                "activation token expired at {}; download a new activation file",
                picket_proto::time::format_ts(t)
            ),
            Some(t) => {
                format!("waiting for activation; the activation token expires at {}", picket_proto::time::format_ts(t))
            }
            None => "waiting for activation; download its activation file".to_string(),
        }),
        SensorStatus::Unreachable => row
            .decommissioned_at
            .map(|t| format!("host decommissioned at {}; safe to delete", picket_proto::time::format_ts(t))),
        _ => None,
    };
    SensorView {
        id: row.id,
        name: row.name,
        sensor_type: row.sensor_type,
        domain: row.domain,
        subscription: row.subscription,
        site: row.site,
        zone: row.zone,
        tags: row.tags,
        mode: row.mode,
        auto_ti_updates: row.auto_ti_updates,
        service_status: row.service_status,
        sensor_status: status,
        sensor_status_detail: detail,
        version: row.version.map(|v| v.to_string()),
        delayed_update: row.delayed_update,
        health_status: row.health_status,
        health_issues: row.open_issues,
        created_at: row.created_at,
        last_seen_at: row.last_seen_at,
        config_version_applied: row.config_version_applied,
        config_version_desired: row.config_version_desired,
        ti_version: row.ti_version,
        description: row.description,
        config: SensorConfig { capture: row.capture_setting },
        activated_at: row.activated_at,
        decommissioned_at: row.decommissioned_at,
        cert_expires_at: None,
    }
}

/// A store conflict on a sensor is a duplicate name; say which.
fn duplicate_name(e: AppError, name: &str) -> AppError {
    match e {
        AppError::Conflict(_) => AppError::Conflict(format!(
            "a sensor named {name:?} already exists (names are unique, ignoring case); include the host's IP to tell hosts apart, e.g. {name}-10-0-0-5"
        )),
        e => e,
    }
}

impl App {
    /// Refuses a zone that does not exist, naming the ones that do.
    async fn check_zone(&self, zone: &str) -> AppResult<()> {
        let zones = self.store.list_zones().await?;
        if zones.iter().any(|z| z.name == zone) {
            return Ok(());
        }
        let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
        Err(AppError::Validation(format!(
            "zone: unknown zone {zone:?}; existing zones: {} (create one with POST /api/v1/zones)",
            names.join(", ")
        )))
    }

    /// Refuses a subscription that does not exist (only called once the caller's scope allows it).
    async fn check_subscription(&self, subscription: &str) -> AppResult<()> {
        let subs = self.store.list_subscriptions(&Scope::All).await?;
        if subs.iter().any(|s| s.name == subscription) {
            return Ok(());
        }
        Err(AppError::Validation(format!("subscription: unknown subscription {subscription:?}")))
    }

    /// Onboards a sensor into a subscription the caller may see; 201 material.
    pub async fn onboard(&self, who: &Operator, req: OnboardRequest) -> AppResult<SensorView> {
        let p = who.principal();
        validate_name(&req.name)?;
        validate_domain(&req.domain)?;
        validate_subscription(&req.subscription)?;
        validate_site(&req.site)?;
        validate_zone(&req.zone)?;
        validate_tags(&req.tags)?;
        validate_description(&req.description)?;
        let capture = normalise_capture(&req.config)?;
        if !p.scope.allows(&req.subscription) {
            return Err(out_of_scope(&p.scope));
        }
        self.check_zone(&req.zone).await?;
        self.check_subscription(&req.subscription).await?;
        let now = self.now();
        let new = NewSensor {
            id: new_uuid(),
            name: req.name,
            sensor_type: req.sensor_type,
            domain: req.domain,
            subscription: req.subscription,
            site: req.site,
            zone: req.zone,
            tags: req.tags,
            mode: req.mode,
            auto_ti_updates: req.auto_ti_updates,
            description: req.description,
            capture_setting: capture,
            delayed_update: req.delayed_update,
            created_at: now,
        };
        let name = new.name.clone();
        let row = self
            .store
            .create_sensor(&new, &p.audit("sensor.onboard", now))
            .await
            .map_err(|e| duplicate_name(e.into(), &name))?;
        Ok(sensor_view(row, &self.status_context().await?))
    }

    /// One sensor in the caller's scope.
    pub async fn get_sensor(&self, who: &Viewer, id: &str) -> AppResult<SensorView> {
        let row = self.store.get_sensor(id, &who.principal().scope).await?.ok_or(AppError::NotFound("sensor"))?;
        let mut view = sensor_view(row, &self.status_context().await?);
        view.cert_expires_at = self.sensor_cert_expiry(&view.id).await?;
        Ok(view)
    }

    /// One page of sensors in the caller's scope, with the total that match.
    pub async fn list_sensors(&self, who: &Viewer, req: ListRequest) -> AppResult<ListPage<SensorView>> {
        let (items, next_cursor, total) = self.sensor_page(who, req, true).await?;
        Ok(ListPage { items, next_cursor, total: total.unwrap_or_default() })
    }

    /// One page of sensors in the caller's scope and its `next_cursor`, without counting
    /// every match for a total (the portal's live rows, refreshed every few seconds per open
    /// page: a count over hundreds of thousands of matches would cost more than the page).
    pub async fn list_sensor_rows(
        &self,
        who: &Viewer,
        req: ListRequest,
    ) -> AppResult<(Vec<SensorView>, Option<String>)> {
        let (items, next_cursor, _) = self.sensor_page(who, req, false).await?;
        Ok((items, next_cursor))
    }

    async fn sensor_page(
        &self,
        who: &Viewer,
        req: ListRequest,
        with_total: bool,
    ) -> AppResult<(Vec<SensorView>, Option<String>, Option<u64>)> {
        let scope = who.principal().scope.clone();
        let limit = req.limit.clamp(1, MAX_LIMIT);
        let after = match req.cursor.as_deref() {
            Some(c) => Some(CursorPos::decode(c, req.sort).map_err(|e| AppError::BadRequest(e.to_string()))?),
            None => None,
        };
        let ctx = self.status_context().await?;
        let query = SensorQuery { scope, filter: req.filter, sort: req.sort, after, limit: limit + 1, status: ctx };
        // Count first: the backend picks the page's plan by how many sensors match (without
        // a total, the backend counts only as far as that choice needs).
        let (mut rows, total) = if with_total {
            let total = self.store.count_sensors(&query.scope, &query.filter, &ctx).await?;
            (self.store.list_sensors_matching(&query, total).await?, Some(total))
        } else {
            (self.store.list_sensors(&query).await?, None)
        };
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(
                CursorPos { sort: req.sort.as_param(), value: last.sort_value.clone(), id: last.row.id.clone() }
                    .encode(),
            ),
            _ => None,
        };
        let items = rows.into_iter().map(|l| sensor_view(l.row, &ctx)).collect();
        Ok((items, next_cursor, total))
    }

    /// Every sensor matching, for a streamed export.
    pub async fn export_sensors(
        self: &Arc<Self>,
        who: &Viewer,
        filter: SensorFilter,
        sort: Sort,
    ) -> AppResult<SensorBatches> {
        let status = self.status_context().await?;
        let scope = who.principal().scope.clone();
        let query = SensorQuery { scope, filter, sort, after: None, limit: u32::MAX, status };
        Ok(SensorBatches { app: self.clone(), query })
    }

    /// Applies an edit; a new capture setting bumps the desired config version.
    pub async fn patch_sensor(&self, who: &Operator, id: &str, req: PatchSensorRequest) -> AppResult<SensorView> {
        let p = who.principal();
        if let Some(n) = &req.name {
            validate_name(n)?;
        }
        if let Some(s) = &req.site {
            validate_site(s)?;
        }
        if let Some(z) = &req.zone {
            validate_zone(z)?;
        }
        if let Some(t) = &req.tags {
            validate_tags(t)?;
        }
        if let Some(d) = &req.description {
            validate_description(d)?;
        }
        if let Some(z) = &req.zone {
            self.check_zone(z).await?;
        }
        let capture_setting = match &req.config {
            Some(c) => Some(normalise_capture(c)?),
            None => None,
        };
        let new_name = req.name.clone().unwrap_or_default();
        let patch = SensorPatch {
            name: req.name,
            site: req.site,
            zone: req.zone,
            tags: req.tags,
            description: req.description,
            delayed_update: req.delayed_update,
            auto_ti_updates: req.auto_ti_updates,
            capture_setting,
        };
        let now = self.now();
        let row = self
            .store
            .update_sensor(id, &p.scope, &patch, &p.audit("sensor.update", now))
            .await
            .map_err(|e| duplicate_name(AppError::from(e).not_found_as("sensor"), &new_name))?;
        Ok(sensor_view(row, &self.status_context().await?))
    }

    /// Deletes a sensor, which revokes its certificate (at once on this replica: the
    /// authentication cache is cleared; on others within `SENSOR_AUTH_TTL`).
    pub async fn delete_sensor(&self, who: &Operator, id: &str) -> AppResult<()> {
        let p = who.principal();
        let deleted = self
            .store
            .delete_sensor(id, &p.scope, &p.audit("sensor.delete", self.now()))
            .await
            .map_err(|e| AppError::from(e).not_found_as("sensor"));
        self.sensor_auth.revoke_all();
        deleted
    }

    /// Marks a sensor's host as gone from the directory: it becomes `unreachable`.
    pub async fn decommission_sensor(&self, who: &Operator, id: &str) -> AppResult<SensorView> {
        let p = who.principal();
        let row = self
            .store
            .decommission_sensor(id, &p.scope, &p.audit("sensor.decommission", self.now()))
            .await
            .map_err(|e| AppError::from(e).not_found_as("sensor"))?;
        Ok(sensor_view(row, &self.status_context().await?))
    }

    /// Mints a new one-time activation token (only its SHA-256 is stored; earlier ones stop
    /// working) and returns the activation file carrying it. Refused once activated.
    #[tracing::instrument(skip_all)]
    pub async fn activation_file(&self, who: &Operator, id: &str) -> AppResult<ActivationFile> {
        let p = who.principal();
        let token = new_secret_hex();
        let now = self.now();
        let expires_at = now.plus(self.config.activation_ttl);
        let row = self
            .store
            .set_activation_token(id, &p.scope, &sha256_hex(&token), expires_at, &p.audit("sensor.activation_file", now))
            .await
            .map_err(|e| match AppError::from(e).not_found_as("sensor") {
                AppError::Conflict(_) => AppError::Conflict(format!(
                    "sensor {id} is already activated; to activate a host again, delete the sensor, onboard it again and download a new activation file"
                )),
                e => e,
            })?;
        let control_plane_urls = if self.config.sensor_urls.is_empty() {
            vec![format!("https://{}", self.config.sensor_listen)]
        } else {
            self.config.sensor_urls.clone()
        };
        Ok(ActivationFile {
            format: picket_proto::activation::ACTIVATION_FORMAT,
            sensor_id: row.id,
            sensor_name: row.name,
            mode: row.mode,
            control_plane_urls,
            ca_cert_pem: self.ca_cert_pem.clone(),
            activation_token: token,
            expires_at,
            package_signing_keys: self.package_signing_keys.clone(),
        })
    }

    /// Fleet counts in the caller's scope, every status present.
    pub async fn summary(&self, who: &Viewer) -> AppResult<Summary> {
        let ctx = self.status_context().await?;
        let c = self.store.summary(&who.principal().scope, &ctx).await?;
        let mut by_sensor_status: BTreeMap<String, u64> =
            SensorStatus::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
        for (s, n) in c.by_sensor_status {
            *by_sensor_status.entry(s.as_str().to_string()).or_default() += n;
        }
        let mut by_health_status: BTreeMap<String, u64> =
            HealthStatus::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
        for (s, n) in c.by_health_status {
            *by_health_status.entry(s.as_str().to_string()).or_default() += n;
        }
        Ok(Summary {
            total: c.total,
            cloud_connected: c.cloud_connected,
            locally_managed: c.locally_managed,
            by_sensor_status,
            by_health_status,
        })
    }
}

/// Every matching sensor for a streamed export: its scope, filter and sort, with statuses
/// derived at the moment the export started (in SQL, by the same rules as the list's filter;
/// only the CSV's columns are read: `picket_store::export`). The store reads it in one
/// ordered pass when the body is streamed ([`SensorBatches::chunks`]).
pub struct SensorBatches {
    app: Arc<App>,
    query: SensorQuery,
}

impl SensorBatches {
    /// The export as chunks of about `chunk_bytes`, each row written by `encoder`.
    pub fn chunks(self, encoder: Box<dyn ExportEncoder>, chunk_bytes: usize) -> ExportChunks {
        self.app.store.export_stream(&self.query, encoder, chunk_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_settings() {
        let c = |s: Option<&str>| normalise_capture(&SensorConfig { capture: s.map(str::to_string) });
        assert_eq!(c(None).unwrap(), None);
        assert_eq!(c(Some("  ")).unwrap(), None);
        assert_eq!(c(Some(" eth1 ")).unwrap(), Some("eth1".to_string()));
        assert!(c(Some("a\u{7}")).is_err());
        assert_eq!(c(Some(&"x".repeat(257))).unwrap_err().field, "config.capture");
    }
}
