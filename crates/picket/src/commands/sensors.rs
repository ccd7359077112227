//! `picket sensors ...`: onboard, list, show, edit, delete, decommission, activation file and
//! CSV export, each one call (or one paged walk) of the REST API.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use picket_client::SensorListParams;
use picket_proto::{ActivationFile, OnboardRequest, PatchSensorRequest, SensorConfig, SensorView};

use super::{Api, connect, stdout};
use crate::cli::{
    ActivationFileArgs, DeleteArgs, EditArgs, ExportArgs, FilterArgs, IdArgs, ListArgs, OnboardArgs, SensorsCmd,
};
use crate::exit::CliError;
use crate::output::{self, Table};

/// Runs one `picket sensors` command.
pub async fn run(cmd: SensorsCmd) -> anyhow::Result<()> {
    match cmd {
        SensorsCmd::Onboard(a) => onboard(a).await,
        SensorsCmd::List(a) => list(a).await,
        SensorsCmd::Show(a) => show(a).await,
        SensorsCmd::Edit(a) => edit(a).await,
        SensorsCmd::Delete(a) => delete(a).await,
        SensorsCmd::Decommission(a) => decommission(a).await,
        SensorsCmd::ActivationFile(a) => activation_file(a).await,
        SensorsCmd::Export(a) => export(a).await,
    }
}

fn strings<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

/// The list/export parameters for these filter flags.
fn params(f: &FilterArgs) -> SensorListParams {
    SensorListParams {
        sensor_status: strings(&f.sensor_status),
        service_status: strings(&f.service_status),
        health_status: strings(&f.health_status),
        sensor_type: strings(&f.sensor_type),
        domain: f.domain.clone(),
        subscription: f.subscription.clone(),
        site: f.site.clone(),
        zone: f.zone.clone(),
        tag: f.tag.clone(),
        mode: strings(&f.mode),
        version: strings(&f.version),
        delayed_update: f.delayed_update,
        q: f.q.clone(),
        sort: f.sort.clone(),
        limit: None,
        cursor: None,
    }
}

/// Writes `text` to `path` readable by its owner only (0600), replacing any file there.
pub fn write_secret_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let ctx = || format!("writing {}", path.display());
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let file = opts.open(path).with_context(ctx)?;
        // An existing file keeps its mode on open: tighten it before writing the secret.
        file.set_permissions(fs::Permissions::from_mode(0o600)).with_context(ctx)?;
        write_all_synced(file, text).with_context(ctx)
    }
    #[cfg(not(unix))]
    {
        let file = opts.open(path).with_context(ctx)?;
        write_all_synced(file, text).with_context(ctx)
    }
}

