//! The `switchboard` binary end to end: a real server (in-process on an ephemeral port,
//! or as its own process for `serve`/`stop`), the CLI run as real processes.

use std::io::Write;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

mod support;

use support::{
    BIN, TestServer, json_lines, read_lines, serve_process, serve_process_with_env,
    serve_process_with_web, wait_exit,
};

#[test]
fn help_explains_the_commands() {
    Command::new(BIN)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("serve").and(predicate::str::contains("sub")));
    Command::new(BIN)
        .args(["pub", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--lines"));
}

#[test]
fn publish_get_history_and_channels_in_json() {
    let server = TestServer::start();
    let out = server.stdout("alice", &["--json", "pub", "news", "hello #world"]);
    let ack = &json_lines(&out)[0];
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["channel"], "news");
    let id = ack["id"].as_str().unwrap().to_owned();

    let out = server.stdout("bob", &["--json", "get", "news"]);
    let message = &json_lines(&out)[0];
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["seq"], 1);
    assert_eq!(message["channel"], "news");
    assert_eq!(message["from"], "alice");
    assert_eq!(message["payload"], "hello #world");
    assert!(
        message["content_type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(message["time"].as_str().unwrap().contains('T'));

    server
        .cli("alice")
        .args(["pub", "news", "second"])
        .assert()
        .success();
    let out = server.stdout("bob", &["--json", "get", "news", "--id", &id]);
    assert_eq!(json_lines(&out)[0]["payload"], "hello #world");

    let out = server.stdout("bob", &["--json", "history", "news", "--since", "2"]);
    let history = json_lines(&out);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["payload"], "second");

    let out = server.stdout("bob", &["--json", "tag", "#world"]);
    assert_eq!(json_lines(&out).len(), 1);

    let out = server.stdout("bob", &["--json", "channels"]);
    let channels = json_lines(&out);
    assert_eq!(channels[0]["channel"], "news");
    assert_eq!(channels[0]["messages"], 2);

    server
        .cli("bob")
        .args(["get", "nowhere"])
        .assert()
        .failure()
        .stderr(
            predicate::str::starts_with("switchboard: ")
                .and(predicate::str::contains("nowhere has no messages")),
        );
}

#[test]
fn binary_bodies_come_back_as_base64() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob.bin");
    std::fs::write(&file, [0u8, 255, 1, 254]).unwrap();
    server
        .cli("alice")
        .args(["pub", "blobs", "--file"])
        .arg(&file)
        .assert()
        .success();
    let out = server.stdout("bob", &["--json", "get", "blobs"]);
    let message = &json_lines(&out)[0];
    assert_eq!(message["payload_base64"], "AP8B/g==");
    assert_eq!(message["content_type"], "application/octet-stream");
}

#[test]
fn publish_lines_pipelines_one_message_per_line() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    let mut text = String::new();
    for i in 1..=500 {
        text.push_str(&format!("line {i}\n"));
    }
    std::fs::write(&file, &text).unwrap();
    let out = server
        .cli("alice")
        .args(["--json", "pub", "bulk", "--lines"])
        .arg(&file)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let acks = json_lines(&out);
    assert_eq!(acks.len(), 500);
    for (index, ack) in acks.iter().enumerate() {
        assert_eq!(ack["seq"], index as u64 + 1);
        assert_eq!(ack["channel"], "bulk");
        assert!(ack["id"].is_string());
    }
    // And from standard input.
    let out = server
        .cli("alice")
        .args(["--json", "pub", "bulk", "--lines", "-"])
        .write_stdin("a\nb\n")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_lines(&out).len(), 2);
    let out = server.stdout("bob", &["--json", "history", "bulk", "--limit", "1"]);
    assert_eq!(json_lines(&out)[0]["payload"], "b");
}

