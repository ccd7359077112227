//! `picket release keygen → sign → verify → publish → list` against a real `picket serve`
//! started with `--release-key-pub`: keys are never overwritten, the package is verified by
//! the CLI and by the server, and refusals exit with the documented codes.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{ADMIN_TOKEN, Server, picket};

#[test]
fn keygen_sign_publish_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let run = |args: &[&str]| crate::harness::Run(picket(cwd).args(args).output().expect("picket runs"));

    let out = run(&["release", "keygen", "--out", "release.key"]);
    assert!(out.ok().contains("release.key.pub"), "{}", out.stdout());
    let mode = std::fs::metadata(cwd.join("release.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the secret key is private");
    assert!(std::fs::read_to_string(cwd.join("release.key")).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    let again = run(&["release", "keygen", "--out", "release.key"]);
    again.expect_code(2);
    assert!(again.stderr().contains("never overwritten"), "{}", again.stderr());
    run(&["release", "keygen", "--out", "other.key"]).ok();

    std::fs::create_dir_all(cwd.join("build/bin")).unwrap();
    std::fs::write(cwd.join("build/bin/picket-sensor"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(cwd.join("build/README"), b"sensor\n").unwrap();
    let sign = |key: &str, version: &str, out: &str| {
        run(&[
            "release",
            "sign",
            "--key",
            key,
            "--version",
            version,
            "--entrypoint",
            "bin/picket-sensor",
            "--input",
            "build",
            "--out",
            out,
        ])
    };
    let signed = sign("release.key", "1.0.0", "picket-1.0.0.pkg");
    assert!(signed.ok().contains("Signed 1.0.0 (2 files"), "{}", signed.stdout());
    let missing = run(&[
        "release",
        "sign",
        "--key",
        "release.key",
        "--version",
        "1.0.1",
        "--entrypoint",
        "bin/nope",
        "--input",
        "build",
        "--out",
        "x.pkg",
    ]);
    missing.expect_code(1);
    assert!(missing.stderr().contains("entry point"), "{}", missing.stderr());
    let verified = run(&["release", "verify", "picket-1.0.0.pkg", "--key-pub", "release.key.pub", "--full"]);
    assert!(verified.ok().starts_with("OK: 1.0.0 signed by key"), "{}", verified.stdout());
    let wrong = run(&["release", "verify", "picket-1.0.0.pkg", "--key-pub", "other.key.pub"]);
    wrong.expect_code(1);
    assert!(wrong.stderr().contains("not one of the trusted release keys"), "{}", wrong.stderr());

    let server =
        Server::start_with(cwd, &cwd.join("data"), Some(ADMIN_TOKEN), 0, &["--release-key-pub", "release.key.pub"]);
    let published = server.cli(&["release", "publish", "picket-1.0.0.pkg"]);
    assert!(published.ok().contains("Published 1.0.0"), "{}", published.stdout());
    let same = server.cli(&["release", "publish", "picket-1.0.0.pkg"]);
    same.expect_code(5);
    assert!(same.stderr().contains("not above the current release 1.0.0"), "{}", same.stderr());
    sign("other.key", "1.1.0", "stranger.pkg").ok();
    let stranger = server.cli(&["release", "publish", "stranger.pkg"]);
    stranger.expect_code(5);
    assert!(stranger.stderr().contains("not one of the trusted release keys"), "{}", stranger.stderr());
    sign("release.key", "1.1.0", "picket-1.1.0.pkg").ok();
    server.cli(&["release", "publish", "picket-1.1.0.pkg", "--json"]).json();
    let list = server.cli(&["release", "list", "--json"]).json();
    assert_eq!(list["current"], "1.1.0", "{list}");
    let versions: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    let table = server.cli(&["release", "list"]).ok();
    assert!(table.contains("VERSION") && table.contains("1.1.0"), "{table}");
    // Activation files carry the key the server trusts.
    let sensor = server
        .cli(&["sensors", "onboard", "--name", "DC01", "--type", "domain_controller", "--activation-file", "dc01.json"])
        .ok();
    assert!(!sensor.is_empty());
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("dc01.json")).unwrap()).unwrap();
    let key = std::fs::read_to_string(cwd.join("release.key.pub")).unwrap();
    assert_eq!(file["package_signing_keys"], serde_json::json!([key.trim()]));
}