fn write_all_synced(mut file: File, text: &str) -> io::Result<()> {
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

async fn save_activation_file(api: &Api, id: &str, out: &Path) -> anyhow::Result<ActivationFile> {
    let file = api.client.activation_file(id).await.map_err(|e| api.explain(e))?;
    let text = serde_json::to_string_pretty(&file)?;
    write_secret_file(out, &format!("{text}\n"))?;
    Ok(file)
}

async fn onboard(a: OnboardArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let req = OnboardRequest {
        name: a.name,
        sensor_type: a.sensor_type,
        domain: a.domain,
        subscription: a.subscription,
        site: a.site,
        zone: a.zone,
        tags: a.tags,
        mode: a.mode,
        auto_ti_updates: !a.no_auto_ti_updates,
        description: a.description,
        delayed_update: a.delayed_update,
        config: SensorConfig { capture: a.capture },
    };
    let sensor = api.client.onboard_sensor(&req).await.map_err(|e| api.explain(e))?;
    let written =
        match &a.activation_file {
            Some(path) => Some(save_activation_file(&api, &sensor.id, path).await.with_context(|| {
                format!("sensor {} was onboarded, but its activation file was not saved", sensor.id)
            })?),
            None => None,
        };
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &sensor)?;
    } else {
        writeln!(out, "Onboarded sensor {} (id {}), status {}.", sensor.name, sensor.id, sensor.sensor_status)?;
        match (&a.activation_file, written) {
            (Some(path), Some(file)) => writeln!(
                out,
                "Activation file written to {} (one-time token, expires {}).",
                path.display(),
                picket_proto::time::format_ts(file.expires_at)
            )?,
            _ => {
                writeln!(out, "Get its activation file with: picket sensors activation-file {} --out FILE", sensor.id)?
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn sensor_table() -> Table {
    Table::new(&[
        "ID",
        "NAME",
        "TYPE",
        "SUBSCRIPTION",
        "SITE",
        "ZONE",
        "MODE",
        "SERVICE",
        "STATUS",
        "VERSION",
        "HEALTH",
        "ISSUES",
        "LAST SEEN",
    ])
}

fn sensor_row(s: &SensorView, now: picket_domain::Timestamp) -> Vec<String> {
    vec![
        s.id.clone(),
        s.name.clone(),
        s.sensor_type.to_string(),
        s.subscription.clone(),
        output::or_dash(&s.site),
        s.zone.clone(),
        s.mode.to_string(),
        s.service_status.to_string(),
        s.sensor_status.to_string(),
        s.version.clone().unwrap_or_else(|| "-".to_string()),
        s.health_status.to_string(),
        s.health_issues.to_string(),
        output::ago_opt(s.last_seen_at, now),
    ]
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let mut params = params(&a.filter);
    params.limit = a.limit;
    params.cursor = a.cursor.clone();
    let mut out = stdout();
    let now = output::now();
    if !a.all {
        let page = api.client.list_sensors(&params).await.map_err(|e| api.explain(e))?;
        if a.api.json {
            output::write_json(&mut out, &page)?;
        } else {
            let mut table = sensor_table();
            for s in &page.items {
                table.row(sensor_row(s, now));
            }
            table.write(&mut out)?;
            out.flush()?;
            let more =
                page.next_cursor.as_deref().map(|c| format!(" Next page: --cursor {c} (or --all)")).unwrap_or_default();
            eprintln!("{} of {} sensors.{more}", page.items.len(), page.total);
        }
        out.flush()?;
        return Ok(());
    }
    // --all: follow cursors. JSON is streamed as one array; a table needs every row for its
    // column widths (use `export` for very large fleets).
    let mut table = sensor_table();
    let mut count = 0u64;
    if a.api.json {
        write!(out, "[")?;
    }
    loop {
        let page = api.client.list_sensors(&params).await.map_err(|e| api.explain(e))?;
        for s in &page.items {
            if a.api.json {
                if count > 0 {
                    write!(out, ",")?;
                }
                writeln!(out)?;
                serde_json::to_writer(&mut out, s)?;
            } else {
                table.row(sensor_row(s, now));
            }
            count += 1;
        }
        match page.next_cursor {
            Some(c) if !page.items.is_empty() => params.cursor = Some(c),
            _ => break,
        }
    }
    if a.api.json {
        writeln!(out, "\n]")?;
    } else {
        table.write(&mut out)?;
    }
    out.flush()?;
    if !a.api.json {
        eprintln!("{count} sensors.");
    }
    Ok(())
}

fn write_sensor(out: &mut impl Write, s: &SensorView) -> io::Result<()> {
    let now = output::now();
    output::write_fields(
        out,
        &[
            ("id", s.id.clone()),
            ("name", s.name.clone()),
            ("type", s.sensor_type.to_string()),
            ("domain", output::or_dash(&s.domain)),
            ("subscription", s.subscription.clone()),
            ("site", output::or_dash(&s.site)),
            ("zone", s.zone.clone()),
            ("tags", output::list(&s.tags)),
            ("mode", s.mode.to_string()),
            ("auto_ti_updates", output::yes_no(s.auto_ti_updates)),
            ("service_status", s.service_status.to_string()),
            (
                "sensor_status",
                match &s.sensor_status_detail {
                    Some(d) => format!("{} ({d})", s.sensor_status),
                    None => s.sensor_status.to_string(),
                },
            ),
            ("version", s.version.clone().unwrap_or_else(|| "-".to_string())),
            ("delayed_update", output::yes_no(s.delayed_update)),
            ("health_status", s.health_status.to_string()),
            ("health_issues", s.health_issues.to_string()),
            ("created_at", picket_proto::time::format_ts(s.created_at)),
            (
                "last_seen_at",
                match s.last_seen_at {
                    Some(t) => format!("{} ({})", picket_proto::time::format_ts(t), output::ago(t, now)),
                    None => "never".to_string(),
                },
            ),
            ("activated_at", output::time_opt(s.activated_at)),
            ("decommissioned_at", output::time_opt(s.decommissioned_at)),
            ("config_version", format!("{} applied / {} desired", s.config_version_applied, s.config_version_desired)),
            ("ti_version", s.ti_version.map_or_else(|| "-".to_string(), |v| v.to_string())),
            ("capture", s.config.capture.clone().unwrap_or_else(|| "-".to_string())),
            ("description", output::or_dash(&s.description)),
        ],
    )
}

fn print_sensor(json: bool, s: &SensorView) -> anyhow::Result<()> {
    let mut out = stdout();
    if json {
        output::write_json(&mut out, s)?;
    } else {
        write_sensor(&mut out, s)?;
    }
    out.flush()?;
    Ok(())
}

async fn show(a: IdArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let s = api.client.get_sensor(&a.id).await.map_err(|e| api.explain(e))?;
    print_sensor(a.api.json, &s)
}

async fn edit(a: EditArgs) -> anyhow::Result<()> {
    let patch = PatchSensorRequest {
        name: a.name,
        site: a.site,
        zone: a.zone,
        tags: if a.clear_tags { Some(Vec::new()) } else { (!a.tags.is_empty()).then_some(a.tags) },
        delayed_update: a.delayed_update,
        auto_ti_updates: a.auto_ti_updates,
        description: a.description,
        config: a.capture.map(|c| SensorConfig { capture: (!c.trim().is_empty()).then_some(c) }),
    };
    if patch == PatchSensorRequest::default() {
        return Err(CliError::Usage(
            "nothing to change: give at least one of --name, --site, --zone, --tag, --clear-tags, --delayed-update, --auto-ti-updates, --description, --capture"
                .to_string(),
        )
        .into());
    }
    let api = connect(&a.api)?;
    let s = api.client.patch_sensor(&a.id, &patch).await.map_err(|e| api.explain(e))?;
    print_sensor(a.api.json, &s)
}

/// Asks on the terminal whether to go on; only "y" or "yes" agree.
fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    if !a.yes {
        if !io::stdin().is_terminal() {
            return Err(CliError::Usage(format!(
                "refusing to delete sensor {} without --yes: stdin is not a terminal to confirm on",
                a.id
            ))
            .into());
        }
        let s = api.client.get_sensor(&a.id).await.map_err(|e| api.explain(e))?;
        let question =
            format!("Delete sensor {} ({}, {})? Its certificate is revoked at once.", s.name, s.id, s.sensor_status);
        if !tokio::task::spawn_blocking(move || confirm(&question)).await?? {
            anyhow::bail!("not deleted");
        }
    }
    api.client.delete_sensor(&a.id).await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &serde_json::json!({ "deleted": a.id }))?;
    } else {
        writeln!(out, "Deleted sensor {}.", a.id)?;
    }
    out.flush()?;
    Ok(())
}

