//! Logging in from the command line against a real `serve --config` process: users
//! with hashes made by `switchboard passwd`, tokens made by `switchboard token new`,
//! JWTs; the config file's identity keys, their validation and masking in `--check`;
//! protected mode.

mod support;

use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use jsonwebtoken::{EncodingKey, Header};
use predicates::prelude::*;
use support::{BIN, arg, serve_process, wait_exit};

const JWT_SECRET: &str = "a shared secret of at least thirty-two bytes";

/// `switchboard passwd` fed `password` on a pipe; the hash it prints.
fn passwd_from_pipe(password: &str) -> String {
    let output = Command::new(BIN)
        .arg("passwd")
        .write_stdin(format!("{password}\n"))
        .timeout(Duration::from_secs(60))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let hash = String::from_utf8(output).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    hash
}

/// `switchboard token new`: the token and the `[[tokens]]` entry.
fn new_token(name: &str, user: &str) -> (String, String) {
    let output = Command::new(BIN)
        .args(["token", "new", name, "--user", user])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let output = String::from_utf8(output).unwrap();
    let token = output.lines().next().unwrap().to_owned();
    let entry = output[output.find("[[tokens]]").expect("an entry")..].to_owned();
    assert!(!entry.contains(&token), "the entry holds only the digest");
    (token, entry)
}

/// A config file with the user alice, a token for deploy and an HS256 JWT key.
fn config_with_identities(dir: &Path) -> (std::path::PathBuf, String) {
    let hash = passwd_from_pipe("wonderland");
    let (token, entry) = new_token("ci", "deploy");
    std::fs::write(dir.join("jwt.secret"), format!("{JWT_SECRET}\n")).unwrap();
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nfailure_delay = \"1ms\"\n\n\
             [[users]]\nname = \"alice\"\npassword = \"{hash}\"\n\n{entry}\n\
             [jwt]\nalgorithm = \"HS256\"\nsecret_file = \"jwt.secret\"\naudience = \"hub\"\n"
        ),
    )
    .unwrap();
    (config, token)
}

fn jwt(user: &str, audience: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({ "sub": user, "aud": audience, "exp": exp }),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// `whoami` against `addr`, without any login option from the test's environment.
fn whoami(addr: &str) -> Command {
    let mut command = cli(addr);
    command.arg("whoami");
    command
}

/// The CLI against `addr` as "impostor", without any login option from the test's
/// environment.
fn cli(addr: &str) -> Command {
    let mut command = Command::new(BIN);
    for name in [
        "SWITCHBOARD_SERVER",
        "SWITCHBOARD_NAME",
        "SWITCHBOARD_TOKEN",
        "SWITCHBOARD_TOKEN_FILE",
        "SWITCHBOARD_USER",
        "SWITCHBOARD_PASSWORD",
        "SWITCHBOARD_JWT_FILE",
    ] {
        command.env_remove(name);
    }
    command
        .args(["--server", addr, "--name", "impostor"])
        .timeout(Duration::from_secs(60));
    command
}

#[test]
fn the_cli_logs_in_with_a_password_a_token_or_a_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let (config, token) = config_with_identities(dir.path());
    let (mut server, addr) = serve_process(&[
        "--config".as_ref(),
        arg(&config),
        "--memory".as_ref(),
        "--no-unix".as_ref(),
    ]);

    whoami(&addr)
        .args(["--user", "alice"])
        .env("SWITCHBOARD_PASSWORD", "wonderland")
        .assert()
        .success()
        .stdout(predicate::str::contains("name:       alice"))
        .stdout(predicate::str::contains("user:       alice"));
    // Commands that print the session's name print the user's, not the one asked for.
    cli(&addr)
        .args(["--user", "alice", "group", "create", "team"])
        .env("SWITCHBOARD_PASSWORD", "wonderland")
        .assert()
        .success();
    cli(&addr)
        .args(["--user", "alice", "--json", "join", "team"])
        .env("SWITCHBOARD_PASSWORD", "wonderland")
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""member":"alice""#));
    whoami(&addr)
        .args(["--user", "alice"])
        .env("SWITCHBOARD_PASSWORD", "wrong")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "AUTH_FAILED: unknown user or wrong password",
        ));
    // No terminal to ask on and no SWITCHBOARD_PASSWORD: a clear error, no connection.
    whoami(&addr)
        .args(["--user", "alice"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("SWITCHBOARD_PASSWORD"));

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    whoami(&addr)
        .arg("--token-file")
        .arg(&token_file)
        .assert()
        .success()
        .stdout(predicate::str::contains("user:       deploy"));

    let jwt_file = dir.path().join("jwt");
    std::fs::write(&jwt_file, jwt("carol", "hub")).unwrap();
    whoami(&addr)
        .arg("--jwt-file")
        .arg(&jwt_file)
        .assert()
        .success()
        .stdout(predicate::str::contains("user:       carol"));
    std::fs::write(&jwt_file, jwt("carol", "elsewhere")).unwrap();
    whoami(&addr)
        .env("SWITCHBOARD_JWT_FILE", &jwt_file)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "AUTH_FAILED: token audience not accepted",
        ));

    // Without credentials there is nothing to do but fail to log in.
    for command in [&["whoami"][..], &["channels"], &["pub", "news", "hi"]] {
        let mut anonymous = cli(&addr);
        anonymous.args(command);
        anonymous
            .assert()
            .failure()
            .stderr(predicate::str::contains(
                "AUTH_FAILED: authentication required",
            ));
    }

    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn secrets_are_never_taken_from_the_command_line() {
    Command::new(BIN)
        .args(["whoami", "--password", "x"])
        .assert()
        .failure();
    Command::new(BIN)
        .args(["whoami", "--jwt", "x"])
        .assert()
        .failure();
}

