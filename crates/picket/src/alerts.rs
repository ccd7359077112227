//! `picket alerts list`: detection alerts the control plane stored, newest first, over the
//! REST API (`GET /api/v1/alerts`). Prints a table (or `--json`, the API's page as is);
//! `--since` takes an RFC 3339 time or a duration back from now (`24h`, `30m`, `7d`).

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use picket_client::AlertListParams;
use picket_domain::{Severity, Timestamp};

use crate::cli::ApiArgs;
use crate::commands::{connect, stdout};
use crate::output::{self, Table};

/// `picket alerts ...`.
#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// List detection alerts uploaded by cloud-connected sensors, newest first.
    List(AlertListArgs),
}

/// `picket alerts list`.
#[derive(Debug, Args)]
pub struct AlertListArgs {
    /// Only this sensor's alerts (its id; comma-separated or repeated).
    #[arg(long = "sensor-id", value_delimiter = ',', value_name = "ID")]
    pub sensor_id: Vec<String>,
    /// low, medium or high (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "S")]
    pub severity: Vec<Severity>,
    /// Only alerts at or after this time: RFC 3339 (2026-11-22T10:00:00Z) or a duration back
    /// from now (24h, 30m, 7d).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Page size (1 to 1000, default 50).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue after this cursor (printed with the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Server, token and --json.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs one `picket alerts` command.
pub async fn run(cmd: AlertsCmd) -> anyhow::Result<()> {
    match cmd {
        AlertsCmd::List(a) => list(a).await,
    }
}

/// The RFC 3339 time of `--since`: as given, or `now - duration`.
fn since(raw: &str, now: Timestamp) -> anyhow::Result<String> {
    let raw = raw.trim();
    if let Some(t) = picket_proto::time::parse_ts(raw) {
        return Ok(picket_proto::time::format_ts(t));
    }
    let d = picket_domain::parse_duration(raw).with_context(|| {
        format!("--since {raw:?}: give an RFC 3339 time (2026-11-22T10:00:00Z) or a duration (24h)")
    })?;
    let back = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Ok(picket_proto::time::format_ts(Timestamp(now.0.saturating_sub(back))))
}

async fn list(a: AlertListArgs) -> anyhow::Result<()> {
    let now = output::now();
    let params = AlertListParams {
        sensor_id: a.sensor_id.clone(),
        severity: a.severity.iter().map(ToString::to_string).collect(),
        since: a.since.as_deref().map(|s| since(s, now)).transpose()?,
        limit: a.limit,
        cursor: a.cursor.clone(),
    };
    let api = connect(&a.api)?;
    let page = api.client.list_alerts(&params).await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &page)?;
        out.flush()?;
        return Ok(());
    }
    let mut table = Table::new(&["TIME", "SENSOR", "SEVERITY", "INDICATOR", "VALUE", "EXCERPT", "ID"]);
    for i in &page.items {
        let excerpt: String = i.excerpt.chars().take(60).map(|c| if c.is_control() { ' ' } else { c }).collect();
        table.row(vec![
            output::ago(i.time, now),
            i.sensor_name.clone(),
            i.severity.clone(),
            i.indicator.kind.clone(),
            i.indicator.value.clone(),
            excerpt,
            i.id.clone(),
        ]);
    }
    table.write(&mut out)?;
    out.flush()?;
    let more = page.next_cursor.as_deref().map(|c| format!(" Next page: --cursor {c}")).unwrap_or_default();
    eprintln!("{} of {} alerts.{more}", page.items.len(), page.total);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration() {
        let now = picket_proto::time::parse_ts("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(since("2026-11-21T08:30:00Z", now).unwrap(), "2026-11-21T08:30:00Z");
        assert_eq!(since("24h", now).unwrap(), "2026-11-21T10:00:00Z");
        assert_eq!(since(" 30m ", now).unwrap(), "2026-11-22T09:30:00Z");
        let e = since("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("RFC 3339") && e.contains("24h"), "{e}");
    }
}
