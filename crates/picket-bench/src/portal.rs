//! `picket-bench portal`: how long a real `picket serve` takes to render the portal's Sensors
//! page for a signed-in user on a seeded store (issue 5: p99 under 100 ms with a filter on
//! 1,000,000 sensors). Each shape is the page with one filter (and the portal's default sort
//! and page size); each run sends every shape `--requests` times in a row over one keep-alive
//! connection, and the report gives each run's p50/p99 and their medians over `--runs`.
//! The same query through `GET /api/v1/sensors` is timed beside it, so the difference is
//! what the portal adds (session lookup, filter choices, rendering) over the store's list.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{TOKEN, ms, percentile, start_server};

/// Options of the portal benchmark.
#[derive(clap::Args, Debug)]
pub struct PortalArgs {
    /// The `picket` binary to start (build it with --release).
    #[arg(long, default_value = "target/release/picket")]
    picket: PathBuf,
    /// Data dir of the seeded store (SQLite lives here; also used for TLS files).
    #[arg(long)]
    data_dir: PathBuf,
    /// PostgreSQL URL of the seeded store (omit for SQLite).
    #[arg(long)]
    database_url: Option<String>,
    /// Requests per shape and run.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Runs (the report gives the median of their p50s and p99s).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also time the same queries through the REST API, for comparison.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compare_api: bool,
}

/// The filtered Sensors pages measured (query strings of `/sensors`), as an operator makes
/// them with the filter chooser.
const PAGE_QUERIES: &[&str] = &[
    "type=domain_controller",
    "health_status=not_healthy_high",
    "zone=default",
    "tag=tier-1",
    "mode=locally_managed&sort=-last_seen_at",
    "sensor_status=outdated",
    "q=dc00001",
];

const USER: &str = "bench-portal";
const PASSWORD: &str = "bench portal password";

/// Creates the benchmark's portal user (if missing) and signs in; returns the cookie.
async fn sign_in(base: &str) -> Result<String> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let body = serde_json::json!({"username": USER, "password": PASSWORD, "role": "operator"});
    let r = http.post(format!("{base}/api/v1/users")).bearer_auth(TOKEN).json(&body).send().await?;
    if !(r.status().as_u16() == 201 || r.status().as_u16() == 409) {
        bail!("creating the portal user: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    // The constants need no escaping but the spaces (reqwest's `form` is not enabled here).
    let form = format!("username={USER}&password={}", PASSWORD.replace(' ', "+"));
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    if !r.status().is_redirection() {
        bail!("signing in: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    let cookie = r.headers().get("set-cookie").context("no session cookie")?.to_str()?;
    Ok(cookie.split(';').next().unwrap_or_default().to_string())
}

/// Times `n` GETs of `url`; fails on any non-200.
async fn time_gets(client: &reqwest::Client, url: &str, n: usize, auth: Auth<'_>) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let req = match auth {
            Auth::Cookie(c) => client.get(url).header("cookie", c),
            Auth::Bearer => client.get(url).bearer_auth(TOKEN),
        };
        let r = req.send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        times.push(t.elapsed());
        if status.as_u16() != 200 {
            bail!("{url}: {status} {}", String::from_utf8_lossy(&body));
        }
    }
    times.sort();
    Ok(times)
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Cookie(&'a str),
    Bearer,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the portal benchmark.
pub async fn run(args: PortalArgs) -> Result<()> {
    let server = start_server(&args.picket, &args.data_dir, args.database_url.as_deref()).await?;
    let cookie = sign_in(&server.base).await?;
    let client = reqwest::Client::new();
    println!(
        "# picket-bench portal against {} ({}): {} runs x {} requests per shape",
        server.base,
        args.database_url.as_deref().map_or("sqlite", |_| "postgres"),
        args.runs,
        args.requests
    );
    // The page must really be the Sensors page with rows (a redirect to sign-in would be fast).
    let first = client.get(format!("{}/sensors?{}", server.base, PAGE_QUERIES[0])).header("cookie", &cookie);
    let page = first.send().await?.text().await?;
    if !page.contains("id=\"sensors\"") {
        bail!("GET /sensors did not render the Sensors page: {}", &page[..page.len().min(300)]);
    }
    let (mut all_p50, mut all_p99) = (Vec::new(), Vec::new());
    for q in PAGE_QUERIES {
        let page_url = format!("{}/sensors?{q}", server.base);
        let api_url = format!("{}/api/v1/sensors?{q}", server.base);
        let total: u64 =
            client.get(&api_url).bearer_auth(TOKEN).send().await?.json::<serde_json::Value>().await?["total"]
                .as_u64()
                .unwrap_or(0);
        let (mut p50s, mut p99s, mut api50, mut api99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.runs {
            let times = time_gets(&client, &page_url, args.requests, Auth::Cookie(&cookie)).await?;
            let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
            let mut line = format!("  run {run}: page p50={} p99={}", ms(p50), ms(p99));
            p50s.push(p50);
            p99s.push(p99);
            if args.compare_api {
                let times = time_gets(&client, &api_url, args.requests, Auth::Bearer).await?;
                let (a50, a99) = (percentile(&times, 0.5), percentile(&times, 0.99));
                line.push_str(&format!("  api p50={} p99={}", ms(a50), ms(a99)));
                api50.push(a50);
                api99.push(a99);
            }
            println!("{line}");
        }
        let (p50, p99) = (median(p50s), median(p99s));
        all_p50.push(p50);
        all_p99.push(p99);
        let api = if args.compare_api {
            format!("  api median p50={} p99={}", ms(median(api50)), ms(median(api99)))
        } else {
            String::new()
        };
        println!("/sensors?{q:<45} total={total:<8} page median p50={} p99={}{api}", ms(p50), ms(p99));
    }
    println!(
        "worst shape: median p50={} median p99={}",
        ms(all_p50.iter().max().copied().unwrap_or_default()),
        ms(all_p99.iter().max().copied().unwrap_or_default())
    );
    Ok(())
}
