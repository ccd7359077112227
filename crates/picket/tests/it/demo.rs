//! `picket demo` end to end: the real binary starts `picket serve`, real `picket-updater` +
//! `picket-sensor` pairs, publishes a second release and exits once the rollout is done
//! (`--exit-when-done`); the test reads what it printed and what it left on disk.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::harness::{PICKET, free_port, picket};

/// Builds `picket-sensor` and `picket-updater` next to the `picket` under test (same cargo,
/// target dir and profile), as `picket demo` expects.
fn build_sensor_and_updater() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let bin_dir = Path::new(PICKET).parent().expect("bin dir").to_path_buf();
        let target_dir = bin_dir.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
        cmd.args(["build", "--quiet", "-p", "picket-sensor", "--bin", "picket-sensor"])
            .args(["-p", "picket-updater", "--bin", "picket-updater"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .stdin(Stdio::null());
        if bin_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().is_ok_and(|s| s.success()), "cannot build picket-sensor and picket-updater");
        for b in ["picket-sensor", "picket-updater"] {
            assert!(bin_dir.join(b).is_file(), "{b} missing after building it");
        }
    });
}

/// The version `<install-dir>/current` points at.
fn current_version(install: &Path) -> String {
    let target: PathBuf = std::fs::read_link(install.join("current")).expect("current is a symlink");
    target.file_name().expect("a version dir").to_string_lossy().into_owned()
}

#[test]
fn demo_starts_a_live_fleet_and_rolls_the_second_release_out_to_it() {
    build_sensor_and_updater();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let (api, sensors) = (free_port(), free_port());
    let out = picket(tmp.path())
        .arg("demo")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{api}"), "--sensor-listen", &format!("127.0.0.1:{sensors}")])
        .args(["--sensors", "4", "--heartbeat-interval", "1s", "--delay-ring-after", "20s"])
        .args(["--exit-when-done", "--timeout", "8m"])
        .output()
        .expect("picket demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = || {
        let mut all = String::new();
        for entry in std::fs::read_dir(data.join("sensors")).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(entry.path().join("updater.log")).unwrap_or_default();
            all.push_str(&format!("--- {}\n{}\n", entry.path().display(), &log[log.len().saturating_sub(3000)..]));
        }
        all
    };
    assert!(out.status.success(), "picket demo failed: {}\n{stdout}\n{stderr}\n{}", out.status, logs());

    // The newcomer is told where to look and how to sign in.
    assert!(stdout.contains(&format!("Portal:  http://127.0.0.1:{api}/   user admin   password ")), "{stdout}");
    assert!(
        stdout.contains(&format!("export PICKET_SERVER=http://127.0.0.1:{api} PICKET_TOKEN=pkt_demo_")),
        "{stdout}"
    );
    // Four sensors came up on 1.0.0: three in the normal ring, the last one delayed.
    let names = ["DC01-10-0-1-10", "ADFS01-10-0-1-20", "OT-GW01-10-2-0-5", "DC02-10-1-1-10"];
    for name in names {
        let up = stdout.lines().any(|l| l.trim_start().starts_with(name) && l.contains("up, version 1.0.0"));
        assert!(up, "{name} did not come up:\n{stdout}");
    }
    assert!(stdout.lines().any(|l| l.contains("DC02-10-1-1-10") && l.contains("(delayed ring)")), "{stdout}");
    // The rollout is printed as it happens, and every sensor ends on 1.1.0.
    for name in names {
        let updating =
            stdout.lines().any(|l| l.contains(name) && l.contains("version 1.0.0") && l.contains("updating"));
        let updated =
            stdout.lines().any(|l| l.contains(name) && l.contains("version 1.1.0") && l.contains("up_to_date"));
        assert!(updating && updated, "{name}: no rollout lines\n{stdout}");
    }
    assert!(stdout.contains("Every sensor runs 1.1.0"), "{stdout}");
    // The normal ring went first: the delayed sensor started updating after the other three.
    let first_line = |name: &str, what: &str| {
        stdout.lines().position(|l| l.contains(name) && l.contains(what)).unwrap_or_else(|| panic!("{name} {what}"))
    };
    let delayed_start = first_line("DC02-10-1-1-10", "updating");
    for name in &names[..3] {
        assert!(first_line(name, "version 1.1.0") < delayed_start, "{name} after the delayed ring\n{stdout}");
    }
    // On disk: each sensor's install dir points at 1.1.0.
    for name in names {
        assert_eq!(current_version(&data.join("sensors").join(name).join("install")), "1.1.0", "{name}");
    }
    // Everything was stopped: both ports are free again, and a given data dir is kept.
    assert!(TcpListener::bind(("127.0.0.1", api)).is_ok(), "the API port is still taken");
    assert!(TcpListener::bind(("127.0.0.1", sensors)).is_ok(), "the sensor port is still taken");
    assert!(stdout.contains("Kept "), "{stdout}");
    assert!(data.join("logs/serve.log").is_file());
}

#[test]
fn demo_refuses_a_used_data_dir_and_names_the_build_command_when_binaries_are_missing() {
    build_sensor_and_updater();
    let tmp = tempfile::tempdir().unwrap();
    let used = tmp.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("something"), "x").unwrap();
    let out = picket(tmp.path())
        .args(["demo", "--data-dir"])
        .arg(&used)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--sensor-listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"), "{out:?}");

    // A picket alone in its directory: the error says how to build the other two.
    let lonely = tmp.path().join("bin");
    std::fs::create_dir_all(&lonely).unwrap();
    let exe = lonely.join("picket");
    std::fs::copy(PICKET, &exe).unwrap();
    let out = Command::new(&exe).arg("demo").stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("picket-sensor and picket-updater"), "{stderr}");
    assert!(stderr.contains("cargo build --release -p picket -p picket-sensor -p picket-updater"), "{stderr}");
}
