//! `picket zones`, `subscriptions`, `summary`, `tokens` and `audit`: the fleet's
//! administration over the REST API, as tables or `--json`.

use std::io::Write;

use picket_proto::{CreateNamed, CreateTokenRequest};

use super::{connect, stdout};
use crate::cli::{ApiArgs, AuditArgs, SubscriptionsCmd, TokensCmd, ZonesCmd};
use crate::output::{self, Table};

/// Runs `picket zones ...`.
pub async fn zones(cmd: ZonesCmd) -> anyhow::Result<()> {
    let mut out = stdout();
    match cmd {
        ZonesCmd::List(args) => {
            let api = connect(&args)?;
            let zones = api.client.list_zones().await.map_err(|e| api.explain(e))?;
            if args.json {
                output::write_json(&mut out, &zones)?;
            } else {
                let mut t = Table::new(&["NAME", "CREATED", "DESCRIPTION"]);
                for z in &zones {
                    t.row(vec![
                        z.name.clone(),
                        picket_proto::time::format_ts(z.created_at),
                        output::or_dash(&z.description),
                    ]);
                }
                t.write(&mut out)?;
            }
        }
        ZonesCmd::Create(a) => {
            let api = connect(&a.api)?;
            let req = CreateNamed { name: a.name, description: a.description };
            let z = api.client.create_zone(&req).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &z)?;
            } else {
                writeln!(out, "Created zone {:?}.", z.name)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs `picket subscriptions ...`.
pub async fn subscriptions(cmd: SubscriptionsCmd) -> anyhow::Result<()> {
    let mut out = stdout();
    match cmd {
        SubscriptionsCmd::List(args) => {
            let api = connect(&args)?;
            let subs = api.client.list_subscriptions().await.map_err(|e| api.explain(e))?;
            if args.json {
                output::write_json(&mut out, &subs)?;
            } else {
                let mut t = Table::new(&["NAME", "CREATED", "DESCRIPTION"]);
                for s in &subs {
                    t.row(vec![
                        s.name.clone(),
                        picket_proto::time::format_ts(s.created_at),
                        output::or_dash(&s.description),
                    ]);
                }
                t.write(&mut out)?;
            }
        }
        SubscriptionsCmd::Create(a) => {
            let api = connect(&a.api)?;
            let req = CreateNamed { name: a.name, description: a.description };
            let s = api.client.create_subscription(&req).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &s)?;
            } else {
                writeln!(out, "Created subscription {:?}.", s.name)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs `picket summary`.
pub async fn summary(args: ApiArgs) -> anyhow::Result<()> {
    let api = connect(&args)?;
    let s = api.client.summary().await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if args.json {
        output::write_json(&mut out, &s)?;
    } else {
        output::write_fields(
            &mut out,
            &[
                ("total", s.total.to_string()),
                ("cloud_connected", s.cloud_connected.to_string()),
                ("locally_managed", s.locally_managed.to_string()),
            ],
        )?;
        // In the contract's order (precedence, then severity), not alphabetical.
        let mut t = Table::new(&["SENSOR STATUS", "COUNT"]);
        for status in picket_domain::SensorStatus::ALL {
            let n = s.by_sensor_status.get(status.as_str()).copied().unwrap_or(0);
            t.row(vec![status.to_string(), n.to_string()]);
        }
        writeln!(out)?;
        t.write(&mut out)?;
        let mut t = Table::new(&["HEALTH STATUS", "COUNT"]);
        for status in picket_domain::HealthStatus::ALL {
            let n = s.by_health_status.get(status.as_str()).copied().unwrap_or(0);
            t.row(vec![status.to_string(), n.to_string()]);
        }
        writeln!(out)?;
        t.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `picket tokens ...`.
pub async fn tokens(cmd: TokensCmd) -> anyhow::Result<()> {
    let mut out = stdout();
    match cmd {
        TokensCmd::Create(a) => {
            let api = connect(&a.api)?;
            let req = CreateTokenRequest {
                role: a.role,
                subscriptions: (!a.subscriptions.is_empty()).then_some(a.subscriptions),
                description: a.description,
            };
            let t = api.client.create_token(&req).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(
                    &mut out,
                    &serde_json::json!({
                        "id": t.id, "role": t.role, "subscriptions": t.subscriptions, "token": t.token,
                    }),
                )?;
            } else {
                let scope = t.subscriptions.as_ref().map_or_else(|| "all subscriptions".to_string(), |s| s.join(", "));
                writeln!(out, "Created {} token {} ({scope}).", t.role, t.id)?;
                writeln!(out, "Its secret is shown only this once; store it now:")?;
                writeln!(out)?;
                writeln!(out, "    {}", t.token)?;
                writeln!(out)?;
            }
        }
        TokensCmd::List(args) => {
            let api = connect(&args)?;
            let tokens = api.client.list_tokens().await.map_err(|e| api.explain(e))?;
            if args.json {
                output::write_json(&mut out, &tokens)?;
            } else {
                let mut t = Table::new(&["ID", "ROLE", "SUBSCRIPTIONS", "CREATED", "REVOKED", "DESCRIPTION"]);
                for tok in &tokens {
                    t.row(vec![
                        tok.id.clone(),
                        tok.role.to_string(),
                        tok.subscriptions.as_ref().map_or_else(|| "(all)".to_string(), |s| output::list(s)),
                        picket_proto::time::format_ts(tok.created_at),
                        output::time_opt(tok.revoked_at),
                        output::or_dash(&tok.description),
                    ]);
                }
                t.write(&mut out)?;
            }
        }
        TokensCmd::Revoke(a) => {
            let api = connect(&a.api)?;
            api.client.revoke_token(&a.id).await.map_err(|e| api.explain(e))?;
            if a.api.json {
                output::write_json(&mut out, &serde_json::json!({ "revoked": a.id }))?;
            } else {
                writeln!(out, "Revoked token {}.", a.id)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs `picket audit`.
pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let api = connect(&a.api)?;
    let page = api.client.list_audit(Some(a.limit), None).await.map_err(|e| api.explain(e))?;
    let mut out = stdout();
    if a.api.json {
        output::write_json(&mut out, &page)?;
    } else {
        let mut t = Table::new(&["ID", "AT", "ACTOR", "ACTION", "TARGET"]);
        for e in &page.items {
            t.row(vec![
                e.id.to_string(),
                picket_proto::time::format_ts(e.at),
                e.actor.clone(),
                e.action.clone(),
                format!("{}:{}", e.target_kind, e.target_id),
            ]);
        }
        t.write(&mut out)?;
    }
    out.flush()?;
    Ok(())
}
