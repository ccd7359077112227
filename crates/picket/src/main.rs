//! The `picket` binary: `picket serve` (the control plane), `picket seed` (benchmark data
//! straight into the store) and the admin commands that talk to a server over its REST API.
//!
//! This file only parses the command line, runs the command, and turns the outcome into an
//! exit code scripts can trust (see `exit`); anyhow lives at this edge only.

mod alerts;
mod cli;
mod commands;
mod demo;
mod exit;
mod output;
mod rollout;
mod seed;
mod serve;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        bound_malloc_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait for blocking tasks (a stdin read, a slow file) once the command is done.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}

/// Runs the server with at most two glibc malloc arenas (`MALLOC_ARENA_MAX=2`, unless the
/// environment sets it): rows built on SQLite's worker threads and freed on the runtime's
/// leave memory in one arena per thread, and an idle server on a million sensors grew from
/// 153 to 225 MB of RSS in two minutes with the default arenas, against a flat 153–157 MB
/// with two (BENCHMARKS.md, issue 2's export memory target). glibc reads the variable only at
/// start, so the process re-executes itself once with it set (same pid, same arguments); if
/// that fails it carries on as it is.
fn bound_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("MALLOC_ARENA_MAX", "2").exec();
    eprintln!("warning: could not restart with MALLOC_ARENA_MAX=2 ({err}); continuing with the default arenas");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Demo(args) => demo::run(*args).await,
        Command::Seed(args) => seed::run(args).await,
        Command::Sensors(cmd) => commands::sensors::run(*cmd).await,
        Command::HealthIssues(cmd) => commands::health::run(cmd).await,
        Command::Alerts(cmd) => alerts::run(cmd).await,
        Command::Zones(cmd) => commands::admin::zones(cmd).await,
        Command::Subscriptions(cmd) => commands::admin::subscriptions(cmd).await,
        Command::Summary(args) => commands::admin::summary(args).await,
        Command::Tokens(cmd) => commands::admin::tokens(cmd).await,
        Command::Audit(args) => commands::admin::audit(args).await,
        Command::Users(cmd) => commands::users::run(cmd).await,
        Command::Webhooks(cmd) => commands::webhooks::run(cmd).await,
        Command::Simulate(args) => commands::simulate::run(*args).await,
        Command::Release(cmd) => commands::release::run(cmd).await,
        Command::Ti(cmd) => commands::ti::run(cmd).await,
        Command::Rollout(cmd) => rollout::run(cmd).await,
    }
}
