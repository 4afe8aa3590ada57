//! `switchboard bench --embedded` end to end: every mode runs the real binary against a
//! server in its own process with tiny counts, and the JSON report must show a clean run
//! (nothing lost, counts that add up, rates above zero, ordered percentiles).

use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// Generous: a tiny run takes well under a second, but CI machines have 2 busy cores.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--json", "bench", "--embedded"])
        .args(args)
        .timeout(RUN_LIMIT)
        .output()
        .expect("switchboard runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    assert!(
        stderr.is_empty(),
        "nothing on stderr when it is not a terminal, got: {stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object, got: {stdout}");
    serde_json::from_str(lines[0]).expect("the report is JSON")
}

fn number(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is a number in {report}"))
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is a count in {report}"))
}

/// The checks every message-moving mode must pass.
fn assert_clean_flow(report: &Value, mode: &str, publishers: u64) {
    assert_eq!(report["mode"], mode);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["embedded"], true);
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0));
    assert_eq!(count(report, "publishers"), publishers);
    assert!(number(report, "publish_msgs_per_s") > 0.0, "{report}");
    assert!(number(report, "publish_mb_per_s") > 0.0, "{report}");
}

fn assert_nothing_lost(report: &Value, subscribers: u64) {
    let published = count(report, "published");
    assert_eq!(count(report, "subscribers"), subscribers);
    assert_eq!(count(report, "loss"), 0, "{report}");
    assert_eq!(count(report, "out_of_order"), 0, "{report}");
    assert_eq!(count(report, "expected"), count(report, "received"));
    let losses = report["loss_per_subscriber"]
        .as_array()
        .expect("a loss per subscriber");
    assert_eq!(losses.len() as u64, subscribers);
    assert!(losses.iter().all(|loss| loss.as_u64() == Some(0)));
    assert!(number(report, "receive_msgs_per_s") > 0.0, "{report}");
    assert!(number(report, "receive_mb_per_s") > 0.0, "{report}");
    assert!(published > 0);
}

fn assert_ordered_latency(report: &Value, kind: &str, samples: u64) {
    let latency = &report["latency_us"];
    assert_eq!(latency["kind"], kind, "{report}");
    assert_eq!(latency["count"].as_u64(), Some(samples), "{report}");
    let at = |field: &str| {
        latency[field]
            .as_u64()
            .unwrap_or_else(|| panic!("latency {field} in {report}"))
    };
    assert!(at("min") >= 1);
    assert!(at("min") <= at("p50"), "{latency}");
    assert!(at("p50") <= at("p90"), "{latency}");
    assert!(at("p90") <= at("p99"), "{latency}");
    assert!(at("p99") <= at("p99_9"), "{latency}");
    assert!(at("p99_9") <= at("max"), "{latency}");
}

#[test]
fn pubsub_delivers_every_message() {
    let report = bench(&["pubsub", "--count", "2000", "--size", "16"]);
    assert_clean_flow(&report, "pubsub", 1);
    assert_nothing_lost(&report, 1);
    assert_eq!(count(&report, "published"), 2000);
    assert_eq!(count(&report, "received"), 2000);
    assert_eq!(count(&report, "size"), 16);
}

#[test]
fn pubsub_runs_over_websocket_too() {
    let report = bench(&[
        "pubsub",
        "--transport",
        "ws",
        "--count",
        "2000",
        "--size",
        "1k",
    ]);
    assert_clean_flow(&report, "pubsub", 1);
    assert_nothing_lost(&report, 1);
    assert_eq!(count(&report, "received"), 2000);
    let server = report["server"].as_str().unwrap_or_default().to_owned();
    assert!(
        server.starts_with("ws://"),
        "the bench went over WebSocket: {report}"
    );
}

#[test]
fn one_run_compares_tcp_and_websocket() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "--embedded",
            "pubsub",
            "--transport",
            "tcp,ws",
            "--count",
            "500",
            "--size",
            "1k",
        ])
        .timeout(RUN_LIMIT)
        .output()
        .expect("switchboard runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("over TCP:"), "{text}");
    assert!(text.contains("ws://"), "{text}");
    assert!(text.contains("WebSocket / TCP: "), "{text}");
}

#[test]
fn pubsub_with_large_bodies_and_a_small_window() {
    let report = bench(&[
        "--mode", "pubsub", "--count", "300", "--size", "64k", "--window", "8",
    ]);
    assert_clean_flow(&report, "pubsub", 1);
    assert_nothing_lost(&report, 1);
    assert_eq!(count(&report, "size"), 65536);
    assert_eq!(count(&report, "window"), 8);
    assert_eq!(count(&report, "received"), 300);
}

#[test]
fn fanout_counts_deliveries_across_subscribers() {
    let report = bench(&["fanout", "--count", "2000", "--subscribers", "5"]);
    assert_clean_flow(&report, "fanout", 1);
    assert_nothing_lost(&report, 5);
    assert_eq!(count(&report, "published"), 2000);
    assert_eq!(count(&report, "received"), 10_000);
    assert_eq!(count(&report, "size"), 256);
}

