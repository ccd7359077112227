//! Query parameters of the sensor list and export: every filter of DESIGN.md takes
//! comma-separated values (and may be repeated), values of closed vocabularies are checked
//! with a message naming the accepted ones, and unknown parameters are refused rather than
//! silently ignored (a typo must not return the whole fleet).

use std::str::FromStr;

use picket_domain::Version;
use picket_store::{SensorFilter, Sort, SortKey};

use crate::app::{AppError, DEFAULT_LIMIT, ListRequest, MAX_LIMIT};

/// Filter parameters, in the order DESIGN.md lists them.
pub const FILTER_PARAMS: &[&str] = &[
    "sensor_status",
    "service_status",
    "health_status",
    "type",
    "domain",
    "subscription",
    "site",
    "zone",
    "tag",
    "mode",
    "version",
    "delayed_update",
    "q",
];

fn values(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|v| !v.is_empty())
}

fn parse_all<T: FromStr>(param: &str, raw: &str, out: &mut Vec<T>) -> Result<(), AppError>
where
    T::Err: std::fmt::Display,
{
    for v in values(raw) {
        out.push(v.parse::<T>().map_err(|e| AppError::BadRequest(format!("{param}: {e}")))?);
    }
    Ok(())
}

fn strings(raw: &str, out: &mut Vec<String>) {
    out.extend(values(raw).map(str::to_string));
}

/// Parses list parameters; `paging` allows `limit` and `cursor` (the export takes neither).
pub fn parse_list(pairs: &[(String, String)], paging: bool) -> Result<ListRequest, AppError> {
    let mut f = SensorFilter::default();
    let mut req = ListRequest { limit: DEFAULT_LIMIT, ..ListRequest::default() };
    let mut delayed: Vec<bool> = Vec::new();
    for (name, raw) in pairs {
        match name.as_str() {
            "sensor_status" => parse_all(name, raw, &mut f.sensor_status)?,
            "service_status" => parse_all(name, raw, &mut f.service_status)?,
            "health_status" => parse_all(name, raw, &mut f.health_status)?,
            "type" => parse_all(name, raw, &mut f.sensor_type)?,
            "mode" => parse_all(name, raw, &mut f.mode)?,
            "version" => parse_all::<Version>(name, raw, &mut f.version)?,
            "domain" => strings(raw, &mut f.domain),
            "subscription" => strings(raw, &mut f.subscription),
            "site" => strings(raw, &mut f.site),
            "zone" => strings(raw, &mut f.zone),
            "tag" => strings(raw, &mut f.tag),
            "delayed_update" => {
                for v in values(raw) {
                    delayed.push(match v {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(AppError::BadRequest(format!(
                                "delayed_update: unknown value {v:?}; expected one of: true, false"
                            )));
                        }
                    });
                }
            }
            "q" => {
                let q = raw.trim();
                f.q = (!q.is_empty()).then(|| q.to_string());
            }
            "sort" => {
                req.sort = Sort::parse(raw.trim()).ok_or_else(|| {
                    let keys: Vec<&str> = SortKey::ALL.iter().map(|k| k.as_str()).collect();
                    AppError::BadRequest(format!(
                        "sort: unknown sort {raw:?}; expected one of: {} (prefix - for descending)",
                        keys.join(", ")
                    ))
                })?;
            }
            "limit" if paging => {
                req.limit =
                    raw.trim().parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                        AppError::BadRequest(format!("limit: {raw:?} is not a number from 1 to {MAX_LIMIT}"))
                    })?;
            }
            "cursor" if paging => {
                let c = raw.trim();
                req.cursor = (!c.is_empty()).then(|| c.to_string());
            }
            other => {
                let mut accepted: Vec<&str> = FILTER_PARAMS.to_vec();
                accepted.push("sort");
                if paging {
                    accepted.extend(["limit", "cursor"]);
                }
                return Err(AppError::BadRequest(format!(
                    "unknown query parameter {other:?}; accepted: {}",
                    accepted.join(", ")
                )));
            }
        }
    }
    delayed.sort_unstable();
    delayed.dedup();
    f.delayed_update = match delayed.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    req.filter = f;
    Ok(req)
}

/// Parses `limit` and `cursor` of the audit list.
pub fn parse_paging(pairs: &[(String, String)]) -> Result<(Option<String>, u32), AppError> {
    let mut cursor = None;
    let mut limit = DEFAULT_LIMIT;
    for (name, raw) in pairs {
        match name.as_str() {
            "cursor" => cursor = Some(raw.trim().to_string()).filter(|c| !c.is_empty()),
            "limit" => {
                limit = raw.trim().parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    AppError::BadRequest(format!("limit: {raw:?} is not a number from 1 to {MAX_LIMIT}"))
                })?
            }
            other => {
                return Err(AppError::BadRequest(format!(
                    "unknown query parameter {other:?}; accepted: limit, cursor"
                )));
            }
        }
    }
    Ok((cursor, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_domain::{SensorStatus, SensorType};

    fn q(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn err(s: &[(&str, &str)]) -> String {
        parse_list(&q(s), true).unwrap_err().to_string()
    }

    #[test]
    fn comma_separated_and_repeated_values_accumulate() {
        let r = parse_list(&q(&[("type", "adfs, standalone"), ("type", "ot_network"), ("tag", "a,b,")]), true).unwrap();
        assert_eq!(r.filter.sensor_type, [SensorType::Adfs, SensorType::Standalone, SensorType::OtNetwork]);
        assert_eq!(r.filter.tag, ["a", "b"]);
        assert_eq!(r.limit, DEFAULT_LIMIT);
        let r =
            parse_list(&q(&[("sensor_status", "syncing"), ("sort", "-last_seen_at"), ("limit", "7")]), true).unwrap();
        assert_eq!(r.filter.sensor_status, [SensorStatus::Syncing]);
        assert!(r.sort.descending);
        assert_eq!(r.limit, 7);
    }

    #[test]
    fn delayed_update_both_values_means_no_filter() {
        let d = |v: &str| parse_list(&q(&[("delayed_update", v)]), true).unwrap().filter.delayed_update;
        assert_eq!(d("true"), Some(true));
        assert_eq!(d("false"), Some(false));
        assert_eq!(d("true,false"), None);
    }

    #[test]
    fn refusals_name_what_is_accepted() {
        assert!(err(&[("type", "router")]).contains("expected one of: domain_controller, adfs"));
        assert!(err(&[("sensor_status", "fine")]).starts_with("sensor_status: unknown sensor_status \"fine\""));
        assert!(err(&[("version", "1.x")]).contains("MAJOR.MINOR.PATCH"));
        assert!(err(&[("delayed_update", "yes")]).contains("true, false"));
        assert!(err(&[("sort", "colour")]).contains("last_seen_at"));
        assert!(err(&[("limit", "0")]).contains("1 to 1000"));
        assert!(err(&[("limit", "1001")]).contains("1 to 1000"));
        assert!(err(&[("colour", "red")]).contains("accepted: sensor_status"));
        assert!(parse_list(&q(&[("limit", "5")]), false).is_err());
    }
}