#[test]
fn subscribe_replays_then_receives_live_messages() {
    let server = TestServer::start();
    for i in 1..=3 {
        server
            .cli("alice")
            .args(["pub", "room.a", &format!("old {i}")])
            .assert()
            .success();
    }
    let mut sub = server.spawn(
        "bob",
        &["--json", "sub", "room.*", "--last", "2", "--count", "4"],
    );
    let replayed = read_lines(&mut sub, 2);
    assert_eq!(replayed.len(), 2, "replay arrives first");
    server
        .cli("alice")
        .args(["pub", "room.b", "new 1"])
        .assert()
        .success();
    server
        .cli("alice")
        .args(["pub", "room.a", "new 2"])
        .assert()
        .success();
    let status = wait_exit(&mut sub, Duration::from_secs(15));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let payloads: Vec<String> = replayed
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["payload"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(payloads, ["old 2", "old 3"]);
}

#[test]
fn subscribe_prints_live_messages_and_hashtags() {
    let server = TestServer::start();
    let mut sub = server.spawn("bob", &["--json", "sub", "#rust", "--count", "2"]);
    // Wait until the subscription is registered before publishing.
    server.wait_for_subscriber("bob", 1);
    server
        .cli("alice")
        .args(["pub", "a", "I love #Rust"])
        .assert()
        .success();
    server
        .cli("alice")
        .args(["pub", "b", "no tag here"])
        .assert()
        .success();
    server
        .cli("alice")
        .args(["pub", "c", "#rust again"])
        .assert()
        .success();
    let lines = read_lines(&mut sub, 2);
    assert!(wait_exit(&mut sub, Duration::from_secs(15)).success());
    let channels: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["channel"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(channels, ["a", "c"]);
}

/// The `payload` field of each JSON line.
fn payloads(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["payload"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_message_matching_two_patterns_is_printed_once() {
    let server = TestServer::start();
    let mut sub = server.spawn("bob", &["--json", "sub", "chat.>", "#rust", "--count", "2"]);
    server.wait_for_subscriber("bob", 2);
    for text in ["Anyone here likes #Rust?", "end"] {
        server
            .cli("alice")
            .args(["pub", "chat.general", text])
            .assert()
            .success();
    }
    let lines = read_lines(&mut sub, 2);
    assert!(wait_exit(&mut sub, Duration::from_secs(15)).success());
    assert_eq!(payloads(&lines), ["Anyone here likes #Rust?", "end"]);
}

#[test]
fn overlapping_replays_are_printed_once() {
    let server = TestServer::start();
    server
        .cli("alice")
        .args(["pub", "chat.general", "Anyone here likes #Rust?"])
        .assert()
        .success();
    // No --count: a repeated line must show up as one, not end the command early.
    let mut sub = server.spawn(
        "bob",
        &["--json", "sub", "chat.general", "#rust", "--last", "5"],
    );
    server.wait_for_subscriber("bob", 2);
    server
        .cli("alice")
        .args(["pub", "chat.general", "end"])
        .assert()
        .success();
    let lines = read_lines(&mut sub, 2);
    let _ = sub.kill();
    let _ = sub.wait();
    assert_eq!(payloads(&lines), ["Anyone here likes #Rust?", "end"]);
}

#[test]
fn relay_and_listen_between_processes() {
    let server = TestServer::start();
    let mut listener = server.spawn("carol", &["--json", "listen", "--count", "1"]);
    let first = read_lines(&mut listener, 1);
    let id = serde_json::from_str::<Value>(&first[0]).unwrap()["client_id"]
        .as_u64()
        .unwrap();
    let out = server.stdout(
        "alice",
        &["--json", "relay", "--to", &format!("{id},999999"), "psst"],
    );
    let outcomes = json_lines(&out);
    assert_eq!(outcomes[0]["client_id"], id);
    assert_eq!(outcomes[0]["status"], "delivered");
    assert_eq!(outcomes[1]["client_id"], 999_999);
    assert_eq!(outcomes[1]["status"], "unknown");
    assert!(wait_exit(&mut listener, Duration::from_secs(15)).success());
}

#[test]
fn whoami_clients_and_a_killed_client_disappears() {
    let server = TestServer::start();
    let out = server.stdout("alice", &["--json", "whoami"]);
    let me = &json_lines(&out)[0];
    assert_eq!(me["name"], "alice");
    assert!(me["client_id"].as_u64().unwrap() > 0);

    let mut doomed = server.spawn("doomed", &["listen"]);
    let _ = read_lines(&mut doomed, 1);
    let listed = |server: &TestServer| {
        let out = server.stdout("alice", &["--json", "clients"]);
        json_lines(&out).iter().any(|c| c["name"] == "doomed")
    };
    assert!(listed(&server));
    doomed.kill().unwrap();
    let _ = doomed.wait();
    let started = Instant::now();
    while listed(&server) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "killed client still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn channel_limits_and_errors_exit_non_zero_with_one_line() {
    let server = TestServer::start();
    server
        .cli("alice")
        .args([
            "channel",
            "create",
            "tweets",
            "--max-chars",
            "150",
            "--history",
            "10",
        ])
        .assert()
        .success();
    server
        .cli("alice")
        .args(["pub", "tweets", &"x".repeat(150)])
        .assert()
        .success();
    let assert = server
        .cli("alice")
        .args(["pub", "tweets", &"x".repeat(151)])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("TOO_MANY_CHARACTERS") || stderr.contains("characters"),
        "{stderr}"
    );

    Command::new(BIN)
        .args(["--server", "127.0.0.1:1", "whoami"])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot connect"));
}

#[test]
fn groups_from_the_command_line() {
    let server = TestServer::start();
    server
        .cli("alice")
        .args(["group", "create", "book-club", "--description", "we read"])
        .assert()
        .success();
    server
        .cli("alice")
        .args(["join", "book-club"])
        .assert()
        .success();
    server
        .cli("bob")
        .args(["join", "book-club"])
        .assert()
        .success();
    server
        .cli("mallory")
        .args(["post", "book-club", "hi"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("FORBIDDEN").or(predicate::str::contains("not a member")));
    server
        .cli("bob")
        .args(["post", "book-club", "chapter one"])
        .assert()
        .success();
    let out = server.stdout("alice", &["--json", "groups"]);
    let groups = json_lines(&out);
    assert_eq!(groups[0]["group"], "book-club");
    assert_eq!(groups[0]["members"], 2);
    assert_eq!(groups[0]["description"], "we read");
    let out = server.stdout("alice", &["--json", "members", "book-club"]);
    assert_eq!(json_lines(&out).len(), 2);
    let out = server.stdout(
        "alice",
        &["--json", "group", "history", "book-club", "--since", "1h"],
    );
    assert_eq!(json_lines(&out)[0]["payload"], "chapter one");
    for chapter in ["chapter two", "chapter three"] {
        server
            .cli("bob")
            .args(["post", "book-club", chapter])
            .assert()
            .success();
    }
    // --limit alone keeps the newest; after --since, the first from there.
    let out = server.stdout(
        "alice",
        &["--json", "group", "history", "book-club", "--limit", "2"],
    );
    let payloads: Vec<_> = json_lines(&out)
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert_eq!(payloads, ["chapter two", "chapter three"]);
    let out = server.stdout(
        "alice",
        &[
            "--json",
            "group",
            "history",
            "book-club",
            "--since",
            "1",
            "--limit",
            "1",
        ],
    );
    assert_eq!(json_lines(&out).len(), 1);
    assert_eq!(json_lines(&out)[0]["payload"], "chapter one");
    server
        .cli("bob")
        .args(["leave", "book-club"])
        .assert()
        .success();
    let out = server.stdout("alice", &["--json", "members", "book-club"]);
    assert_eq!(json_lines(&out).len(), 1);
}

#[test]
fn chat_reads_commands_and_lines_from_a_file() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("chat.txt");
    let mut file = std::fs::File::create(&script).unwrap();
    writeln!(
        file,
        "/join lobby\nhello from a file\n/who\n/history 5\n/quit\nnot sent"
    )
    .unwrap();
    drop(file);
    server
        .cli("dave")
        .args(["chat", "--input"])
        .arg(&script)
        .assert()
        .success();
    let out = server.stdout("eve", &["--json", "history", "lobby"]);
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["payload"], "hello from a file");
    assert_eq!(messages[0]["from"], "dave");
}

/// `switchboard serve` with a Unix socket, a data directory and a log file in `dir`: the
/// process, its TCP address, its socket and its web listener's address.
fn serve_in(dir: &std::path::Path) -> (support::KillOnDrop, String, std::path::PathBuf, String) {
    let socket = dir.join("hub.sock");
    let data = dir.join("data");
    let log = dir.join("hub.log");
    let (child, addr, http) = serve_process_with_web(
        &[
            "--unix".as_ref(),
            socket.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--log-file".as_ref(),
            log.as_os_str(),
            // Sessions are logged at debug (at info only in a periodic summary).
            "--log-level".as_ref(),
            "debug".as_ref(),
        ],
        &[],
    );
    (child, addr, socket, http)
}

#[cfg(unix)]
#[test]
fn stop_ends_the_server_gracefully_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, socket, http) = serve_in(dir.path());
    let mut sub = StdCommand::new(BIN)
        .args(["--server", &addr, "--name", "watcher", "sub", "anything"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_for_subscriber_at(&addr, &http, "watcher", 1);
    // Over TCP without a token, stop is refused.
    Command::new(BIN)
        .args(["--server", &addr, "stop"])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("admin"));
    Command::new(BIN)
        .arg("--server")
        .arg(format!("unix:{}", socket.display()))
        .arg("stop")
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "server exit status {status:?}");
    let sub_status = wait_exit(&mut sub, Duration::from_secs(15));
    let mut sub_err = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut sub_err).unwrap();
    assert!(!sub_status.success());
    assert!(sub_err.contains("server shutting down"), "{sub_err}");
    let log = std::fs::read_to_string(dir.path().join("hub.log")).unwrap();
    for category in ["GENERAL", "CONNECTION"] {
        assert!(log.contains(category), "log lacks {category}:\n{log}");
    }
    assert!(log.contains("ERROR"), "the refused stop is logged:\n{log}");
}

