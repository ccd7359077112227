//! Starting `picket serve` as a process and running `picket` commands against it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const PICKET: &str = env!("CARGO_BIN_EXE_picket");

/// An admin token for servers started with `PICKET_BOOTSTRAP_TOKEN`.
pub const ADMIN_TOKEN: &str = "pkt_test_admin_token_0123456789abcdef";

/// A port that was free a moment ago (a server in another process cannot bind port 0 for us).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A `picket` command with no `PICKET_*` settings leaking in from the environment.
pub fn picket(cwd: &Path) -> Command {
    let mut cmd = Command::new(PICKET);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PICKET_") {
            cmd.env_remove(&k);
        }
    }
    cmd.current_dir(cwd).env("RUST_LOG", "warn").stdin(Stdio::null());
    cmd
}

/// Whether `GET /healthz` answers 200.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// A running `picket serve` process; killed on drop if still running.
pub struct Server {
    child: Option<Child>,
    /// API port.
    pub port: u16,
    /// Working directory of the server and of CLI runs.
    pub cwd: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    /// Starts `picket serve` in `cwd` with data dir `data_dir` and waits until it is healthy.
    pub fn start(cwd: &Path, data_dir: &Path, bootstrap_token: Option<&str>, run: u32) -> Server {
        Server::start_with(cwd, data_dir, bootstrap_token, run, &[])
    }

    /// `start` with extra `picket serve` flags.
    pub fn start_with(cwd: &Path, data_dir: &Path, bootstrap_token: Option<&str>, run: u32, extra: &[&str]) -> Server {
        let port = free_port();
        let stdout = cwd.join(format!("serve-{run}.out"));
        let stderr = cwd.join(format!("serve-{run}.err"));
        let mut cmd = picket(cwd);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--sensor-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        if let Some(t) = bootstrap_token {
            cmd.env("PICKET_BOOTSTRAP_TOKEN", t);
        }
        let child = cmd.spawn().expect("picket serve starts");
        let mut server = Server { child: Some(child), port, cwd: cwd.to_path_buf(), stdout, stderr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(port) {
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("picket serve exited with {status}: {}", server.stderr_text());
            }
            assert!(Instant::now() < deadline, "picket serve not healthy in 60 s: {}", server.stderr_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server printed on stdout so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the server logged so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Runs `picket ARGS` against this server with `token` (none: the CLI's own fallback).
    pub fn cli_as(&self, token: Option<&str>, args: &[&str]) -> Run {
        let mut cmd = picket(&self.cwd);
        cmd.args(args).env("PICKET_SERVER", self.url());
        if let Some(t) = token {
            cmd.env("PICKET_TOKEN", t);
        }
        Run(cmd.output().expect("picket runs"))
    }

    /// Runs `picket ARGS` as the admin.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_as(Some(ADMIN_TOKEN), args)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "picket serve ignored SIGTERM for 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The outcome of one CLI run.
pub struct Run(pub Output);

impl Run {
    /// Exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    /// Stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts exit code `code` and returns stdout.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> String {
        assert_eq!(self.code(), code, "stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self.stdout()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        self.expect_code(0)
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }
}