async fn decommission(a: IdArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let s = api.client.decommission_sensor(&a.id).await.map_err(|e| api.explain(e))?;
    if a.api.json {
        return print_sensor(true, &s);
    }
    let mut out = stdout();
    writeln!(out, "Sensor {} ({}) is now {}; it is safe to delete.", s.name, s.id, s.sensor_status)?;
    out.flush()?;
    Ok(())
}

async fn activation_file(a: ActivationFileArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let file = save_activation_file(&api, &a.id, &a.out).await?;
    let mut out = stdout();
    let expires = picket_proto::time::format_ts(file.expires_at);
    if a.api.json {
        let path = a.out.display().to_string();
        output::write_json(
            &mut out,
            &serde_json::json!({ "sensor_id": file.sensor_id, "path": path, "expires_at": expires }),
        )?;
    } else {
        writeln!(
            out,
            "Wrote the activation file of {} to {} (mode 0600; one-time token, expires {expires}).",
            file.sensor_name,
            a.out.display()
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The temporary name an export is written under until it is complete.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

async fn export(a: ExportArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let params = params(&a.filter);
    // `--out -` is stdout, as for most tools.
    match a.out.as_deref().filter(|p| *p != Path::new("-")) {
        None => {
            let mut out = stdout();
            api.client.export_csv(&params, &mut out).await.map_err(|e| api.explain(e))?;
            out.flush()?;
        }
        Some(path) => {
            // Written under a temporary name and renamed when complete, so a failed export
            // never leaves a truncated file that looks whole.
            let tmp = partial_path(path);
            let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = io::BufWriter::with_capacity(256 * 1024, file);
            let result = api.client.export_csv(&params, &mut w).await;
            let bytes = match result {
                Ok(n) => n,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(api.explain(e));
                }
            };
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            eprintln!("Exported {bytes} bytes to {}.", path.display());
        }
    }
    Ok(())
}