#[cfg(unix)]
#[test]
fn sigterm_drains_and_exits_zero() {
    use futures::StreamExt;
    use switchboard_client::{Client, ClientConfig, CloseReason, Replay};
    use switchboard_proto::ErrorCode;

    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, _socket, _http) = serve_in(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    // A subscriber whose subscription is acknowledged before anything is published.
    let subscriber = runtime
        .block_on(Client::connect(ClientConfig::new(addr.as_str(), "watcher")))
        .unwrap();
    let mut subscription = runtime
        .block_on(subscriber.subscribe("x", Replay::None).into_future())
        .unwrap();
    Command::new(BIN)
        .args(["--server", &addr, "pub", "x", "before"])
        .assert()
        .success();
    let live = runtime
        .block_on(tokio::time::timeout(
            Duration::from_secs(15),
            subscription.next(),
        ))
        .expect("delivered in time")
        .expect("a message")
        .unwrap();
    assert_eq!(live.text(), Some("before"));

    let pid = child.id().to_string();
    assert!(
        StdCommand::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The subscriber is told why before the connection closes.
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(Ok(_)) = subscription.next().await {}
        })
        .await
        .expect("the subscription ends in time")
    });
    match subscriber.close_reason() {
        Some(CloseReason::Disconnect { code, reason }) => {
            assert_eq!(code, ErrorCode::ShuttingDown);
            assert_eq!(reason, "server shutting down");
        }
        other => panic!("expected DISCONNECT SHUTTING_DOWN, got {other:?}"),
    }
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");

    // What was acknowledged before the signal is there after a restart.
    let (_child, addr, _socket, _http) = serve_in(dir.path());
    let out = Command::new(BIN)
        .args(["--server", &addr, "--json", "get", "x"])
        .assert()
        .success();
    let messages = json_lines(&out.get_output().stdout);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].to_string().contains("before"), "{messages:?}");
}

