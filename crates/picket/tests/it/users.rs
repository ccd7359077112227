//! `picket users` against a real `picket serve`, and the portal that the same process serves:
//! passwords come from standard input (never a flag), refusals exit with the documented
//! codes, and the user then signs in to the portal.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use crate::harness::{ADMIN_TOKEN, Run, Server, picket};

/// Runs `picket ARGS` as the admin with `stdin` piped in.
fn cli_with_stdin(server: &Server, cwd: &std::path::Path, args: &[&str], stdin: &str) -> Run {
    let mut cmd = picket(cwd);
    cmd.args(args).env("PICKET_SERVER", server.url()).env("PICKET_TOKEN", ADMIN_TOKEN);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("picket runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    Run(child.wait_with_output().expect("picket ends"))
}

/// A raw HTTP/1.1 request to the server; the whole answer.
fn http(server: &Server, request: &str) -> String {
    let addr = server.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.write_all(request.replace("HOST", &addr).as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn users_are_managed_from_the_cli_and_sign_in_to_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &dir.path().join("data"), Some(ADMIN_TOKEN), 0);
    let pw = "correct horse battery staple";

    let out = cli_with_stdin(
        &server,
        dir.path(),
        &["users", "add", "alice", "--role", "operator", "--password-stdin"],
        &format!("{pw}\n"),
    );
    assert_eq!(out.ok().trim(), "Created user alice (operator).");
    // Without --password-stdin and without a terminal there is nobody to ask: a usage error.
    let no_tty = server.cli(&["users", "add", "bob", "--role", "viewer"]);
    no_tty.expect_code(2);
    assert!(no_tty.stderr().contains("--password-stdin"), "{}", no_tty.stderr());
    let short = cli_with_stdin(
        &server,
        dir.path(),
        &["users", "add", "bob", "--role", "viewer", "--password-stdin"],
        "short\n",
    );
    short.expect_code(5);
    assert!(short.stderr().contains("at least 12"), "{}", short.stderr());
    let dup = cli_with_stdin(
        &server,
        dir.path(),
        &["users", "add", "alice", "--role", "viewer", "--password-stdin"],
        &format!("{pw}\n"),
    );
    dup.expect_code(5);
    let listed = server.cli(&["users", "list", "--json"]).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!((listed[0]["username"].as_str(), listed[0]["role"].as_str()), (Some("alice"), Some("operator")));
    assert!(server.cli(&["users", "list"]).ok().contains("alice"));

    // The portal is served by the same process: sign in with the new password.
    let new_pw = "another long passphrase";
    cli_with_stdin(&server, dir.path(), &["users", "passwd", "alice", "--password-stdin"], &format!("{new_pw}\n")).ok();
    let login = http(&server, "GET /login HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n");
    assert!(login.starts_with("HTTP/1.1 200") && login.contains("Sign in to Picket"), "{login}");
    let form = "username=alice&password=another+long+passphrase&next=%2Fsensors";
    let signed = http(
        &server,
        &format!(
            "POST /login HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert!(signed.starts_with("HTTP/1.1 303") && signed.contains("location: /sensors"), "{signed}");
    assert!(signed.contains("set-cookie: picket_session=") && signed.contains("HttpOnly"), "{signed}");

    assert_eq!(server.cli(&["users", "remove", "alice"]).ok().trim(), "Removed user alice.");
    server.cli(&["users", "remove", "alice"]).expect_code(3);
    let audit = server.cli(&["audit", "--json"]).ok();
    for action in ["user.create", "user.passwd", "user.sign_in", "user.delete"] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
}
