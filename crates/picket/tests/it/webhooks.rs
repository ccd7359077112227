//! `picket webhooks` against a real `picket serve`: a generated secret is printed once and
//! never listed, a given one is read from standard input, refusals exit with the documented
//! codes; `picket serve --syslog` refuses a target it cannot use.

use std::io::Write;
use std::process::Stdio;

use crate::harness::{ADMIN_TOKEN, Run, Server, picket};

fn cli_with_stdin(server: &Server, cwd: &std::path::Path, args: &[&str], stdin: &str) -> Run {
    let mut cmd = picket(cwd);
    cmd.args(args).env("PICKET_SERVER", server.url()).env("PICKET_TOKEN", ADMIN_TOKEN);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("picket runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    Run(child.wait_with_output().expect("picket ends"))
}

#[test]
fn webhooks_are_managed_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), Some(ADMIN_TOKEN), 0);

    let added = server.cli(&["webhooks", "add", "https://hooks.example.com/picket"]).ok();
    let secret = added.split_whitespace().find(|w| w.starts_with("whsec_")).expect("the generated secret is shown");
    assert_eq!(secret.len(), 70, "{added}");
    assert!(added.contains("X-Picket-Signature"), "{added}");

    let given = cli_with_stdin(
        &server,
        dir.path(),
        &["webhooks", "add", "http://127.0.0.1:9/hook", "--secret-stdin", "--json"],
        "my-own-secret-0123456789\n",
    )
    .json();
    assert_eq!(given["secret"], "my-own-secret-0123456789");
    let id = given["id"].as_str().unwrap().to_string();

    let listed = server.cli(&["webhooks", "list", "--json"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let table = server.cli(&["webhooks", "list"]).ok();
    assert!(table.contains("https://hooks.example.com/picket") && table.contains(&id), "{table}");
    assert!(!table.contains(secret) && !listed.to_string().contains("my-own-secret"), "secrets are never listed");

    let bad = server.cli(&["webhooks", "add", "ftp://example.com/x"]);
    bad.expect_code(5);
    assert!(bad.stderr().contains("http://"), "{}", bad.stderr());
    let short =
        cli_with_stdin(&server, dir.path(), &["webhooks", "add", "https://x.example/", "--secret-stdin"], "short\n");
    short.expect_code(5);
    let empty = cli_with_stdin(&server, dir.path(), &["webhooks", "add", "https://x.example/", "--secret-stdin"], "");
    empty.expect_code(2);

    assert_eq!(server.cli(&["webhooks", "remove", &id]).ok().trim(), format!("Removed webhook {id}."));
    server.cli(&["webhooks", "remove", &id]).expect_code(3);
    assert_eq!(server.cli(&["webhooks", "list", "--json"]).json().as_array().map(Vec::len), Some(1));
    server.terminate();

    // A syslog target that is not udp:// or tcp:// stops the server at start, naming it.
    let out = picket(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sensor-listen",
            "127.0.0.1:0",
            "--syslog",
            "syslog.example.com:514",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("PICKET_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("picket serve runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("syslog target") && err.contains("udp://HOST:PORT"), "{err}");
}
