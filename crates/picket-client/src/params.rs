//! `SensorListParams`: the filters, sort and paging of `GET /api/v1/sensors` and of the CSV
//! export, encoded as the comma-separated query parameters the server reads.

/// Filters, sort and paging of the sensor list and export; empty fields are not sent.
///
/// Values are the contract's spellings (`disconnected`, `domain_controller`, ...); each field
/// matches any of its values and fields combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensorListParams {
    /// `sensor_status` values.
    pub sensor_status: Vec<String>,
    /// `service_status` values.
    pub service_status: Vec<String>,
    /// `health_status` values.
    pub health_status: Vec<String>,
    /// `type` values.
    pub sensor_type: Vec<String>,
    /// `domain` values.
    pub domain: Vec<String>,
    /// `subscription` values.
    pub subscription: Vec<String>,
    /// `site` values.
    pub site: Vec<String>,
    /// `zone` values.
    pub zone: Vec<String>,
    /// `tag` values (has any of them).
    pub tag: Vec<String>,
    /// `mode` values.
    pub mode: Vec<String>,
    /// `version` values.
    pub version: Vec<String>,
    /// `delayed_update` membership.
    pub delayed_update: Option<bool>,
    /// Case-insensitive name search (`q`).
    pub q: Option<String>,
    /// Sort (`name`, `-last_seen_at`, ...).
    pub sort: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl SensorListParams {
    /// The query pairs to send, in a stable order, skipping empty fields.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let lists: [(&'static str, &Vec<String>); 11] = [
            ("sensor_status", &self.sensor_status),
            ("service_status", &self.service_status),
            ("health_status", &self.health_status),
            ("type", &self.sensor_type),
            ("domain", &self.domain),
            ("subscription", &self.subscription),
            ("site", &self.site),
            ("zone", &self.zone),
            ("tag", &self.tag),
            ("mode", &self.mode),
            ("version", &self.version),
        ];
        for (key, values) in lists {
            if !values.is_empty() {
                out.push((key, values.join(",")));
            }
        }
        if let Some(d) = self.delayed_update {
            out.push(("delayed_update", d.to_string()));
        }
        if let Some(q) = self.q.as_ref().filter(|q| !q.is_empty()) {
            out.push(("q", q.clone()));
        }
        if let Some(s) = &self.sort {
            out.push(("sort", s.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_only_what_is_set_with_commas() {
        let p = SensorListParams {
            sensor_status: vec!["disconnected".into(), "syncing".into()],
            sensor_type: vec!["adfs".into()],
            delayed_update: Some(false),
            q: Some(String::new()),
            sort: Some("-last_seen_at".into()),
            limit: Some(10),
            ..Default::default()
        };
        let q: Vec<(&str, String)> = p.to_query();
        assert_eq!(
            q,
            vec![
                ("sensor_status", "disconnected,syncing".to_string()),
                ("type", "adfs".to_string()),
                ("delayed_update", "false".to_string()),
                ("sort", "-last_seen_at".to_string()),
                ("limit", "10".to_string()),
            ]
        );
        assert!(SensorListParams::default().to_query().is_empty());
    }
}
