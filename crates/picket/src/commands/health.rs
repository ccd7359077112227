//! `picket health-issues list|close|reopen`: health issues over the REST API. Lists print a
//! table (or `--json`, the API's page); close and reopen need the operator role.

use std::io::Write;

use clap::{Args, Subcommand};
use picket_client::IssueListParams;
use picket_domain::Severity;
use picket_domain::issues::{HealthIssueKind, IssueStatus};
use picket_proto::health::HealthIssueView;

use super::{connect, stdout};
use crate::cli::ApiArgs;
use crate::output::{self, Table};

/// `picket health-issues ...`.
#[derive(Debug, Subcommand)]
pub enum HealthIssuesCmd {
    /// List health issues, newest first (default: all statuses).
    List(IssueListArgs),
    /// Close an open issue; it stays closed while its condition persists (operator).
    Close(IssueIdArgs),
    /// Reopen a closed issue (operator).
    Reopen(IssueIdArgs),
}

/// `picket health-issues list`.
#[derive(Debug, Args)]
pub struct IssueListArgs {
    /// open or closed (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<IssueStatus>,
    /// low, medium or high (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub severity: Vec<Severity>,
    /// disconnected, service_stopped, start_failed, not_configured, update_failed, outdated,
    /// cert_expiring, watchdog_restart, ti_stale (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<HealthIssueKind>,
    /// Only this sensor's issues (id; repeatable).
    #[arg(long = "sensor", value_delimiter = ',', value_name = "ID")]
    pub sensor: Vec<String>,
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

/// `picket health-issues close|reopen ID`.
#[derive(Debug, Args)]
pub struct IssueIdArgs {
    /// The issue's id.
    pub id: String,
    /// Server, token and --json.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs one `picket health-issues` command.
pub async fn run(cmd: HealthIssuesCmd) -> anyhow::Result<()> {
    match cmd {
        HealthIssuesCmd::List(a) => list(a).await,
        HealthIssuesCmd::Close(a) => change(a, true).await,
        HealthIssuesCmd::Reopen(a) => change(a, false).await,
    }
}

fn strings<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

async fn list(a: IssueListArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let params = IssueListParams {
        status: strings(&a.status),
        severity: strings(&a.severity),
        kind: strings(&a.kind),
        sensor_id: a.sensor.clone(),
        limit: a.limit,
        cursor: a.cursor.clone(),
    };
    let page = api.client.list_health_issues(&params).await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &page)?;
        out.flush()?;
        return Ok(());
    }
    let now = output::now();
    let mut table = Table::new(&["ID", "SENSOR", "KIND", "SEVERITY", "STATUS", "OPENED", "CLOSED", "TITLE"]);
    for i in &page.items {
        table.row(vec![
            i.id.clone(),
            i.sensor_name.clone(),
            i.kind.to_string(),
            i.severity.to_string(),
            i.status.to_string(),
            output::ago(i.opened_at, now),
            i.closed_at.map(|t| output::ago(t, now)).unwrap_or_else(|| "-".to_string()),
            i.title.clone(),
        ]);
    }
    table.write(&mut out)?;
    out.flush()?;
    let more = page.next_cursor.as_deref().map(|c| format!(" Next page: --cursor {c}")).unwrap_or_default();
    eprintln!("{} of {} health issues.{more}", page.items.len(), page.total);
    Ok(())
}

fn describe(i: &HealthIssueView) -> String {
    format!("{} issue {} of sensor {} ({})", i.kind, i.id, i.sensor_name, i.title)
}

async fn change(a: IssueIdArgs, close: bool) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let issue =
        if close { api.client.close_health_issue(&a.id).await } else { api.client.reopen_health_issue(&a.id).await }
            .map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &issue)?;
    } else if close {
        writeln!(out, "Closed the {}; it stays closed while its condition persists.", describe(&issue))?;
    } else {
        writeln!(out, "Reopened the {}.", describe(&issue))?;
        writeln!(out, "Detail: {}", issue.detail)?;
    }
    out.flush()?;
    Ok(())
}
