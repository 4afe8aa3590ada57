//! The default web address taken by something else: a server that was not told where to
//! listen for HTTP serves on without it (and says so), one that was told stops. A test
//! binary of its own, so that no other test of the run contends for the default port.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{BIN, KillOnDrop};

const DEFAULT_HTTP: &str = "127.0.0.1:7480";

/// Lines of the server's standard error until one starts with `until`, within 15 s.
fn stderr_until(child: &mut KillOnDrop, until: &str) -> Vec<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = line.starts_with(until);
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("no line starting with {until:?} within 15 s: {lines:?}");
}

#[test]
fn the_default_web_address_in_use_leaves_the_hub_serving_and_a_chosen_one_stops_it() {
    // Held here, unless something else already holds it: in use either way.
    let _held = TcpListener::bind(DEFAULT_HTTP).ok();

    let mut server = KillOnDrop(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-unix", "--memory"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts"),
    );
    let lines = stderr_until(&mut server, "switchboard keeps history");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("(the default web address) is in use")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|line| line.contains("listening on http")),
        "{lines:?}"
    );
    let addr = lines
        .iter()
        .find_map(|line| line.strip_prefix("switchboard listening on "))
        .expect("a TCP address");
    let published = Command::new(BIN)
        .args(["--server", addr, "pub", "news", "still serving"])
        .output()
        .expect("pub runs");
    assert!(published.status.success(), "{published:?}");
    assert!(
        server.try_wait().expect("status").is_none(),
        "still running"
    );

    let chosen = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-unix",
            "--memory",
            "--http",
            DEFAULT_HTTP,
        ])
        .output()
        .expect("server runs");
    assert!(!chosen.status.success(), "{chosen:?}");
    assert!(
        String::from_utf8_lossy(&chosen.stderr).contains("cannot listen for HTTP"),
        "{chosen:?}"
    );
}