#[test]
fn check_masks_hashes_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_identities(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let hash = text
        .lines()
        .find_map(|line| line.strip_prefix("password = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let digest = text
        .lines()
        .find_map(|line| line.strip_prefix("sha256 = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let output = Command::new(BIN)
        .args(["serve", "--no-http", "--check", "--config"])
        .arg(&config)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let shown = String::from_utf8(output).unwrap();
    assert!(!shown.contains(&hash), "{shown}");
    assert!(!shown.contains(&digest), "{shown}");
    assert!(!shown.contains(JWT_SECRET), "{shown}");
    assert!(
        shown.contains("[[users]]") && shown.contains("name = \"alice\""),
        "{shown}"
    );
    assert!(shown.contains("password = \"(set, not shown)\""), "{shown}");
    assert!(shown.contains("sha256 = \"(set, not shown)\""), "{shown}");
    assert!(shown.contains("algorithm = \"HS256\""), "{shown}");
    let secret_file = dir.path().join("jwt.secret");
    assert!(
        shown.contains(&secret_file.display().to_string()),
        "key files are resolved from the config file's directory: {shown}"
    );
}

#[test]
fn bad_identities_in_the_config_file_are_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let hash = passwd_from_pipe("pw");
    let cases = [
        (
            "[[users]]\nname = \"alice\"\npassword = \"hunter2\"\n".to_owned(),
            "[[users]] \"alice\": password: not a PHC password hash",
        ),
        (
            format!(
                "[[users]]\nname = \"alice\"\npassword = \"{hash}\"\n\
                 [[users]]\nname = \"alice\"\n"
            ),
            "[[users]] \"alice\": the user is defined twice",
        ),
        (
            "[[users]]\nname = \"alice\"\nroles = [\"wizard\"]\n".to_owned(),
            "role \"wizard\" is not defined",
        ),
        (
            "[auth]\nanonymous_role = \"guest\"\n[[users]]\nname = \"bob\"\n".to_owned(),
            "anonymous_role: role \"guest\" is not defined",
        ),
        (
            "[[tokens]]\nname = \"ci\"\nuser = \"deploy\"\nsha256 = \"00\"\n".to_owned(),
            "[[tokens]] \"ci\": sha256 must be 64 hex digits",
        ),
        (
            "[jwt]\nalgorithm = \"ES256\"\npublic_key_file = \"missing.pem\"\n".to_owned(),
            "[jwt]: cannot read",
        ),
        (
            "[jwt]\nalgorithm = \"ES256\"\nsecret_file = \"x\"\n".to_owned(),
            "[jwt]: ES256 needs public_key_file",
        ),
    ];
    for (index, (text, expected)) in cases.into_iter().enumerate() {
        let config = dir.path().join(format!("bad-{index}.toml"));
        std::fs::write(&config, &text).unwrap();
        Command::new(BIN)
            .args(["serve", "--no-http", "--check", "--config"])
            .arg(&config)
            .assert()
            .failure()
            .stderr(predicate::str::contains(config.display().to_string()))
            .stderr(predicate::str::contains(expected));
    }
}

#[test]
fn protected_mode_refuses_an_open_hub_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let mut command = StdCommand::new(BIN);
        command
            .env_remove("SWITCHBOARD_ALLOW_ANONYMOUS")
            .args([
                "serve",
                "--no-http",
                "--listen",
                "0.0.0.0:0",
                "--memory",
                "--no-unix",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let refused = serve(&[]).output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("refusing to serve 0.0.0.0:0"), "{message}");
    assert!(message.contains("--allow-anonymous"), "{message}");
    assert!(message.contains("[[users]]"), "{message}");

    // The web listener is a door like any other.
    let web = StdCommand::new(BIN)
        .env_remove("SWITCHBOARD_ALLOW_ANONYMOUS")
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"])
        .args(["--memory", "--no-unix"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!web.status.success());
    let message = String::from_utf8_lossy(&web.stderr);
    assert!(message.contains("refusing to serve 0.0.0.0:0"), "{message}");

    let starts = |mut command: StdCommand| {
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.starts_with("switchboard listening on "));
        assert!(
            listening.is_some_and(|line| line.starts_with("switchboard listening on 0.0.0.0:")),
            "the server did not start"
        );
        let _ = child.kill();
        wait_exit(&mut child, Duration::from_secs(10));
    };
    starts(serve(&["--allow-anonymous"]));
    let allowing = dir.path().join("open.toml");
    std::fs::write(&allowing, "[auth]\nallow_anonymous = true\n").unwrap();
    let mut from_file = serve(&["--config"]);
    from_file.arg(&allowing);
    starts(from_file);
    let (config, _) = config_with_identities(dir.path());
    let mut with_users = serve(&["--config"]);
    with_users.arg(&config);
    starts(with_users);
}

#[cfg(unix)]
#[test]
fn passwd_asks_twice_without_echo_on_a_terminal() {
    use support::terminal::Terminal;
    let mut terminal = Terminal::spawn(&["passwd"], &[]);
    terminal.expect("Password:");
    terminal.write_at_once("swordfish\r");
    terminal.expect("Again:");
    terminal.write_at_once("swordfish\r");
    terminal.expect("$argon2id$v=19$");
    assert!(terminal.wait_exit(Duration::from_secs(30)).success());
    assert!(
        !terminal.text().contains("swordfish"),
        "{}",
        terminal.text()
    );

    let mut terminal = Terminal::spawn(&["passwd"], &[]);
    terminal.expect("Password:");
    terminal.write_at_once("one\r");
    terminal.expect("Again:");
    terminal.write_at_once("two\r");
    terminal.expect("the passwords differ");
    assert!(!terminal.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn auth_keys_and_the_unix_uid_map_are_read_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[auth]\nallow_anonymous = true\nmax_failures = 3\nfailure_window = \"10s\"\n\
         refuse_for = \"2m\"\nfailure_delay = \"50ms\"\n\
         [[unix_users]]\nuid = 1000\nuser = \"alice\"\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--no-http", "--check", "json", "--config"])
        .arg(&config)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let settings: serde_json::Value = serde_json::from_slice(&output).unwrap();
    let auth = &settings["auth"];
    assert_eq!(auth["allow_anonymous"], true);
    assert_eq!(auth["max_failures"], 3);
    assert_eq!(auth["failure_window"], "10s");
    assert_eq!(auth["refuse_for"], "2m");
    assert_eq!(auth["failure_delay"], "50ms");
    assert_eq!(settings["unix_users"][0]["uid"], 1000);
    assert_eq!(settings["unix_users"][0]["user"], "alice");

    std::fs::write(&config, "[[unix_users]]\nuid = 1000\nuser = \"\"\n").unwrap();
    Command::new(BIN)
        .args(["serve", "--no-http", "--check", "--config"])
        .arg(&config)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "[[unix_users]] uid 1000: user \"\" is not a valid name",
        ));
}

#[cfg(unix)]
#[test]
fn user_asks_for_the_password_without_echo_on_a_terminal() {
    use support::terminal::Terminal;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_identities(dir.path());
    let (mut server, addr) = serve_process(&[
        "--config".as_ref(),
        arg(&config),
        "--memory".as_ref(),
        "--no-unix".as_ref(),
    ]);
    let mut terminal = Terminal::spawn(&["--server", &addr, "--user", "alice", "whoami"], &[]);
    terminal.expect("Password for alice:");
    terminal.write_at_once("wonderland\r");
    terminal.expect("user:       alice");
    assert!(terminal.wait_exit(Duration::from_secs(30)).success());
    assert!(
        !terminal.text().contains("wonderland"),
        "{}",
        terminal.text()
    );
    let _ = server.kill();
    let _ = server.wait();
}
