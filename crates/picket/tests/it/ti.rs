//! `picket ti sign → verify → publish → list → download` against a real `picket serve`
//! started with `--release-key-pub`: the indicators file is checked before signing, the
//! package is verified by the CLI and by the server, a downloaded package is byte for byte the
//! one published, and refusals exit with the documented codes.

use crate::harness::{ADMIN_TOKEN, Server, picket};

#[test]
fn ti_sign_publish_download_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let run = |args: &[&str]| crate::harness::Run(picket(cwd).args(args).output().expect("picket runs"));
    run(&["release", "keygen", "--out", "release.key"]).ok();
    run(&["release", "keygen", "--out", "other.key"]).ok();
    std::fs::write(
        cwd.join("indicators.json"),
        r#"{"indicators": [
            {"type": "ip", "value": "203.0.113.7", "severity": "high", "description": "C2"},
            {"type": "domain", "value": "evil.example", "severity": "medium"},
            {"type": "pattern", "value": "mimikatz", "severity": "high"}
        ]}"#,
    )
    .unwrap();
    std::fs::write(cwd.join("bad.json"), r#"{"indicators": [{"type": "ip", "value": "nope", "severity": "high"}]}"#)
        .unwrap();
    let sign = |key: &str, version: &str, input: &str, out: &str| {
        run(&["ti", "sign", "--key", key, "--version", version, "--input", input, "--out", out])
    };
    let signed = sign("release.key", "1", "indicators.json", "ti-1.pkg");
    assert!(signed.ok().contains("Signed TI version 1 (3 indicators"), "{}", signed.stdout());
    let bad = sign("release.key", "2", "bad.json", "bad.pkg");
    bad.expect_code(2);
    assert!(bad.stderr().contains("indicator 0"), "{}", bad.stderr());
    assert!(!cwd.join("bad.pkg").exists(), "nothing written for a bad indicators file");
    sign("release.key", "0", "indicators.json", "zero.pkg").expect_code(2);
    let verified = run(&["ti", "verify", "ti-1.pkg", "--key-pub", "release.key.pub"]);
    assert!(verified.ok().starts_with("OK: TI version 1 signed by key"), "{}", verified.stdout());
    let wrong = run(&["ti", "verify", "ti-1.pkg", "--key-pub", "other.key.pub"]);
    wrong.expect_code(1);
    assert!(wrong.stderr().contains("not one of the trusted release keys"), "{}", wrong.stderr());

    let server =
        Server::start_with(cwd, &cwd.join("data"), Some(ADMIN_TOKEN), 0, &["--release-key-pub", "release.key.pub"]);
    let published = server.cli(&["ti", "publish", "ti-1.pkg"]);
    assert!(published.ok().contains("Published TI version 1 (3 indicators"), "{}", published.stdout());
    let same = server.cli(&["ti", "publish", "ti-1.pkg"]);
    same.expect_code(5);
    assert!(same.stderr().contains("not above the current TI version 1"), "{}", same.stderr());
    sign("other.key", "2", "indicators.json", "stranger.pkg").ok();
    let stranger = server.cli(&["ti", "publish", "stranger.pkg"]);
    stranger.expect_code(5);
    assert!(stranger.stderr().contains("not one of the trusted release keys"), "{}", stranger.stderr());
    sign("release.key", "2", "indicators.json", "ti-2.pkg").ok();
    let v2 = server.cli(&["ti", "publish", "ti-2.pkg", "--json"]).json();
    assert_eq!((v2["version"].as_i64(), v2["current"].as_bool()), (Some(2), Some(true)), "{v2}");
    let list = server.cli(&["ti", "list", "--json"]).json();
    assert_eq!(list["current"], 2, "{list}");
    let table = server.cli(&["ti", "list"]).ok();
    assert!(table.contains("VERSION") && table.contains("INDICATORS"), "{table}");
    let got = server.cli(&["ti", "download", "1", "--out", "downloaded.pkg"]);
    assert!(got.ok().contains("picket-sensor ti import"), "{}", got.stdout());
    assert_eq!(std::fs::read(cwd.join("downloaded.pkg")).unwrap(), std::fs::read(cwd.join("ti-1.pkg")).unwrap());
    server.cli(&["ti", "download", "1", "--out", "downloaded.pkg"]).expect_code(2);
    let missing = server.cli(&["ti", "download", "7", "--out", "seven.pkg"]);
    assert_ne!(missing.code(), 0, "{}", missing.stderr());
    assert!(!cwd.join("seven.pkg").exists());
}
