//! A rollout across a real fleet: five sensor+updater pairs, two of them with
//! `delayed_update`, on one server with the delayed ring shortened to 20 s. A new release
//! reaches the three normal sensors one at a time (the next grant only after the previous
//! sensor's clearance), then the two delayed ones, never before the delay has passed. Checked
//! from the rollout's grant records (`update_grants`: given, finished) and by sampling the
//! open grants, the sensors shown `updating` and `GET /api/v1/rollouts/current` while it runs.
//! Then an operator rolls one sensor back (`POST /api/v1/rollouts/current/rollback`) to the
//! previous version its host kept.

use std::time::Duration;

use crate::harness::*;

/// The shortened delay of the delayed ring.
const DELAY_MS: i64 = 20_000;

async fn fleet(backend: Backend) {
    let server = Server::start_with(backend, &["--delay-ring-after", "20s", "--update-deadline", "3m"]).await;
    let db = server.db().await;
    let dir = server.dir.path();
    // 1.0.0 is published too (its rollout targets nobody: every sensor is installed with it),
    // so that an operator can roll back to it.
    let p1 = package(&server.key, "1.0.0", dir);
    server.publish(&p1).await;
    let mut pairs = Vec::new();
    for i in 0..5 {
        let delayed = i >= 3;
        let (id, activation) = server.onboard_with(&format!("dc-fleet-{i}"), delayed).await;
        let inst = dir.join(format!("inst-{i}"));
        install(&activation, &p1, &inst);
        let up = UpdaterProcess::start(&inst, &[]);
        pairs.push((id, delayed, inst, up));
    }
    for (id, ..) in &pairs {
        wait_for(Duration::from_secs(90), "every sensor runs 1.0.0", async || {
            let s = server.sensor(id).await;
            (s["version"] == "1.0.0" && s["service_status"] == "running").then_some(())
        })
        .await;
    }

    server.publish(&package(&server.key, "2.0.0", dir)).await;
    let (mut most_open, mut most_updating, mut most_in_view) = (0usize, 0i64, 0i64);
    let grants = wait_for(Duration::from_secs(300), "all five sensors updated", async || {
        let grants = db.grants("2.0.0").await;
        most_open = most_open.max(grants.iter().filter(|g| g.state == "granted").count());
        let (_, list) = server.call(reqwest::Method::GET, "/api/v1/sensors?sensor_status=updating", None).await;
        most_updating = most_updating.max(list["total"].as_i64().unwrap_or(0));
        let (_, view) = server.call(reqwest::Method::GET, "/api/v1/rollouts/current", None).await;
        most_in_view = most_in_view.max(view["counts"]["updating"].as_i64().unwrap_or(0));
        (grants.len() == 5 && grants.iter().all(|g| g.state != "granted")).then_some(grants)
    })
    .await;
    let started = db.rollout_started_at("2.0.0").await;
    for g in &grants {
        let delayed = pairs.iter().any(|p| p.0 == g.sensor_id && p.1);
        eprintln!(
            "{} delayed={delayed} granted +{} ms, finished +{} ms, {}",
            g.sensor_id,
            g.granted_at - started,
            g.finished_at.unwrap_or(0) - started,
            g.state
        );
    }
    let log = |g: &GrantRow| pairs.iter().find(|p| p.0 == g.sensor_id).map(|p| p.3.log()).unwrap_or_default();
    for g in &grants {
        assert_eq!(g.state, "succeeded", "{g:?}\n{}", log(g));
    }
    assert!(most_open <= 1, "{most_open} grants were open at once");
    assert!(most_updating <= 1, "{most_updating} sensors were shown updating at once");
    assert!(most_in_view <= 1, "the rollout view counted {most_in_view} sensors updating at once");
    // One at a time: each grant given only after the previous one finished.
    for w in grants.windows(2) {
        assert!(w[1].granted_at >= w[0].finished_at.unwrap(), "{:?} overlaps {:?}", w[1], w[0]);
    }
    // The normal ring first, by sensor id; then the delayed ring, after the delay.
    let mut normal: Vec<String> = pairs.iter().filter(|p| !p.1).map(|p| p.0.clone()).collect();
    let mut delayed: Vec<String> = pairs.iter().filter(|p| p.1).map(|p| p.0.clone()).collect();
    normal.sort();
    delayed.sort();
    let order: Vec<String> = grants.iter().map(|g| g.sensor_id.clone()).collect();
    assert_eq!(order, [normal, delayed].concat(), "the grant order");
    for g in &grants[3..] {
        assert!(g.granted_at - started >= DELAY_MS, "a delayed sensor was granted before the delay: {g:?}");
    }
    for (id, _, inst, _) in &pairs {
        assert_eq!(current(inst).as_deref(), Some("2.0.0"));
        wait_for(Duration::from_secs(60), "every sensor up_to_date on 2.0.0", async || {
            let s = server.sensor(id).await;
            (s["version"] == "2.0.0" && s["service_status"] == "running" && s["sensor_status"] == "up_to_date")
                .then_some(())
        })
        .await;
    }
    let (status, view) = server.call(reqwest::Method::GET, "/api/v1/rollouts/current", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((view["state"].as_str(), view["counts"]["updated"].as_i64()), (Some("finished"), Some(5)), "{view}");

    // An operator rolls the first sensor back: a rollback grant, no download, the version
    // kept on its host.
    let (id, _, inst, up) = pairs.iter().find(|p| p.0 == order[0]).unwrap();
    let body = serde_json::json!({"sensor_id": id});
    let (status, v) = server.call(reqwest::Method::POST, "/api/v1/rollouts/current/rollback", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    let g = wait_for(Duration::from_secs(120), "the rollback finished", async || {
        db.grants("2.0.0")
            .await
            .into_iter()
            .find(|g| &g.sensor_id == id && g.version == "1.0.0" && g.state != "granted")
    })
    .await;
    assert_eq!(g.state, "succeeded", "{g:?}\n{}", up.log());
    assert_eq!(current(inst).as_deref(), Some("1.0.0"));
    wait_for(Duration::from_secs(60), "the sensor reports 1.0.0 again", async || {
        let s = server.sensor(id).await;
        (s["version"] == "1.0.0" && s["service_status"] == "running").then_some(())
    })
    .await;
    for (.., up) in &mut pairs {
        up.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_reaches_the_fleet_one_by_one_then_the_delayed_ring_sqlite() {
    fleet(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_reaches_the_fleet_one_by_one_then_the_delayed_ring_postgres() {
    fleet(Backend::Postgres).await;
}
