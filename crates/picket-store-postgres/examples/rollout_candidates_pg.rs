//! Times the statements `decide_grants` runs to pick its sensors, on an existing PostgreSQL store
//! (read only: nothing is written, no rollout row needed): the old read of every
//! eligible sensor (`SELECT_CANDIDATES_SCAN`) against the bounded read (open grants counted,
//! then per ring and version the first free sensors by id), and checks both pick the same.
//!
//! `cargo run --release -p picket-store-postgres --example rollout_candidates_pg -- URL TARGET
//! CONCURRENCY RUNS [due] [only]` (e.g. `postgres://postgres@127.0.0.1:54329/picket 2.7.0 1 5`).

use std::str::FromStr;
use std::time::Instant;

use picket_domain::rollout::{RolloutPolicy, delayed_ring_due, free_slots};
use picket_domain::{Timestamp, Version};
use picket_store::rollouts::{Rollout, planned_bounded, planned_by_scan, sql};
use sqlx::{Connection, PgConnection, Row};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn scan(conn: &mut PgConnection, rollout: &Rollout, policy: RolloutPolicy, now: Timestamp) -> Res<Vec<String>> {
    let rows = sqlx::query(sql::SELECT_CANDIDATES_SCAN).bind(rollout.version.to_string()).fetch_all(&mut *conn).await?;
    let mut candidates = Vec::with_capacity(rows.len());
    for r in &rows {
        let state: Option<String> = r.try_get("grant_state")?;
        candidates.push(picket_domain::rollout::Candidate {
            sensor_id: r.try_get("id")?,
            eligible: true,
            delayed: r.try_get::<i64, _>("delayed")? != 0,
            version: r.try_get::<Option<String>, _>("version")?.and_then(|v| v.parse().ok()),
            grant: match state.as_deref() {
                None => picket_domain::rollout::GrantState::None,
                Some("granted") => picket_domain::rollout::GrantState::Granted,
                Some("succeeded") => picket_domain::rollout::GrantState::Succeeded,
                Some(_) => picket_domain::rollout::GrantState::Failed,
            },
        });
    }
    Ok(planned_by_scan(rollout, &candidates, policy, now))
}

async fn bounded(
    conn: &mut PgConnection,
    rollout: &Rollout,
    policy: RolloutPolicy,
    now: Timestamp,
) -> Res<(Vec<String>, usize)> {
    let open: i64 = sqlx::query(sql::COUNT_OPEN).fetch_one(&mut *conn).await?.try_get("n")?;
    let open = usize::try_from(open)?;
    let free = free_slots(open, policy);
    let mut statements = 1;
    if free == 0 {
        return Ok((Vec::new(), statements));
    }
    let rows = sqlx::query(sql::RING_VERSIONS).fetch_all(&mut *conn).await?;
    statements += 1;
    let mut versions = Vec::new();
    for r in &rows {
        versions.push((r.try_get::<i64, _>("delayed")? != 0, r.try_get::<String, _>("version")?));
    }
    let due = delayed_ring_due(rollout.started_at, now, policy.delay_ring_after_ms);
    let mut pending = Vec::new();
    for (ring, keys) in sql::ring_version_keys(&versions, rollout.version).iter().enumerate() {
        let delayed = ring == 1;
        if delayed && (!due || pending.len() >= free) {
            break;
        }
        let pick = sql::pick_pending(delayed);
        for key in keys {
            let rows = sqlx::query(sqlx::AssertSqlSafe(pick.clone()))
                .bind(rollout.version.to_string())
                .bind(*key)
                .bind(i64::try_from(free)?)
                .fetch_all(&mut *conn)
                .await?;
            statements += 1;
            for r in &rows {
                pending.push(picket_domain::rollout::Candidate {
                    sensor_id: r.try_get("id")?,
                    eligible: true,
                    delayed: r.try_get::<i64, _>("delayed")? != 0,
                    version: r.try_get::<Option<String>, _>("version")?.and_then(|v| v.parse().ok()),
                    grant: picket_domain::rollout::GrantState::None,
                });
            }
        }
    }
    Ok((planned_bounded(rollout, open, &pending, policy, now), statements))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, target, concurrency, runs, rest @ ..] = args.as_slice() else {
        return Err("usage: rollout_candidates_pg URL TARGET CONCURRENCY RUNS [due] [only]".into());
    };
    let due = rest.iter().any(|a| a == "due");
    // `only`: the scan runs once (to compare), then the bounded read alone, as the job runs it.
    let only = rest.iter().any(|a| a == "only");
    let mut conn = PgConnection::connect(db).await?;
    sqlx::query("SET default_transaction_read_only = on").execute(&mut conn).await?;
    let now = Timestamp(1_800_000_000_000);
    let rollout = Rollout {
        version: Version::from_str(target)?,
        started_at: if due { Timestamp(0) } else { now },
        paused: false,
        failures: 0,
    };
    let policy =
        RolloutPolicy { concurrency: concurrency.parse()?, max_failures: 1, delay_ring_after_ms: 72 * 3_600_000 };
    let (mut t_scan, mut t_bounded) = (Vec::new(), Vec::new());
    for run in 0..runs.parse::<usize>()? {
        let start = Instant::now();
        let (b, statements) = bounded(&mut conn, &rollout, policy, now).await?;
        t_bounded.push(start.elapsed().as_secs_f64() * 1000.0);
        if only && run > 0 {
            println!("run {run}: bounded {:.2} ms ({statements} statements)", t_bounded[run]);
            continue;
        }
        let start = Instant::now();
        let s = scan(&mut conn, &rollout, policy, now).await?;
        t_scan.push(start.elapsed().as_secs_f64() * 1000.0);
        println!(
            "run {run}: bounded {:.2} ms ({statements} statements), scan {:.1} ms, same decision: {} ({} sensors: {:?})",
            t_bounded[run],
            t_scan[t_scan.len() - 1],
            b == s,
            b.len(),
            b.iter().take(3).collect::<Vec<_>>()
        );
        if b != s {
            return Err("the bounded read decided differently from the scan".into());
        }
    }
    println!("median: bounded {:.2} ms, scan {:.1} ms", median(t_bounded), median(t_scan));
    Ok(())
}
