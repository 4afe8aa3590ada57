//! Reloading a running `switchboard serve --config FILE`: SIGHUP and `switchboard
//! reload` re-read the file; users, roles and limits change without a restart, a broken
//! file is refused (logged, counted, the old configuration kept), and a session the new
//! configuration no longer accepts is disconnected with the reason. Real processes.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{BIN, ConfigServer, cli_at, wait_exit};

/// A server process started with `--config`, its stderr collected; killed when dropped.
struct Served {
    server: ConfigServer,
    addr: String,
    socket: PathBuf,
}

const LISTEN: &str =
    "[listen]\ntcp = [\"127.0.0.1:0\"]\nunix = \"server.sock\"\n[storage]\nmemory = true\n";

fn write_config(path: &Path, rest: &str) {
    std::fs::write(path, format!("{LISTEN}{rest}")).expect("write the config file");
}

fn serve(dir: &Path) -> Served {
    let server = ConfigServer::start(&dir.join("switchboard.toml"), false);
    Served {
        addr: server.tcp.clone(),
        socket: dir.join("server.sock"),
        server,
    }
}

impl Served {
    fn unix(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    fn hangup(&self) {
        self.server.hangup();
    }

    /// A counter, read over the Unix socket.
    fn stat(&self, name: &str) -> u64 {
        let out = cli_at(&self.unix(), "probe")
            .args(["--json", "stats"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let stats: serde_json::Value = serde_json::from_slice(&out).expect("json");
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    fn wait_stat(&self, name: &str, value: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stat(name) != value {
            assert!(Instant::now() < deadline, "{name} never reached {value}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logged(&self, text: &str) -> bool {
        self.server.logged(text)
    }
}

/// SIGHUP puts a changed file in force (a role's new body limit), a broken file is
/// refused with the old configuration kept, logged under ERROR and counted, and
/// `switchboard reload` prints the reason and exits 1, then 0 once the file is fixed.
#[test]
fn sighup_and_reload_put_a_changed_file_in_force_and_keep_the_old_one_on_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    let roles = "[auth]\nanonymous_role = \"guest\"\n[roles.guest]\npublish = { allow = [\">\"] }\ncreate_channel = { allow = [\">\"] }\n";
    write_config(&config, roles);
    let server = serve(dir.path());
    let publish = |body: &str| {
        cli_at(&server.addr, "alice")
            .args(["pub", "news", body])
            .assert()
    };
    publish("0123456789").success();

    write_config(
        &config,
        &format!("{roles}[roles.guest.limits]\nmax_body = 5\n"),
    );
    server.hangup();
    server.wait_stat("reloads", 1);
    let refused = publish("0123456789").failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("over this session's limit of 5 bytes"),
        "{stderr}"
    );
    publish("short").success();

    write_config(&config, "[roles.guest\nbroken");
    server.hangup();
    server.wait_stat("reloads_failed", 1);
    assert!(server.logged("reload refused"), "the refusal is logged");
    assert!(server.logged("ERROR"), "under ERROR");
    publish("0123456789").failure();
    publish("short").success();

    let reload = cli_at(&server.unix(), "admin")
        .arg("reload")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&reload.get_output().stderr).into_owned();
    assert!(
        stderr.contains("switchboard.toml:"),
        "the reason names the file: {stderr}"
    );
    assert_eq!(reload.get_output().status.code(), Some(1));
    assert_eq!(server.stat("reloads_failed"), 2);

    write_config(&config, roles);
    let reload = cli_at(&server.unix(), "admin")
        .arg("reload")
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&reload.get_output().stdout).into_owned();
    assert!(stdout.contains("reloaded"), "{stdout}");
    publish("0123456789").success();
    assert_eq!(server.stat("reloads"), 2);
}

/// `switchboard reload` over TCP without the admin token is refused.
#[test]
fn reload_needs_an_admin_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(&dir.path().join("switchboard.toml"), "");
    let server = serve(dir.path());
    let refused = cli_at(&server.addr, "nobody")
        .arg("reload")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("admin"), "{stderr}");
    assert_eq!(server.stat("reloads"), 0);
}

