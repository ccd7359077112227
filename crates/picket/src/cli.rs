//! The command line of `picket` (clap derive): every command, flag and environment variable
//! users see. Parsing only; the commands live in `serve`, `seed` and `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use picket_domain::{HealthStatus, Mode, Role, SensorStatus, SensorType, ServiceStatus, Version};

use crate::seed::SeedArgs;
use crate::serve::ServeArgs;

/// Picket: control plane for a fleet of security sensors, and its admin CLI.
#[derive(Debug, Parser)]
#[command(name = "picket", version, after_help = crate::exit::HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `picket`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: REST API, web portal, mutual-TLS sensor API and background jobs
    /// (SQLite in --data-dir by default, PostgreSQL with --database-url).
    Serve(Box<ServeArgs>),
    /// A first look: the server and a small live fleet of real sensors on this machine, then a
    /// second release rolled out while you watch (portal and CLI).
    Demo(Box<crate::demo::DemoArgs>),
    /// Onboard, list, show, edit, export, decommission and delete sensors.
    #[command(subcommand)]
    Sensors(Box<SensorsCmd>),
    /// List and create zones.
    #[command(subcommand)]
    Zones(ZonesCmd),
    /// List and create subscriptions (ownership scopes).
    #[command(subcommand)]
    Subscriptions(SubscriptionsCmd),
    /// Fleet counts by mode, sensor status and health status.
    Summary(ApiArgs),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Show the audit log, newest first.
    Audit(AuditArgs),
    /// Add, list, re-password and remove portal users.
    #[command(subcommand)]
    Users(crate::commands::users::UsersCmd),
    /// List, add and remove notification webhooks (signed JSON POSTs of health issues and alerts).
    #[command(subcommand)]
    Webhooks(crate::commands::webhooks::WebhooksCmd),
    /// Make signing keys, sign, verify, publish and list release packages.
    #[command(subcommand)]
    Release(crate::commands::release::ReleaseCmd),
    /// Sign, verify, publish, list and download threat-intelligence (TI) packages.
    #[command(subcommand)]
    Ti(crate::commands::ti::TiCmd),
    /// Show, pause, resume and roll back the rollout of the current release.
    #[command(subcommand)]
    Rollout(crate::rollout::RolloutCmd),
    /// List, close and reopen health issues.
    #[command(subcommand)]
    HealthIssues(crate::commands::health::HealthIssuesCmd),
    /// List detection alerts uploaded by cloud-connected sensors.
    #[command(subcommand)]
    Alerts(crate::alerts::AlertsCmd),
    /// Write N realistic sensor records straight into a store (benchmarks).
    Seed(SeedArgs),
    /// Simulate N sensors: onboard, activate (one certificate each) and heartbeat them over mutual TLS.
    Simulate(Box<crate::commands::simulate::SimulateArgs>),
}

/// How to reach the server, and how to print answers (every admin command).
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the Picket server.
    #[arg(long, env = "PICKET_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub server: String,
    /// API token [default: the contents of ./picket-data/bootstrap-token, if it exists].
    #[arg(long, env = "PICKET_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Print JSON for scripts instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `picket sensors ...`.
#[derive(Debug, Subcommand)]
pub enum SensorsCmd {
    /// Onboard a sensor; optionally write its activation file.
    Onboard(OnboardArgs),
    /// List sensors (filters take comma-separated values and combine with AND).
    List(ListArgs),
    /// Show one sensor.
    Show(IdArgs),
    /// Change a sensor's name, site, zone, tags, update ring, description or capture setting.
    Edit(EditArgs),
    /// Delete a sensor (revokes its certificate at once).
    Delete(DeleteArgs),
    /// Mark a sensor's host as gone from the directory (it becomes `unreachable`).
    Decommission(IdArgs),
    /// Download a sensor's activation file (written with mode 0600).
    ActivationFile(ActivationFileArgs),
    /// Export sensors as CSV (streamed; the same filters as `list`).
    Export(ExportArgs),
}

