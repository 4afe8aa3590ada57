//! `[roles.NAME]` and `[auth] anonymous_role` in the config file: roles that do not make
//! sense stop the server with the file named, and a denial reaches the CLI's user as a
//! clear FORBIDDEN. Real server processes and the CLI as a process.

use std::path::{Path, PathBuf};

mod support;

use support::{arg, cli_at, json_lines, serve_process};

const ROLES: &str = r##"
[auth]
anonymous_role = "guest"

[roles.guest]
publish = { allow = [">"], deny = ["locked.>"] }
subscribe = { allow = ["chat.>", "#*"], deny = ["chat.admin"] }
history = { allow = ["chat.>"] }
admin = ["stats"]

[roles.guest.create_channel]
allow = ["own.>"]
max_history = 10
max_body = "1KiB"
"##;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `serve --config FILE --check`: its success and stderr.
fn check(config: &Path) -> (bool, String) {
    let output = std::process::Command::new(support::BIN)
        .args(["serve", "--no-http", "--memory", "--check", "--config"])
        .arg(config)
        .env_remove("SWITCHBOARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_denied_publish_shows_forbidden_and_the_rule_in_force_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), ROLES);
    let (child, addr) = serve_process(&[
        arg(Path::new("--memory")),
        arg(Path::new("--no-unix")),
        arg(Path::new("--config")),
        arg(&config),
    ]);
    let _served = child;

    let denied = cli_at(&addr, "guest")
        .args(["pub", "locked.x", "hello"])
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("FORBIDDEN"), "{stderr}");
    assert!(
        stderr.contains("publish to locked.x is not permitted"),
        "{stderr}"
    );

    // A publish that would create a channel the role may not create is refused too.
    let uncreated = cli_at(&addr, "guest")
        .args(["pub", "chat.rust", "hello"])
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&uncreated.stderr);
    assert!(
        stderr.contains("create channel chat.rust is not permitted"),
        "{stderr}"
    );

    // The size string caps the channels the role creates.
    let created = cli_at(&addr, "guest")
        .args(["--json", "channel", "create", "own.a"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let info = &json_lines(&created)[0];
    assert_eq!(info["max_bytes"], 1024, "{info}");
    assert_eq!(info["history"], 10, "{info}");
    cli_at(&addr, "guest")
        .args(["pub", "own.a", "hello"])
        .assert()
        .success();

    let stats = cli_at(&addr, "guest")
        .args(["--json", "stats"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let stats = String::from_utf8_lossy(&stats);
    assert!(stats.contains("permission_denials"), "{stats}");
}

#[test]
fn roles_that_do_not_make_sense_are_refused_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[roles.ops]\nadmin = [\"stop\", \"reboot\"]\n", "reboot"),
        (
            "[roles.ops]\npublish = { allow = [\"chat..x\"] }\n",
            "chat..x",
        ),
        (
            "[roles.ops]\nsubscribe = { allow = [\"inbox-{user}\"] }\n",
            "whole token",
        ),
        (
            "[roles.ops]\nsubscribe = { deny = [\"#{user}\"] }\n",
            "hashtag",
        ),
        ("[auth]\nanonymous_role = \"nobody\"\n", "nobody"),
        ("[roles.ops.create_channel]\nmax_body = \"lots\"\n", "lots"),
    ];
    for (text, expected) in cases {
        let config = write_config(dir.path(), text);
        let (ok, stderr) = check(&config);
        assert!(!ok, "{text} was accepted");
        assert!(
            stderr.contains("switchboard.toml") && stderr.contains(expected),
            "{text}: {stderr}"
        );
    }
    let config = write_config(dir.path(), ROLES);
    let (ok, stderr) = check(&config);
    assert!(ok, "{stderr}");
}

#[test]
fn the_bench_runs_under_a_role_of_many_patterns() {
    let output = std::process::Command::new(support::BIN)
        .args([
            "--json",
            "bench",
            "pubsub",
            "--embedded",
            "--role-patterns",
            "50",
            "--count",
            "500",
            "--size",
            "16",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = &json_lines(stdout.as_bytes())[0];
    assert_eq!(report["received"], 500, "{report}");
    assert!(
        report["notes"].to_string().contains("50 allow patterns"),
        "{report}"
    );

    let refused = std::process::Command::new(support::BIN)
        .args(["bench", "pubsub", "--role-patterns", "5"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--embedded"));
}