/// A reload after which sessions without credentials are no longer accepted (users are
/// configured, no anonymous role) disconnects the anonymous TCP subscriber with the
/// reason, while the admin subscriber on the Unix socket stays and is still served.
#[test]
fn a_reload_disconnects_sessions_it_no_longer_accepts_and_keeps_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    write_config(&config, "");
    let server = serve(dir.path());
    let spawn_sub = |target: &str, name: &str| {
        StdCommand::new(BIN)
            .env_remove("SWITCHBOARD_SERVER")
            .args(["--server", target, "--name", name, "sub", "news"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sub starts")
    };
    let mut anonymous = spawn_sub(&server.addr, "anon");
    let mut admin = spawn_sub(&server.unix(), "root");
    // Both subscribed (connected is not yet subscribed).
    support::wait_until("both subscriptions", || {
        support::subscriptions_at(&server.server.http) >= 2
    });

    write_config(&config, "[[users]]\nname = \"carol\"\n");
    server.hangup();
    let status = wait_exit(&mut anonymous, Duration::from_secs(10));
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut anonymous.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("no longer accepted"), "{stderr}");
    assert_eq!(server.stat("sessions_ended_by_reload"), 1);

    // The admin subscriber is still there and still receives.
    cli_at(&server.unix(), "root2")
        .args(["pub", "news", "after the reload"])
        .assert()
        .success();
    let lines = support::read_lines(&mut admin, 1);
    assert!(
        lines.iter().any(|line| line.contains("after the reload")),
        "{lines:?}"
    );
    let _ = admin.kill();
    let _ = admin.wait();
}

/// `[limits]` per-address keys come from the file and `--check` shows them; a key
/// unknown to `[roles.NAME.limits]` is refused with its place.
#[test]
fn per_address_limits_come_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("switchboard.toml");
    write_config(
        &config,
        "[limits]\nconnections_per_ip = 1\nnew_connections_per_second_per_ip = 50\nlimit_loopback = true\n",
    );
    let check = StdCommand::new(BIN)
        .args(["serve", "--no-http", "--check", "--config"])
        .arg(&config)
        .output()
        .expect("check runs");
    let shown = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(shown.contains("connections_per_ip = 1"), "{shown}");
    assert!(
        shown.contains("new_connections_per_second_per_ip = 50"),
        "{shown}"
    );
    assert!(
        shown.contains("new_connection_burst_per_ip = 1000"),
        "{shown}"
    );

    let server = serve(dir.path());
    let mut holder = StdCommand::new(BIN)
        .args(["--server", &server.addr, "--name", "holder", "sub", "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sub starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stat("connections_current") < 2 {
        assert!(Instant::now() < deadline, "the subscriber never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = cli_at(&server.addr, "second")
        .arg("whoami")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("1 connections open"), "{stderr}");
    assert_eq!(server.stat("connections_refused_per_ip"), 1);
    let _ = holder.kill();
    let _ = holder.wait();

    write_config(&config, "[roles.guest.limits]\npublish_rate = 5\n");
    let check = StdCommand::new(BIN)
        .args(["serve", "--no-http", "--check", "--config"])
        .arg(&config)
        .output()
        .expect("check runs");
    assert!(!check.status.success());
    let reason = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(reason.contains("switchboard.toml:7:"), "{reason}");
    assert!(reason.contains("publish_rate"), "{reason}");
}

/// `[limits.no_role]` limits the sessions without a role (every session of a hub
/// without roles).
#[test]
fn limits_for_sessions_without_a_role_come_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        &dir.path().join("switchboard.toml"),
        "[limits.no_role]\nmax_body = 5\n",
    );
    let server = serve(dir.path());
    let refused = cli_at(&server.addr, "alice")
        .args(["pub", "news", "0123456789"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("limit of 5 bytes"), "{stderr}");
    cli_at(&server.addr, "alice")
        .args(["pub", "news", "short"])
        .assert()
        .success();
    assert_eq!(server.stat("limit_refusals"), 1);
}