#[test]
fn channels_give_each_publisher_its_own_channel() {
    let report = bench(&[
        "channels",
        "--count",
        "2001",
        "--publishers",
        "3",
        "--subscribers",
        "2",
    ]);
    assert_clean_flow(&report, "channels", 3);
    assert_nothing_lost(&report, 6);
    assert_eq!(count(&report, "channels"), 3);
    assert_eq!(count(&report, "published"), 2001);
    // Each message reaches the two subscribers of its own channel only.
    assert_eq!(count(&report, "received"), 4002);
}

#[test]
fn request_times_every_round_trip() {
    let report = bench(&["request", "--count", "500"]);
    assert_clean_flow(&report, "request", 1);
    assert_eq!(count(&report, "published"), 500);
    assert_eq!(count(&report, "acked"), 500);
    assert_eq!(count(&report, "in_flight"), 1);
    assert!(number(&report, "acked_msgs_per_s") > 0.0);
    assert!(
        report.get("loss").is_none(),
        "no subscriber, no loss figure"
    );
    assert_ordered_latency(&report, "ack", 500);
}

#[test]
fn latency_is_paced_and_one_way() {
    let report = bench(&["latency", "--rate", "2000", "--duration", "500ms"]);
    assert_clean_flow(&report, "latency", 1);
    assert_nothing_lost(&report, 1);
    assert_eq!(count(&report, "published"), 1000);
    assert_eq!(count(&report, "rate"), 2000);
    assert_eq!(count(&report, "size"), 64);
    assert_ordered_latency(&report, "one-way", 1000);
    // Paced, not flooded: the publish rate is at most the asked-for rate, give or take. A
    // busy machine may fall behind the pace, so only the upper bound is held.
    let rate = number(&report, "publish_msgs_per_s");
    assert!(rate > 0.0 && rate <= 3000.0, "{rate} msg/s");
}

#[test]
fn durable_pipelines_acks_and_names_the_storage() {
    let report = bench(&[
        "durable",
        "--count",
        "2000",
        "--in-flight",
        "256",
        "--sync",
        "always",
    ]);
    assert_clean_flow(&report, "durable", 1);
    assert_eq!(count(&report, "acked"), 2000);
    assert_eq!(count(&report, "in_flight"), 256);
    assert_eq!(count(&report, "size"), 1024);
    assert_eq!(report["sync"], "always");
    // The channel asked for `always`, but the embedded server keeps no data directory.
    assert_eq!(report["durability"], "always");
    let storage = report["storage"].as_str().expect("a storage description");
    assert!(storage.starts_with("memory-only"), "{storage}");
    assert_ordered_latency(&report, "ack", 2000);
}

#[test]
fn durable_with_subscribers_checks_their_deliveries() {
    let report = bench(&["durable", "--count", "300", "--subscribers", "2"]);
    assert_clean_flow(&report, "durable", 1);
    assert_eq!(
        report["durability"], "memory",
        "the embedded server's default"
    );
    assert_nothing_lost(&report, 2);
    assert_eq!(count(&report, "received"), 600);
}

#[test]
fn idle_reports_memory_per_session() {
    let report = bench(&["idle", "--connections", "200"]);
    assert_eq!(report["mode"], "idle");
    assert_eq!(report["ok"], true, "{report}");
    let idle = &report["idle"];
    assert_eq!(idle["connections"].as_u64(), Some(200));
    assert_eq!(idle["opened"].as_u64(), Some(200));
    // The server counts our 200 sessions (the probe connection has closed by then).
    assert_eq!(idle["server_connections"].as_u64(), Some(200), "{idle}");
    if cfg!(target_os = "linux") {
        let per = idle["rss_per_connection_kib"]
            .as_f64()
            .unwrap_or_else(|| panic!("a per-session figure in {idle}"));
        assert!(per.is_finite(), "{idle}");
        assert!(idle["rss_open_kib"].as_u64() >= Some(1));
    }
}

#[test]
fn the_text_report_is_a_table() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "--embedded", "pubsub", "--count", "500"])
        .timeout(RUN_LIMIT)
        .output()
        .expect("switchboard runs");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("switchboard bench pubsub: embedded server at 127.0.0.1:"));
    for expected in ["msgs/s", "MB/s", "published", "received", "loss"] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
}

#[test]
fn options_of_another_mode_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "--embedded", "pubsub", "--rate", "100"])
        .timeout(RUN_LIMIT)
        .output()
        .expect("switchboard runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--rate applies to latency only"),
        "{stderr}"
    );
}

#[test]
fn sizes_must_be_sizes() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "--embedded", "--size", "lots"])
        .timeout(RUN_LIMIT)
        .output()
        .expect("switchboard runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a size"), "{stderr}");
}

#[test]
fn an_unreachable_server_is_an_error_not_a_hang() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--server",
            "127.0.0.1:1",
            "bench",
            "pubsub",
            "--count",
            "10",
        ])
        .timeout(RUN_LIMIT)
        .output()
        .expect("switchboard runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to 127.0.0.1:1"), "{stderr}");
}
