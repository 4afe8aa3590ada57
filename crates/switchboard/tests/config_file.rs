//! `switchboard serve --config FILE`: the settings from a TOML file, overridden by the
//! environment and the flags, checked with `--check`; real server processes throughout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

mod support;

use support::{BIN, cli_at, json_lines};

/// The variables `serve` reads, removed so that the tests' own environment cannot leak in.
const SERVE_VARIABLES: [&str; 4] = [
    "SWITCHBOARD_DATA_DIR",
    "SWITCHBOARD_ADMIN_TOKEN",
    "SWITCHBOARD_HMAC_KEY_FILE",
    "RUST_LOG",
];

/// `switchboard serve` with exactly `args` (no --listen of its own).
fn serve_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for variable in SERVE_VARIABLES {
        command.env_remove(variable);
    }
    command
        .args(["serve", "--no-http"])
        .args(args)
        .timeout(Duration::from_secs(60));
    command
}

/// A server process, killed when dropped (it keeps nothing on disk).
struct ServeProcess {
    child: Child,
    addr: String,
}

impl ServeProcess {
    /// Starts `switchboard serve` with exactly `args` and waits for its TCP address.
    fn start(args: &[&str]) -> ServeProcess {
        let mut command = StdCommand::new(BIN);
        for variable in SERVE_VARIABLES {
            command.env_remove(variable);
        }
        let mut child = command
            .args(["serve", "--no-http"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let _ = child.kill();
                    panic!("server ended before it listened");
                }
            };
            if let Some(addr) = line.strip_prefix("switchboard listening on ")
                && !addr.starts_with("unix:")
            {
                break addr.to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ServeProcess { child, addr }
    }

    /// Publishes `count` messages to `channel` and returns how many its history keeps.
    fn history_kept(&self, channel: &str, count: usize) -> usize {
        for n in 0..count {
            cli_at(&self.addr, "writer")
                .args(["pub", channel, &format!("message {n}")])
                .assert()
                .success();
        }
        let out = cli_at(&self.addr, "reader")
            .args(["--json", "history", channel])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        json_lines(&out).len()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `serve --check` with `args`: its exit status, stdout and stderr.
fn check(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    run_serve(&[args, &["--check"]].concat(), env)
}

/// `serve` with `args`: its exit status, stdout and stderr.
fn run_serve(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = serve_command(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The effective settings `serve --check json` prints.
fn effective(args: &[&str], env: &[(&str, &str)]) -> Value {
    let (ok, stdout, stderr) = run_serve(&[args, &["--check", "json"]].concat(), env);
    assert!(ok, "--check failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{stdout}: {error}"))
}

const SERVER_CONFIG: &str = r#"
[listen]
tcp = ["127.0.0.1:0"]
unix = false

[limits]
history = 2

[storage]
memory = true
"#;

#[test]
fn a_server_listens_and_keeps_history_as_its_config_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), SERVER_CONFIG);
    let server = ServeProcess::start(&["--config", config.to_str().unwrap()]);
    // Without the file it would listen on the default port 7420.
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    assert!(!server.addr.ends_with(":7420"), "{}", server.addr);
    assert_eq!(server.history_kept("news", 4), 2);
}

#[test]
fn a_flag_wins_over_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    // A documentation address no interface has: the server starts only if --listen wins.
    let config = write_config(
        dir.path(),
        &SERVER_CONFIG.replace("127.0.0.1:0", "192.0.2.1:0"),
    );
    let server = ServeProcess::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--history",
        "3",
    ]);
    assert!(server.addr.starts_with("127.0.0.1:"), "{}", server.addr);
    assert_eq!(server.history_kept("news", 5), 3);
}

#[test]
fn the_environment_wins_over_the_config_file_and_a_flag_over_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[storage]\ndata_dir = \"from-file\"\nsync = \"always\"\n",
    );
    let config = config.to_str().unwrap();
    let from_file = effective(&["--config", config], &[]);
    assert_eq!(
        from_file["storage"]["data_dir"],
        dir.path().join("from-file").to_str().unwrap(),
        "a relative path is taken from the file's directory"
    );
    assert_eq!(from_file["storage"]["sync"], "always");

    let env = [("SWITCHBOARD_DATA_DIR", "from-env")];
    let from_env = effective(&["--config", config], &env);
    assert_eq!(from_env["storage"]["data_dir"], "from-env");
    assert_eq!(from_env["storage"]["sync"], "always");

    let from_flag = effective(&["--config", config, "--data-dir", "from-flag"], &env);
    assert_eq!(from_flag["storage"]["data_dir"], "from-flag");
    let memory = effective(&["--config", config, "--memory", "--sync", "never"], &[]);
    assert_eq!(memory["storage"]["memory"], true);
    assert_eq!(memory["storage"]["sync"], "never");
}

