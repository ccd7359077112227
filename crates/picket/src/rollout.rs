//! `picket rollout status|pause|resume|rollback`: the rollout of the current release over the
//! REST API. `status` prints the rollout's state and settings, the counts per sensor state
//! and one row per sensor (`--json` prints the API's answer as is).

use std::io::Write;

use clap::{Args, Subcommand};
use picket_proto::rollouts::{RollbackRequest, RolloutSensorState, RolloutView};

use crate::cli::ApiArgs;
use crate::commands::{connect, stdout};
use crate::output::{self, Table};

/// `picket rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Show the rollout of the current release: state, settings and progress per sensor.
    Status(ApiArgs),
    /// Pause the rollout: no new grants (updates already granted carry on).
    Pause(ApiArgs),
    /// Resume the rollout (clears its failure count).
    Resume(ApiArgs),
    /// Roll sensors back to the previous release (default: every sensor on the current release,
    /// which also pauses the rollout).
    Rollback(RollbackArgs),
}

/// `picket rollout rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Roll back only this sensor (its id).
    #[arg(long, value_name = "ID", conflicts_with = "version")]
    pub sensor: Option<String>,
    /// Roll back every sensor running this version (to the release before it).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Server, token and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Writes the readable form of a rollout.
fn write_status(out: &mut impl Write, r: &RolloutView) -> std::io::Result<()> {
    let now = output::now();
    let previous = r.previous_version.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut state = r.state.as_str().to_string();
    if let Some(why) = &r.paused_reason {
        state = format!("{state} ({why})");
    }
    let delayed = if r.delayed_ring_due {
        format!("started {}", output::ago(r.delayed_ring_starts_at, now))
    } else {
        format!("starts at {}", picket_proto::time::format_ts(r.delayed_ring_starts_at))
    };
    let counts: Vec<String> = RolloutSensorState::ALL
        .iter()
        .filter(|s| r.counts.get(**s) > 0)
        .map(|s| format!("{} {}", r.counts.get(*s), s.as_str()))
        .collect();
    output::write_fields(
        out,
        &[
            ("Release", r.version.to_string()),
            ("Previous", previous),
            ("State", state),
            (
                "Started",
                format!("{} ({})", picket_proto::time::format_ts(r.started_at), output::ago(r.started_at, now)),
            ),
            ("Concurrency", r.concurrency.to_string()),
            ("Failures", format!("{} of {} allowed", r.failures, r.max_failures)),
            ("Delayed ring", format!("{}s after the start, {delayed}", r.delay_ring_after_secs)),
            (
                "Sensors",
                format!("{} ({})", r.counts.total, if counts.is_empty() { "-".into() } else { counts.join(", ") }),
            ),
        ],
    )?;
    writeln!(out)?;
    let mut t = Table::new(&["SENSOR", "NAME", "RING", "STATE", "VERSION", "UPDATE", "STARTED", "FINISHED", "ERROR"]);
    for s in &r.sensors {
        t.row(vec![
            s.sensor_id.clone(),
            s.sensor_name.clone(),
            match s.ring {
                picket_proto::rollouts::Ring::Immediate => "immediate".to_string(),
                picket_proto::rollouts::Ring::Delayed => "delayed".to_string(),
            },
            s.state.as_str().to_string(),
            s.version.clone().unwrap_or_else(|| "-".to_string()),
            s.update_id.clone().unwrap_or_else(|| "-".to_string()),
            output::ago_opt(s.started_at, now),
            output::ago_opt(s.finished_at, now),
            s.error.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    t.write(out)?;
    if r.sensors_truncated {
        writeln!(
            out,
            "{} of {} sensors listed: those updating or failed, then the first by id (the counts cover all)",
            r.sensors.len(),
            r.counts.total
        )?;
    }
    Ok(())
}

/// Runs `picket rollout ...`.
pub async fn run(cmd: RolloutCmd) -> anyhow::Result<()> {
    let mut out = stdout();
    match cmd {
        RolloutCmd::Status(args) => {
            let api = connect(&args)?;
            let r = api.client.current_rollout().await.map_err(|e| api.explain(e))?;
            show(&mut out, &r, args.json)?;
        }
        RolloutCmd::Pause(args) => {
            let api = connect(&args)?;
            let r = api.client.pause_rollout().await.map_err(|e| api.explain(e))?;
            show(&mut out, &r, args.json)?;
        }
        RolloutCmd::Resume(args) => {
            let api = connect(&args)?;
            let r = api.client.resume_rollout().await.map_err(|e| api.explain(e))?;
            show(&mut out, &r, args.json)?;
        }
        RolloutCmd::Rollback(a) => {
            let api = connect(&a.api)?;
            let req = RollbackRequest { sensor_id: a.sensor, version: a.version };
            let r = api.client.rollback_rollout(&req).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &r)?;
            } else {
                let mut t = Table::new(&["SENSOR", "UPDATE", "FROM", "TO"]);
                for g in &r.grants {
                    t.row(vec![g.sensor_id.clone(), g.update_id.clone(), g.from_version.clone(), g.to_version.clone()]);
                }
                t.write(&mut out)?;
                if r.rollout_paused {
                    writeln!(out, "The rollout is paused; `picket rollout resume` hands the release out again.")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn show(out: &mut impl Write, r: &RolloutView, json: bool) -> anyhow::Result<()> {
    if json {
        output::write_json(out, r)?
    } else {
        write_status(out, r)?
    }
    Ok(())
}
