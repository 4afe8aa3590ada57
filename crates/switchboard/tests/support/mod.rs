//! What the binary's end-to-end tests share: an in-process server on its own runtime,
//! the CLI as real processes, `switchboard serve` as its own process, and output parsing.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;
use switchboard_server::{Server, ServerHandle};

pub mod certs;
pub mod library;
#[cfg(unix)]
pub mod terminal;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A server running on its own runtime for the length of a test.
pub struct TestServer {
    runtime: tokio::runtime::Runtime,
    handle: ServerHandle,
    pub addr: String,
}

impl TestServer {
    pub fn start() -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime
            .block_on(Server::builder().listen_tcp("127.0.0.1:0").start())
            .unwrap();
        let addr = handle.tcp_addr().unwrap().to_string();
        TestServer {
            runtime,
            handle,
            addr,
        }
    }

    /// The CLI, connected to this server under `name`.
    pub fn cli(&self, name: &str) -> Command {
        cli_at(&self.addr, name)
    }

    /// Runs the CLI under `name` with `args`, requires success, and returns its stdout.
    pub fn stdout(&self, name: &str, args: &[&str]) -> Vec<u8> {
        self.cli(name)
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone()
    }

    /// The CLI as a running process with piped output.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Child {
        StdCommand::new(BIN)
            .env_remove("SWITCHBOARD_SERVER")
            .args(["--server", &self.addr, "--name", name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Subscriptions the server holds now, all sessions together.
    pub fn subscriptions(&self) -> u64 {
        self.handle.hub().metrics().subscriptions
    }

    /// Waits until a client called `name` is connected and the server holds
    /// `subscriptions` subscriptions in all (connected is not yet subscribed).
    pub fn wait_for_subscriber(&self, name: &str, subscriptions: u64) {
        wait_for_listed(&self.addr, name);
        wait_until(&format!("{subscriptions} subscriptions"), || {
            self.subscriptions() >= subscriptions
        });
    }
}

/// Polls `ready` until it holds, failing after `PATIENCE_SECS` with `what`.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(PATIENCE_SECS);
    while !ready() {
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a wait for something that should happen at once may take: generous, since
/// the machine may be busy with other builds.
pub const PATIENCE_SECS: u64 = 30;

impl Drop for TestServer {
    fn drop(&mut self) {
        self.runtime.block_on(self.handle.shutdown());
    }
}

/// The CLI connected to `addr` under `name`.
pub fn cli_at(addr: &str, name: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("SWITCHBOARD_SERVER")
        .args(["--server", addr, "--name", name])
        .timeout(Duration::from_secs(120));
    command
}

/// Waits until `clients` on `addr` lists `name`.
fn wait_for_listed(addr: &str, name: &str) {
    wait_until(&format!("{name} connected"), || {
        let out = cli_at(addr, "probe")
            .args(["--json", "clients"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        json_lines(&out).iter().any(|client| client["name"] == name)
    });
}

/// Waits until a client called `name` is connected to the server at `addr`, whose web
/// listener is at `http`, and that server holds `subscriptions` subscriptions in all.
pub fn wait_for_subscriber_at(addr: &str, http: &str, name: &str, subscriptions: u64) {
    wait_for_listed(addr, name);
    wait_until(&format!("{subscriptions} subscriptions"), || {
        subscriptions_at(http) >= subscriptions
    });
}

/// The subscriptions gauge of the server whose web listener is at `http`, read from
/// its `/metrics`.
pub fn subscriptions_at(http: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).expect("the web listener answers");
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes())
        .expect("request written");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    response
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_subscriptions "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no subscriptions gauge in /metrics:\n{response}"))
}

/// A child process killed when dropped, so that a test failing half-way leaves no server
/// behind it.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `switchboard serve --listen 127.0.0.1:0` with `args` as its own process and
/// returns it with its TCP address once it is listening.
pub fn serve_process(args: &[&std::ffi::OsStr]) -> (KillOnDrop, String) {
    serve_process_with_env(args, &[])
}

/// `serve_process` with variables `env` set in its environment.
pub fn serve_process_with_env(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (KillOnDrop, String) {
    let (child, addr, _http) = serve_process_with_web(args, env);
    (child, addr)
}

/// `serve_process_with_env`, returning the web listener's address too.
pub fn serve_process_with_web(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (KillOnDrop, String, String) {
    let mut child = StdCommand::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut addr, mut http) = (None, None);
    while addr.is_none() || http.is_none() {
        let line = lines
            .next()
            .expect("server prints its address")
            .expect("line");
        if let Some(listening) = line.strip_prefix("switchboard listening on ") {
            if let Some(web) = listening
                .strip_prefix("http://")
                .or_else(|| listening.strip_prefix("https://"))
            {
                http = Some(web.to_owned());
            } else if !listening.starts_with("unix:") {
                addr = Some(listening.to_owned());
            }
        }
    }
    // Keeps reading so the server never writes into a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (
        KillOnDrop(child),
        addr.expect("a TCP address"),
        http.expect("an HTTP address"),
    )
}

/// Each line of output as JSON.
pub fn json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// Reads lines from a child's stdout until `want` lines or 15 s.
pub fn read_lines(child: &mut Child, want: usize) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining after the caller stopped listening, so the child never sees
        // a closed pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lines = Vec::new();
    while lines.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    lines
}

/// Waits for a process to exit, killing it and failing after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks a server process to stop (SIGTERM, as a service manager does) and waits for it
/// to exit, failing after `limit`.
#[cfg(unix)]
pub fn terminate(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let sent = StdCommand::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -TERM failed: {sent:?}");
    wait_exit(child, limit)
}

/// A path as an argument.
pub fn arg(path: &Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

/// `switchboard serve --config FILE` as its own process, killed when dropped: its TCP
/// address, its TLS address when asked to wait for one, and every line it logs.
pub struct ConfigServer {
    pub child: KillOnDrop,
    pub tcp: String,
    pub tls: Option<String>,
    /// The web listener's address (always on a free port of its own).
    pub http: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConfigServer {
    /// Starts the server on `config`, with no data directory, admin token or log filter
    /// from the environment; with `tls`, waits for a TLS listener's address too.
    pub fn start(config: &Path, tls: bool) -> ConfigServer {
        let mut child = StdCommand::new(BIN)
            .env_remove("SWITCHBOARD_DATA_DIR")
            .env_remove("SWITCHBOARD_ADMIN_TOKEN")
            .env_remove("RUST_LOG")
            .args(["serve", "--http", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (mut tcp, mut tls_addr, mut http) = (None, None, None);
        while tcp.is_none() || http.is_none() || (tls && tls_addr.is_none()) {
            let line = lines
                .next()
                .expect("the server prints its addresses")
                .expect("line");
            if let Some(addr) = line.strip_prefix("switchboard listening on ") {
                if addr.starts_with("tls://") {
                    tls_addr = Some(addr.to_owned());
                } else if let Some(addr) = addr.strip_prefix("http://") {
                    http = Some(addr.to_owned());
                } else if !addr.starts_with("unix:") {
                    tcp = Some(addr.to_owned());
                }
            }
        }
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = log.clone();
        // Keeps reading so the server never writes into a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        ConfigServer {
            child: KillOnDrop(child),
            tcp: tcp.expect("a TCP address"),
            tls: tls_addr,
            http: http.expect("an HTTP address"),
            log,
        }
    }

    /// Sends SIGHUP: the server reloads its config file.
    #[cfg(unix)]
    pub fn hangup(&self) {
        let status = StdCommand::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Whether the server has logged a line holding `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
    }
}