#[test]
fn serve_refuses_an_unusable_data_directory_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such");
    let assert = Command::new(BIN)
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--no-unix",
            "--data-dir",
        ])
        .arg(&missing)
        .timeout(Duration::from_secs(30))
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("switchboard: cannot start the server") && last.contains("does not exist"),
        "{stderr}"
    );
}

/// The async runtime's threads of process `pid`, by the name tokio gives them
/// ("tokio-rt-worker"; older versions' "tokio-runtime-worker" cut to the kernel's 15
/// bytes). Its blocking pool shares the name, but a memory-only server serving plain
/// publishes never starts a blocking thread.
#[cfg(target_os = "linux")]
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| matches!(name.trim_end(), "tokio-rt-worker" | "tokio-runtime-w"))
        .count()
}

#[test]
fn serve_takes_a_thread_count_and_refuses_zero() {
    let (mut child, addr) =
        serve_process(&["--threads".as_ref(), "1".as_ref(), "--memory".as_ref()]);
    let out = support::cli_at(&addr, "threads")
        .args(["pub", "one.thread", "hello"])
        .output()
        .expect("pub runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = support::cli_at(&addr, "threads")
        .args(["get", "one.thread"])
        .output()
        .expect("get runs");
    assert!(String::from_utf8_lossy(&got.stdout).contains("hello"));
    #[cfg(target_os = "linux")]
    assert_eq!(
        runtime_workers(child.id()),
        1,
        "--threads 1 runs one worker"
    );
    let _ = child.kill();
    let _ = child.wait();
    // And the count follows the option, so the check above can tell.
    #[cfg(target_os = "linux")]
    {
        let (mut child, addr) =
            serve_process(&["--threads".as_ref(), "3".as_ref(), "--memory".as_ref()]);
        support::cli_at(&addr, "threads")
            .args(["pub", "three.threads", "hello"])
            .assert()
            .success();
        assert_eq!(runtime_workers(child.id()), 3, "--threads 3 runs three");
        let _ = child.kill();
        let _ = child.wait();
    }

    Command::new(BIN)
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "--threads",
            "0",
        ])
        .timeout(Duration::from_secs(10))
        .assert()
        .failure()
        .stderr(predicate::str::contains("--threads"));
}

