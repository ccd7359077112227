//! `picket users add|list|passwd|remove`: portal users over the REST API (admin). Passwords
//! are read from a prompt (twice, not echoed) or, for scripts, from `--password-stdin`;
//! never from a flag, which would leave them in the shell history and the process list.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use picket_domain::Role;
use picket_proto::users::CreateUserRequest;

use super::{connect, stdout};
use crate::cli::ApiArgs;
use crate::exit::CliError;
use crate::output::{self, Table};

/// `picket users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Create a portal user (asks for the password, or reads it with --password-stdin).
    Add(AddArgs),
    /// List portal users.
    List(ApiArgs),
    /// Set a portal user's password (ends their sessions).
    Passwd(PasswdArgs),
    /// Remove a portal user (ends their sessions).
    Remove(NameArgs),
}

/// `picket users add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Sign-in name (lower-case letters, digits, '.', '_', '-', '@').
    pub name: String,
    /// viewer, operator or admin.
    #[arg(long)]
    pub role: Role,
    /// Limit the user to this subscription (repeatable; default: all).
    #[arg(long = "subscription", value_name = "SUBSCRIPTION")]
    pub subscriptions: Vec<String>,
    /// Read the password from the first line of standard input instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// Server and token.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `picket users passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The user.
    pub name: String,
    /// Read the password from the first line of standard input instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// Server and token.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// A command on one user.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The user.
    pub name: String,
    /// Server and token.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// The password: the first line of stdin, or typed twice at a prompt.
fn read_password(from_stdin: bool, name: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(CliError::Usage("--password-stdin: standard input has no password line".into()).into());
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "no terminal to ask for the password on: pass --password-stdin and pipe it in".into(),
        )
        .into());
    }
    let first = rpassword::prompt_password(format!("Password for {name}: "))?;
    let second = rpassword::prompt_password("Again: ")?;
    if first != second {
        return Err(CliError::Usage("the two passwords differ; nothing was changed".into()).into());
    }
    Ok(first)
}

/// Runs `picket users ...`.
pub async fn run(cmd: UsersCmd) -> anyhow::Result<()> {
    let mut out = stdout();
    match cmd {
        UsersCmd::Add(a) => {
            let api = connect(&a.api)?;
            let password = read_password(a.password_stdin, &a.name)?;
            let req = CreateUserRequest {
                username: a.name,
                password,
                role: a.role,
                subscriptions: (!a.subscriptions.is_empty()).then_some(a.subscriptions),
            };
            let u = api.client.create_user(&req).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &u)?;
            } else {
                writeln!(out, "Created user {} ({}).", u.username, u.role)?;
            }
        }
        UsersCmd::List(args) => {
            let api = connect(&args)?;
            let users = api.client.list_users().await.map_err(|e| api.explain(e))?;
            if args.json {
                output::write_json(&mut out, &users)?;
            } else {
                let mut t = Table::new(&["USERNAME", "ROLE", "SUBSCRIPTIONS", "CREATED"]);
                for u in &users {
                    t.row(vec![
                        u.username.clone(),
                        u.role.to_string(),
                        u.subscriptions.as_ref().map_or_else(|| "(all)".to_string(), |s| output::list(s)),
                        picket_proto::time::format_ts(u.created_at),
                    ]);
                }
                t.write(&mut out)?;
            }
        }
        UsersCmd::Passwd(a) => {
            let api = connect(&a.api)?;
            let password = read_password(a.password_stdin, &a.name)?;
            api.client.set_user_password(&a.name, &password).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &serde_json::json!({ "password_changed": a.name }))?;
            } else {
                writeln!(out, "Changed the password of {}; their sessions ended.", a.name)?;
            }
        }
        UsersCmd::Remove(a) => {
            let api = connect(&a.api)?;
            api.client.delete_user(&a.name).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &serde_json::json!({ "removed": a.name }))?;
            } else {
                writeln!(out, "Removed user {}.", a.name)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
