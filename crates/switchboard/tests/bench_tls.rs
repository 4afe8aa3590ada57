//! `switchboard bench --embedded --tls`: the embedded server listens on TLS only, with a
//! certificate made for the run, and the bench clients trust it.

use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

#[test]
fn pubsub_over_tls_delivers_every_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--json", "bench", "--embedded", "--tls", "pubsub"])
        .args(["--count", "2000", "--size", "1KiB"])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("switchboard runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("the report is JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["server"]
            .as_str()
            .is_some_and(|server| server.starts_with("tls://")),
        "{report}"
    );
    assert_eq!(report["published"].as_u64(), Some(2000), "{report}");
    assert_eq!(report["received"].as_u64(), Some(2000), "{report}");
    assert_eq!(report["loss"].as_u64(), Some(0), "{report}");
}