#[test]
fn serve_help_lists_only_the_server_options() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout).to_string()
    };
    let serve = help(&["serve", "--help"]);
    assert!(serve.contains("--listen") && serve.contains("--admin-token-file"));
    for client_option in ["--server", "--name", "--json", "--token", "Client options"] {
        assert!(
            !serve.contains(client_option),
            "serve --help mentions {client_option}:\n{serve}"
        );
    }
    // The client commands still list them, and take them before or after the command.
    let sub = help(&["sub", "--help"]);
    for client_option in [
        "--server",
        "--name",
        "--json",
        "--token-file",
        "Client options",
    ] {
        assert!(
            sub.contains(client_option),
            "sub --help lacks {client_option}"
        );
    }
    let server = TestServer::start();
    for (args, name) in [
        (["--json", "--name", "early", "whoami"], "early"),
        (["whoami", "--json", "--name", "late"], "late"),
    ] {
        let out = Command::new(BIN)
            .env_remove("SWITCHBOARD_SERVER")
            .env("SWITCHBOARD_NAME", "from-the-environment")
            .args(["--server", &server.addr])
            .args(args)
            .assert()
            .success();
        let whoami = &json_lines(&out.get_output().stdout)[0];
        assert_eq!(whoami["name"], name);
    }
    // A client option after the command wins over the same option before it.
    let out = Command::new(BIN)
        .env_remove("SWITCHBOARD_SERVER")
        .args([
            "--server",
            "127.0.0.1:1",
            "--name",
            "before",
            "whoami",
            "--json",
        ])
        .args(["--server", &server.addr, "--name", "after"])
        .assert()
        .success();
    assert_eq!(json_lines(&out.get_output().stdout)[0]["name"], "after");

    Command::new(BIN)
        .args([
            "--name",
            "carol",
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--memory",
        ])
        .timeout(Duration::from_secs(10))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--name is an option of the client commands",
        ));
    Command::new(BIN)
        .args([
            "--hmac-key-file",
            "key",
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--memory",
        ])
        .timeout(Duration::from_secs(10))
        .assert()
        .failure()
        .stderr(predicate::str::contains("serve --hmac-key-file FILE"));
}

