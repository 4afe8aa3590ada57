//! The server's log under connection churn: a line per connection at info grew the log
//! without bound (about 640 bytes per connection). Sessions are now logged at debug, a
//! periodic summary at info, and the log file is capped by `--log-max-bytes`, keeping one
//! rotated file.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{arg, cli_at, serve_process};

fn serve_logging(log: &Path, extra: &[&str]) -> (support::KillOnDrop, String) {
    let mut args = vec![
        arg(log),
        "--memory".as_ref(),
        "--no-unix".as_ref(),
        "--connection-summary".as_ref(),
        "200ms".as_ref(),
    ];
    args.insert(0, "--log-file".as_ref());
    args.extend(
        extra
            .iter()
            .map(|extra| -> &std::ffi::OsStr { extra.as_ref() }),
    );
    serve_process(&args)
}

fn stop(mut server: support::KillOnDrop) {
    let _ = server.kill();
    let _ = server.wait();
}

/// Waits until the log holds `wanted`; false after 20 s (generous for a busy machine:
/// the wait ends as soon as the line is there).
fn log_shows(log: &Path, wanted: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|text| text.contains(wanted)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Two sessions open and close: at the default level the log has no line for either,
/// only the summary counting them.
#[test]
fn sessions_are_summed_up_at_info_not_logged_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (server, addr) = serve_logging(&log, &[]);
    for name in ["first", "second"] {
        cli_at(&addr, name).arg("stats").assert().success();
    }
    assert!(
        log_shows(&log, "sessions in the last 200ms"),
        "no summary: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Every session is counted once it has closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let closed: u64 = text
            .lines()
            .filter_map(|line| line.split("closed=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        if closed >= 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop(server);
    assert!(!text.contains("session opened"), "{text}");
    assert!(!text.contains("session closed"), "{text}");
    assert!(!text.contains("accepted"), "{text}");
    let opened: u64 = text
        .lines()
        .filter_map(|line| line.split("opened=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(opened, 2, "{text}");
}

/// At debug, each session has its lines.
#[test]
fn sessions_are_logged_one_by_one_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (server, addr) = serve_logging(&log, &["--log-level", "debug"]);
    cli_at(&addr, "visible").arg("stats").assert().success();
    assert!(log_shows(&log, "session closed"));
    stop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("session opened"), "{text}");
    assert!(text.contains("name=visible"), "{text}");
}

/// Under churn at debug, the log file stays under its cap: it is renamed `.1` when full,
/// and a new one begins.
#[test]
fn the_log_file_rotates_at_its_cap() {
    const CAP: u64 = 4000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let rotated = dir.path().join("server.log.1");
    let (server, addr) = serve_logging(
        &log,
        &["--log-level", "debug", "--log-max-bytes", &CAP.to_string()],
    );
    // Connections that leave before a session: a line or two each at debug.
    for _ in 0..100 {
        drop(std::net::TcpStream::connect(&addr).unwrap());
    }
    // Generous for a busy machine: the wait ends as soon as the file is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rotated.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each write keeps both files within the cap, whenever the server is stopped. A
    // kill that lands inside a rotation, after the rename and before the new file is
    // made, leaves no current file: the next start makes it.
    stop(server);
    assert!(rotated.exists(), "no rotated file");
    let current = std::fs::metadata(&log).map_or(0, |meta| meta.len());
    let kept = std::fs::metadata(&rotated).unwrap().len();
    assert!(current <= CAP, "the log file holds {current} bytes");
    assert!(
        kept <= CAP && kept > CAP / 2,
        "the rotated file holds {kept} bytes"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        assert!(path == log || path == rotated, "{} is left", path.display());
    }
}