/// A command on one sensor.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The sensor's id.
    pub id: String,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket sensors onboard`.
#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// Host-name-like name (include the host's IP to tell hosts apart, e.g. DC01-10-0-0-5).
    #[arg(long)]
    pub name: String,
    /// What it watches: domain_controller, adfs, standalone or ot_network.
    #[arg(long = "type", value_name = "TYPE")]
    pub sensor_type: SensorType,
    /// FQDN of its domain.
    #[arg(long, default_value = "")]
    pub domain: String,
    /// Subscription it belongs to.
    #[arg(long, default_value = "default")]
    pub subscription: String,
    /// Site.
    #[arg(long, default_value = "")]
    pub site: String,
    /// Zone (must exist).
    #[arg(long, default_value = "default")]
    pub zone: String,
    /// Tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// cloud_connected or locally_managed.
    #[arg(long, default_value = "cloud_connected")]
    pub mode: Mode,
    /// Do not push threat-intelligence packages to it automatically.
    #[arg(long)]
    pub no_auto_ti_updates: bool,
    /// Put it in the delayed update ring.
    #[arg(long)]
    pub delayed_update: bool,
    /// Free text.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Capture/monitor setting (interface or source) that adfs and standalone sensors need.
    #[arg(long)]
    pub capture: Option<String>,
    /// Also download its activation file to this path (mode 0600).
    #[arg(long, value_name = "OUT")]
    pub activation_file: Option<PathBuf>,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Filters and sort shared by `list` and `export`.
#[derive(Debug, Default, Args)]
pub struct FilterArgs {
    /// sensor_status values (e.g. disconnected,syncing).
    #[arg(long, value_delimiter = ',', value_name = "STATUS")]
    pub sensor_status: Vec<SensorStatus>,
    /// service_status values (running, starting, disabled, stopped, unknown).
    #[arg(long, value_delimiter = ',', value_name = "STATUS")]
    pub service_status: Vec<ServiceStatus>,
    /// health_status values (healthy, not_healthy_low, not_healthy_medium, not_healthy_high).
    #[arg(long, value_delimiter = ',', value_name = "STATUS")]
    pub health_status: Vec<HealthStatus>,
    /// Sensor types.
    #[arg(long = "type", value_delimiter = ',', value_name = "TYPE")]
    pub sensor_type: Vec<SensorType>,
    /// Domains.
    #[arg(long, value_delimiter = ',')]
    pub domain: Vec<String>,
    /// Subscriptions.
    #[arg(long, value_delimiter = ',')]
    pub subscription: Vec<String>,
    /// Sites.
    #[arg(long, value_delimiter = ',')]
    pub site: Vec<String>,
    /// Zones.
    #[arg(long, value_delimiter = ',')]
    pub zone: Vec<String>,
    /// Tags (has any of them).
    #[arg(long, value_delimiter = ',')]
    pub tag: Vec<String>,
    /// Modes (cloud_connected, locally_managed).
    #[arg(long, value_delimiter = ',')]
    pub mode: Vec<Mode>,
    /// Versions (MAJOR.MINOR.PATCH).
    #[arg(long, value_delimiter = ',')]
    pub version: Vec<Version>,
    /// Only sensors in (true) or out of (false) the delayed update ring.
    #[arg(long, value_name = "true|false")]
    pub delayed_update: Option<bool>,
    /// Case-insensitive search in names.
    #[arg(long, short = 'q', value_name = "TEXT")]
    pub q: Option<String>,
    /// Sort column, `-` prefix for descending (e.g. name, -last_seen_at, sensor_status).
    #[arg(long, value_parser = parse_sort, allow_hyphen_values = true, value_name = "[-]COLUMN")]
    pub sort: Option<String>,
}

fn parse_sort(s: &str) -> Result<String, String> {
    match picket_store::Sort::parse(s) {
        Some(sort) => Ok(sort.as_param()),
        None => {
            let keys: Vec<&str> = picket_store::SortKey::ALL.iter().map(|k| k.as_str()).collect();
            Err(format!("unknown sort column; use one of {} (prefix - for descending)", keys.join(", ")))
        }
    }
}

/// `picket sensors list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Filters and sort.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Page size (the server caps it).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start at this cursor (the `next_cursor` of a previous page).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow cursors and list every matching sensor (with --json: one array of them all).
    #[arg(long)]
    pub all: bool,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket sensors edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The sensor's id.
    pub id: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New site.
    #[arg(long)]
    pub site: Option<String>,
    /// New zone (must exist).
    #[arg(long)]
    pub zone: Option<String>,
    /// Replace the tags with these (repeatable).
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "clear_tags")]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub clear_tags: bool,
    /// Put it in (true) or take it out of (false) the delayed update ring.
    #[arg(long, value_name = "true|false")]
    pub delayed_update: Option<bool>,
    /// Push threat-intelligence packages automatically (true) or not (false).
    #[arg(long, value_name = "true|false")]
    pub auto_ti_updates: Option<bool>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// New capture/monitor setting ("" clears it).
    #[arg(long)]
    pub capture: Option<String>,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket sensors delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The sensor's id.
    pub id: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket sensors activation-file`.
#[derive(Debug, Args)]
pub struct ActivationFileArgs {
    /// The sensor's id.
    pub id: String,
    /// Where to write it (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket sensors export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Filters and sort.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write to this file instead of stdout (`-`: stdout); written under FILE.partial and
    /// renamed when complete.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket zones ...`.
#[derive(Debug, Subcommand)]
pub enum ZonesCmd {
    /// List zones.
    List(ApiArgs),
    /// Create a zone.
    Create(CreateNamedArgs),
}

/// `picket subscriptions ...`.
#[derive(Debug, Subcommand)]
pub enum SubscriptionsCmd {
    /// List subscriptions.
    List(ApiArgs),
    /// Create a subscription (lower-case letters, digits, '-' and '_').
    Create(CreateNamedArgs),
}

/// Creating a zone or subscription.
#[derive(Debug, Args)]
pub struct CreateNamedArgs {
    /// Its name.
    pub name: String,
    /// Free text.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// Create an API token; its secret is printed only this once.
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    List(ApiArgs),
    /// Revoke a token.
    Revoke(IdArgs),
}

/// `picket tokens create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// viewer, operator or admin.
    #[arg(long)]
    pub role: Role,
    /// Limit it to this subscription (repeatable; default: all).
    #[arg(long = "subscription", value_name = "SUBSCRIPTION")]
    pub subscriptions: Vec<String>,
    /// Free text (what it is for).
    #[arg(long, default_value = "")]
    pub description: String,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many entries.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Server and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn filters_take_comma_separated_contract_values() {
        let cli = Cli::try_parse_from([
            "picket",
            "sensors",
            "list",
            "--sensor-status",
            "disconnected,syncing",
            "--type",
            "adfs",
            "--sort",
            "-last_seen_at",
        ])
        .unwrap();
        let Command::Sensors(cmd) = cli.command else { panic!("not sensors") };
        let SensorsCmd::List(args) = *cmd else { panic!("not a list") };
        assert_eq!(args.filter.sensor_status, vec![SensorStatus::Disconnected, SensorStatus::Syncing]);
        assert_eq!(args.filter.sort.as_deref(), Some("-last_seen_at"));
        assert!(Cli::try_parse_from(["picket", "sensors", "list", "--sensor-status", "bogus"]).is_err());
        assert!(Cli::try_parse_from(["picket", "sensors", "list", "--sort", "bogus"]).is_err());
    }
}
