//! The JavaScript client's test suite (`clients/js/test`, Node's built-in test runner)
//! run against this build's server binary, so that `cargo test` covers the browser
//! client too: its golden frames, every operation end to end, and interop with the CLI.
//!
//! Needs Node 20 or later on the PATH (or in `NODE`). Where there is none, setting
//! `SWITCHBOARD_SKIP_JS=1` skips the suite, saying so; without it, a missing Node fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn node() -> PathBuf {
    std::env::var_os("NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

fn node_major(node: &Path) -> Option<u32> {
    let output = Command::new(node).arg("--version").output().ok()?;
    let version = String::from_utf8(output.stdout).ok()?;
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

#[test]
fn javascript_client_suite_passes() {
    let node = node();
    let Some(major) = node_major(&node) else {
        if std::env::var_os("SWITCHBOARD_SKIP_JS").is_some() {
            eprintln!(
                "SWITCHBOARD_SKIP_JS is set and there is no Node: the JavaScript client's suite is skipped"
            );
            return;
        }
        panic!(
            "Node ({}) is needed for the JavaScript client's tests: install Node 20 or later, \
             or set SWITCHBOARD_SKIP_JS=1 to skip them",
            node.display()
        );
    };
    assert!(
        major >= 20,
        "the JavaScript client needs Node 20 or later, found {major}"
    );

    let client_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/js");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(client_dir.join("test"))
        .expect("clients/js/test is readable")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(".test.js"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no test files in clients/js/test");

    let mut command = Command::new(&node);
    if major < 22 {
        // Node 20 and 21 have a global WebSocket only behind this flag.
        command.arg("--experimental-websocket");
    }
    let output = command
        .arg("--test")
        .args(&tests)
        .current_dir(&client_dir)
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the JavaScript client's tests failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("# fail 0"),
        "the test runner reported no result:\n{stdout}"
    );
}