#[test]
fn secrets_come_from_files_or_the_environment_never_from_the_command_line() {
    Command::new(BIN)
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--no-unix",
            "--memory",
        ])
        .args(["--admin-token", "s3cret"])
        .timeout(Duration::from_secs(10))
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("every local user")
                .and(predicate::str::contains("--admin-token-file")),
        );
    Command::new(BIN)
        .args(["--token", "s3cret", "stop"])
        .timeout(Duration::from_secs(10))
        .assert()
        .failure()
        .stderr(predicate::str::contains("--token-file"));

    let dir = tempfile::tempdir().unwrap();
    let admin_token = dir.path().join("admin-token");
    std::fs::write(&admin_token, "s3cret\n").unwrap();
    let wrong_token = dir.path().join("wrong-token");
    std::fs::write(&wrong_token, "guess\n").unwrap();
    let (mut child, addr) = serve_process(&[
        "--memory".as_ref(),
        "--no-unix".as_ref(),
        "--admin-token-file".as_ref(),
        admin_token.as_os_str(),
    ]);
    let stop = |token_file: &std::path::Path| {
        let mut command = Command::new(BIN);
        command
            .env_remove("SWITCHBOARD_TOKEN")
            .args(["--server", &addr, "stop", "--token-file"])
            .arg(token_file)
            .timeout(Duration::from_secs(30));
        command
    };
    // A wrong token is refused at login, not let in as a plain session.
    stop(&wrong_token)
        .assert()
        .failure()
        .stderr(predicate::str::contains("AUTH_FAILED: invalid token"));
    stop(&admin_token).assert().success();
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "server exit status {status:?}");

    // The same through the environment.
    let (mut child, addr) = serve_process_with_env(
        &["--memory".as_ref(), "--no-unix".as_ref()],
        &[("SWITCHBOARD_ADMIN_TOKEN", "from-env")],
    );
    Command::new(BIN)
        .env("SWITCHBOARD_TOKEN", "from-env")
        .args(["--server", &addr, "stop"])
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "server exit status {status:?}");
}

/// A log line as the server writes it, read back: no terminal escape codes.
fn assert_plain(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}'),
        "{what} has terminal escape codes:\n{}",
        text.escape_debug()
    );
}

#[test]
fn the_log_is_plain_text_on_a_pipe_and_in_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hub.log");
    let data = dir.path().join("data");
    let mut server = StdCommand::new(BIN)
        // Also the connection's span, whose fields the layers format once and share
        // (sessions are logged at debug).
        .env("RUST_LOG", "info,CONNECTION=debug")
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--no-unix",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the server says where it listens");
        if let Some(addr) = line.strip_prefix("switchboard listening on ") {
            break addr.to_owned();
        }
    };
    support::cli_at(&addr, "logger")
        .args(["pub", "logged", "hello"])
        .assert()
        .success();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("session closed")
    {
        assert!(Instant::now() < deadline, "the session never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
    let stderr = reader.join().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_plain("stderr", &stderr);
    assert_plain("the log file", &log);
    // The startup lines say what they mean in words.
    assert!(
        stderr.contains(&format!(
            "switchboard keeps history in {} (synced every 100ms)",
            data.display()
        )),
        "{stderr}"
    );
    for text in [&stderr, &log] {
        assert!(
            text.contains("GENERAL: listening on TCP addr=127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("conn{peer=tcp 127.0.0.1:"), "{text}");
        assert!(
            text.contains("store opened") && text.contains("policy=synced every 100ms"),
            "{text}"
        );
        assert!(
            !text.contains("Interval("),
            "a debug value in the log: {text}"
        );
    }
}

#[cfg(unix)]
#[test]
fn the_log_file_is_plain_text_while_the_terminal_gets_colours() {
    use support::terminal::Terminal;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hub.log");
    let server = Terminal::spawn(
        &[
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--no-unix",
            "--memory",
            "--log-file",
            log.to_str().unwrap(),
        ],
        &[("RUST_LOG", "info,CONNECTION=debug")],
    );
    server.expect("switchboard listening on 127.0.0.1:");
    // The line after it is printed once the address line is whole (port included).
    server.expect("switchboard keeps history in memory only");
    let screen = server.text();
    let addr = screen
        .lines()
        .find_map(|line| line.trim().strip_prefix("switchboard listening on "))
        .expect("the address")
        .to_owned();
    support::cli_at(&addr, "logger")
        .args(["pub", "logged", "hello"])
        .assert()
        .success();
    server.expect("session closed");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_plain("the log file", &log);
    assert!(log.contains("conn{peer=tcp 127.0.0.1:"), "{log}");
    assert!(server.shows_colour(), "no colour on the terminal");
}