#[test]
fn check_prints_the_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "token-in-a-file\n").unwrap();
    std::fs::write(dir.path().join("hmac.key"), "key-in-a-file\n").unwrap();
    let config = write_config(
        dir.path(),
        r#"
[listen]
tcp = ["127.0.0.1:7555", "[::1]:7555"]

[limits]
history = 42
max_memory = "512MiB"
frame_timeout = "5s"

[secrets]
admin_token_file = "admin.token"
hmac_key_file = "hmac.key"
"#,
    );
    let (ok, stdout, stderr) = check(&["--config", config.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    for line in [
        "[listen]",
        r#"tcp = ["127.0.0.1:7555", "[::1]:7555"]"#,
        "history = 42",
        r#"max_memory = "512MiB""#,
        r#"frame_timeout = "5s""#,
        r#"sync = "interval""#,
        "[secrets]",
    ] {
        assert!(
            stdout.lines().any(|got| got == line),
            "{line:?} not in\n{stdout}"
        );
    }
    let token_file = dir.path().join("admin.token");
    assert!(stdout.contains(token_file.to_str().unwrap()), "{stdout}");
    assert!(!stdout.contains("token-in-a-file"), "{stdout}");
    assert!(!stdout.contains("key-in-a-file"), "{stdout}");

    // The environment's token wins over the file's token file; an empty one does not.
    let from_env = effective(
        &["--config", config.to_str().unwrap()],
        &[("SWITCHBOARD_ADMIN_TOKEN", "token-in-env")],
    );
    assert_eq!(from_env["secrets"].get("admin_token_file"), None);
    let empty = effective(
        &["--config", config.to_str().unwrap()],
        &[("SWITCHBOARD_ADMIN_TOKEN", "")],
    );
    assert_eq!(
        empty["secrets"]["admin_token_file"],
        token_file.to_str().unwrap()
    );

    // A token from the environment shows as set, never as itself.
    let (ok, stdout, stderr) = check(&[], &[("SWITCHBOARD_ADMIN_TOKEN", "token-in-env")]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("SWITCHBOARD_ADMIN_TOKEN"), "{stdout}");
    assert!(!stdout.contains("token-in-env"), "{stdout}");
}

#[test]
fn check_refuses_a_secret_file_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[secrets]\nhmac_key_file = \"absent.key\"\n");
    let (ok, _, stderr) = check(&["--config", config.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("absent.key"), "{stderr}");
}

/// `serve --config` on `text`: fails with exit 1 and this one-line reason on stderr.
fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), text);
    for check in [true, false] {
        let mut command = serve_command(&["--config", config.to_str().unwrap()]);
        if check {
            command.arg("--check");
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "check {check}: {output:?}");
        assert!(output.stdout.is_empty(), "check {check}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let prefix = format!("switchboard: {}:", config.display());
        if let Some(reason) = stderr.trim_end().strip_prefix(&prefix) {
            if check {
                continue;
            }
            return reason.to_owned();
        }
        panic!("{stderr:?} does not start with {prefix:?}");
    }
    unreachable!()
}

#[test]
fn an_unknown_key_is_refused_with_its_line_and_column() {
    let reason = refused("[listen]\nbacklog = 10\n\n[limits]\nhistory = 5\n  histroy = 7\n");
    assert!(
        reason.starts_with("6:3: unknown field `histroy`, expected one of"),
        "{reason}"
    );
    assert!(reason.contains("`history`"), "{reason}");
    let reason = refused("[limit]\nhistory = 5\n");
    assert!(reason.starts_with("1:2: unknown field `limit`"), "{reason}");
}

#[test]
fn a_bad_value_is_refused_with_its_line_and_column() {
    let reason = refused("[limits]\nmax_memory = \"lots\"\n");
    assert!(reason.starts_with("2:14: "), "{reason}");
    assert!(reason.contains("\"lots\" is not a size"), "{reason}");
    let reason = refused("[storage]\nsync_interval = \"10 parsecs\"\n");
    assert!(reason.starts_with("2:17: "), "{reason}");
    assert!(reason.contains("not a duration"), "{reason}");
    let reason = refused("[log]\nlevel = \"loud\"\n");
    assert!(reason.starts_with("2:9: "), "{reason}");
    assert!(reason.contains("not one of off, error"), "{reason}");
    let reason = refused("[limits]\nhistory = \"many\"\n");
    assert!(reason.starts_with("2:11: "), "{reason}");
    let reason = refused("[storage]\nmemory = true\ndata_dir = \"d\"\n");
    assert!(reason.contains("data_dir"), "{reason}");
    let reason = refused("[listen\n");
    assert!(reason.starts_with("1:"), "{reason}");
}

