//! `picket rollout status|pause|resume|rollback` against a real `picket serve` started with
//! `--rollout-concurrency 2` on a seeded fleet: two sensors update at once, the table and
//! `--json` show them, pause/resume change the state, a viewer is refused, a rollback of a
//! sensor gives it a rollback grant, and refusals exit with the documented codes.

use std::time::{Duration, Instant};

use crate::harness::{ADMIN_TOKEN, Server, picket};

#[test]
fn rollout_commands_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let run = |args: &[&str]| crate::harness::Run(picket(cwd).args(args).output().expect("picket runs"));
    run(&["release", "keygen", "--out", "release.key"]).ok();
    std::fs::create_dir_all(cwd.join("build/bin")).unwrap();
    std::fs::write(cwd.join("build/bin/picket-sensor"), b"#!/bin/sh\necho hi\n").unwrap();
    for v in ["2.4.0", "2.6.1", "3.0.0"] {
        let out = format!("picket-{v}.pkg");
        run(&[
            "release",
            "sign",
            "--key",
            "release.key",
            "--version",
            v,
            "--entrypoint",
            "bin/picket-sensor",
            "--input",
            "build",
            "--out",
            &out,
        ])
        .ok();
    }
    let data = cwd.join("data");
    run(&["seed", "--sensors", "40", "--data-dir", data.to_str().unwrap()]).ok();
    let server = Server::start_with(
        cwd,
        &data,
        Some(ADMIN_TOKEN),
        0,
        &["--release-key-pub", "release.key.pub", "--rollout-concurrency", "2"],
    );

    let none = server.cli(&["rollout", "status"]);
    none.expect_code(3);
    assert!(none.stderr().contains("no rollout yet"), "{}", none.stderr());

    for v in ["2.4.0", "2.6.1", "3.0.0"] {
        server.cli(&["release", "publish", &format!("picket-{v}.pkg")]).ok();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        // The rollout job starts the rollout within a second of the publish (404 until then).
        let r = server.cli(&["rollout", "status", "--json"]);
        let s = if r.code() == 0 { r.json() } else { serde_json::Value::Null };
        if s["version"] == "3.0.0" && s["counts"]["updating"] == 2 {
            break s;
        }
        assert!(Instant::now() < deadline, "two sensors never updated at once: {s} {}", r.stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["concurrency"], 2, "--rollout-concurrency took effect");
    assert_eq!(status["previous_version"], "2.6.1");
    assert_eq!(status["state"], "active");
    let table = server.cli(&["rollout", "status"]).ok();
    for want in ["Release", "3.0.0", "Concurrency", "2 updating", "SENSOR", "RING", "immediate", "updating"] {
        assert!(table.contains(want), "missing {want:?} in:\n{table}");
    }

    let viewer = server.cli(&["tokens", "create", "--role", "viewer", "--json"]).json();
    let viewer = viewer["token"].as_str().unwrap().to_string();
    server.cli_as(Some(&viewer), &["rollout", "status"]).ok();
    let refused = server.cli_as(Some(&viewer), &["rollout", "pause"]);
    refused.expect_code(4);
    assert!(refused.stderr().contains("operator"), "{}", refused.stderr());

    let paused = server.cli(&["rollout", "pause"]).ok();
    assert!(paused.contains("paused (paused by an operator"), "{paused}");
    assert_eq!(server.cli(&["rollout", "status", "--json"]).json()["paused_by"], "operator");
    let resumed = server.cli(&["rollout", "resume", "--json"]).json();
    assert_eq!(resumed["state"], "active");

    // A pending sensor on 2.6.1 goes back to 2.4.0.
    let pending = status["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "pending" && s["version"] == "2.6.1")
        .expect("a pending sensor on 2.6.1")["sensor_id"]
        .as_str()
        .unwrap()
        .to_string();
    let back = server.cli(&["rollout", "rollback", "--sensor", &pending]).ok();
    assert!(back.contains(&pending) && back.contains("2.6.1") && back.contains("2.4.0"), "{back}");
    let s = server.cli(&["rollout", "status", "--json"]).json();
    let row = s["sensors"].as_array().unwrap().iter().find(|x| x["sensor_id"] == pending.as_str()).unwrap().clone();
    assert_eq!((row["state"].as_str(), row["action"].as_str()), (Some("rolling_back"), Some("rollback")));
    let nothing = server.cli(&["rollout", "rollback", "--version", "9.9.9"]);
    nothing.expect_code(5);
    assert!(nothing.stderr().contains("nothing to roll back"), "{}", nothing.stderr());
    server.cli(&["rollout", "rollback", "--sensor", "x", "--version", "2.6.1"]).expect_code(2);
    server.cli(&["rollout", "rollback", "--sensor", "no-such-sensor"]).expect_code(3);
}
