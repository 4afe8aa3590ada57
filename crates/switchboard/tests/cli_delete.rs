//! `channel delete` and `group delete` as real processes against a real server.

use predicates::prelude::*;

mod support;

use support::TestServer;

#[test]
fn channels_and_groups_are_deleted_from_the_command_line() {
    let server = TestServer::start();
    server
        .cli("alice")
        .args(["pub", "scratch", "draft"])
        .assert()
        .success();
    server
        .cli("alice")
        .args(["channel", "delete", "scratch"])
        .assert()
        .success()
        .stdout(predicate::str::contains("channel scratch deleted"));
    server
        .cli("alice")
        .args(["channels"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(no channels)"));
    server
        .cli("alice")
        .args(["channel", "delete", "scratch"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no channel named scratch"));

    server
        .cli("alice")
        .args(["group", "create", "crew"])
        .assert()
        .success();
    let out = server.stdout("alice", &["--json", "group", "delete", "crew"]);
    let reply: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(reply["group"], "crew");
    assert_eq!(reply["deleted"], true);
    server
        .cli("alice")
        .args(["groups"])
        .assert()
        .success()
        .stdout(predicate::str::contains("crew").not());
}