#[test]
fn without_a_config_file_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    // A file that looks like a config in the working directory is not read.
    write_config(dir.path(), "[limits]\nhistory = 5\n");
    let output = serve_command(&["--check", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let settings: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(settings["limits"]["history"], 1000);
    assert_eq!(settings["listen"]["tcp"][0], "127.0.0.1:7420");
    assert_eq!(settings["storage"]["data_dir"], "switchboard-data");
    assert_eq!(settings["storage"]["sync"], "interval");
}

/// The example in the docs parses, and names every setting `--check` reports.
#[test]
fn the_example_config_file_is_valid_and_complete() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/switchboard.example.toml");
    let example = example.to_str().unwrap();
    let settings = effective(&["--config", example], &[]);
    let text = std::fs::read_to_string(example).unwrap();
    let mentioned = |key: &str| {
        text.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    for (section, keys) in settings.as_object().unwrap() {
        assert!(
            text.contains(&format!("[{section}]")),
            "[{section}] missing"
        );
        for key in keys.as_object().unwrap().keys() {
            assert!(mentioned(key), "[{section}] {key} missing from the example");
        }
    }
    for key in [
        "file",
        "hmac_key_file",
        "admin_token_file",
        "max_blob_bytes",
        "data_dir",
    ] {
        assert!(mentioned(key), "{key} missing from the example");
    }
}

#[cfg(unix)]
#[test]
fn the_unix_socket_comes_from_the_file_unless_a_flag_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[listen]\nunix = \"hub.sock\"\n");
    let config = config.to_str().unwrap();
    let socket = dir.path().join("hub.sock");
    let settings = effective(&["--config", config], &[]);
    assert_eq!(settings["listen"]["unix"], socket.to_str().unwrap());
    let settings = effective(&["--config", config, "--no-unix"], &[]);
    assert_eq!(settings["listen"]["unix"], false);
    let settings = effective(&["--config", config, "--unix", "/tmp/elsewhere.sock"], &[]);
    assert_eq!(settings["listen"]["unix"], "/tmp/elsewhere.sock");

    let config = write_config(dir.path(), "[listen]\nunix = false\n");
    let settings = effective(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(
        settings["listen"]["unix"], false,
        "no socket, even on port 7420"
    );
    let reason = refused("[listen]\nunix = true\n");
    assert!(reason.starts_with("2:8: "), "{reason}");
}

/// The complete example of docs/SECURITY.md passes `--check` as it stands: its users,
/// token, Unix uid, roles and limits are read, the secrets masked.
#[test]
fn the_security_guide_example_is_valid() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SECURITY.md");
    let guide = std::fs::read_to_string(guide).unwrap();
    let section = &guide[guide.find("## A complete example").expect("the section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + section[start..].find("```").expect("the block's end");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &section[start..end]);
    let settings = effective(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(settings["users"][0]["name"], "alice");
    assert_eq!(settings["users"][0]["password"], "(set, not shown)");
    assert_eq!(settings["tokens"][0]["sha256"], "(set, not shown)");
    assert_eq!(settings["unix_users"][0]["uid"], 1001);
    assert_eq!(settings["auth"]["anonymous_role"], "visitor");
    assert_eq!(
        settings["roles"]["member"]["publish"]["deny"][0],
        "chat.announce"
    );
    assert_eq!(
        settings["roles"]["member"]["limits"]["publishes_per_second"],
        100
    );
    assert_eq!(settings["limits"]["connections_per_ip"], 256);
    let shown = serde_json::to_string(&settings).unwrap();
    assert!(!shown.contains("argon2id"), "{shown}");
    assert!(!shown.contains("7a86a834"), "{shown}");
}

#[test]
fn max_frame_comes_from_the_flag_or_the_file_and_is_at_least_4_kib() {
    assert_eq!(effective(&[], &[])["limits"]["max_frame"], "8MiB");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[limits]\nmax_frame = \"64KiB\"\n");
    let config = config.to_str().unwrap();
    assert_eq!(
        effective(&["--config", config], &[])["limits"]["max_frame"],
        "64KiB"
    );
    assert_eq!(
        effective(&["--config", config, "--max-frame", "16KiB"], &[])["limits"]["max_frame"],
        "16KiB"
    );

    let (ok, _, stderr) = check(&["--max-frame", "1KiB"], &[]);
    assert!(!ok);
    assert!(stderr.contains("at least 4096"), "{stderr}");
    let reason = refused("[limits]\nmax_frame = 100\n");
    assert!(reason.contains("at least 4096"), "{reason}");
    let reason = refused("[limits]\nmax_frame = \"8GiB\"\n");
    assert!(reason.contains("too large"), "{reason}");
}

#[test]
fn history_in_memory_comes_from_the_flag_or_the_file() {
    assert_eq!(effective(&[], &[])["storage"]["history_in_memory"], "8MiB");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[storage]\nhistory_in_memory = \"64MiB\"\n");
    let config = config.to_str().unwrap();
    assert_eq!(
        effective(&["--config", config], &[])["storage"]["history_in_memory"],
        "64MiB"
    );
    assert_eq!(
        effective(&["--config", config, "--history-in-memory", "1MiB"], &[])["storage"]["history_in_memory"],
        "1MiB"
    );
    let reason = refused("[storage]\nhistory_in_memory = \"lots\"\n");
    assert!(
        reason.contains("2:21") && reason.contains("not a size in bytes (e.g. 512MiB"),
        "{reason}"
    );
}
