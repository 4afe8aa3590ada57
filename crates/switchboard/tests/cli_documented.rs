//! What the README and `--help` promise of the command line, each held by a test: a plain
//! `stop` finding the server's default Unix socket, `stats` (text, JSON and the library's
//! `Client::stats`), `relay --file`, `pub --header` and `--content-type`, and replays
//! from a sequence number or a time with `sub --since` and `history --since`.

mod support;

use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

use support::{BIN, KillOnDrop, TestServer, json_lines, read_lines, wait_exit};

/// `switchboard serve` on `port` with nothing but its default Unix socket, in a process
/// whose temporary directory is `tmp`; returns once it listens on that socket.
#[cfg(unix)]
fn serve_on_port(port: u16, tmp: &std::path::Path) -> (KillOnDrop, String) {
    use std::io::{BufRead, BufReader};
    let mut child = StdCommand::new(BIN)
        .env("TMPDIR", tmp)
        .env_remove("SWITCHBOARD_ADMIN_TOKEN")
        .env_remove("SWITCHBOARD_DATA_DIR")
        .args(["serve", "--memory", "--no-http", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let socket = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .expect("line");
        if let Some(path) = line.strip_prefix("switchboard listening on unix:") {
            break path.to_owned();
        }
    };
    // Keeps reading so the server never writes into a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), socket)
}

/// A port free a moment ago. The default socket is named after the port, so the server
/// cannot take port 0; another process taking this port in between makes the server fail
/// to start, which the test reports.
#[cfg(unix)]
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The README's plain `switchboard stop`: with the same environment as the server (its
/// temporary directory, and the address in SWITCHBOARD_SERVER), `stop` finds the server's
/// default Unix socket, where no token is needed, and the server exits 0.
#[cfg(unix)]
#[test]
fn a_plain_stop_finds_the_default_unix_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut server, socket) = serve_on_port(port, tmp.path());
    assert_eq!(
        std::path::Path::new(&socket),
        tmp.path().join(format!("switchboard-{port}.sock")),
        "the default socket is named after the port in the temporary directory"
    );
    let plain_stop = |tmp: &std::path::Path| {
        let mut command = Command::new(BIN);
        command
            .env("TMPDIR", tmp)
            .env("SWITCHBOARD_SERVER", format!("127.0.0.1:{port}"))
            .env_remove("SWITCHBOARD_TOKEN")
            .env_remove("SWITCHBOARD_TOKEN_FILE")
            .arg("stop")
            .timeout(Duration::from_secs(60));
        command
    };

    // Looking elsewhere for the socket, `stop` falls back to TCP, where it needs the
    // admin token: what makes the plain `stop` work is finding the socket.
    let elsewhere = tempfile::tempdir().unwrap();
    plain_stop(elsewhere.path())
        .assert()
        .failure()
        .stderr(predicate::str::contains("admin"));
    assert!(server.try_wait().unwrap().is_none(), "the server stopped");

    plain_stop(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "server at unix:{socket} is stopping"
        )));
    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert!(status.success(), "server exit status {status:?}");
}

/// The value of the stat `name` in the text output of `stats`: one `NAME VALUE` line each.
fn text_stat(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

#[test]
fn stats_prints_the_counters_as_text_and_as_json() {
    let server = TestServer::start();
    for text in ["one", "two", "three"] {
        server
            .cli("alice")
            .args(["pub", "news", text])
            .assert()
            .success();
    }

    let out = server.stdout("bob", &["--json", "stats"]);
    let stats = &json_lines(&out)[0];
    assert_eq!(stats["messages_published"], 3, "{stats}");
    // The three publishers and this session.
    assert_eq!(stats["connections_total"], 4, "{stats}");
    // Sessions that ended may not be cleaned up yet; this one is open.
    assert!(stats["connections_current"].as_u64() >= Some(1), "{stats}");
    assert!(
        stats["memory_budget_limit"].as_u64().is_some(),
        "every counter is a number: {stats}"
    );

    let out = server.stdout("bob", &["stats"]);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text_stat(&text, "messages_published"), Some(3), "{text}");
    assert_eq!(text_stat(&text, "connections_total"), Some(5), "{text}");
    // The same counters as the JSON, one line each.
    let names = stats.as_object().unwrap().len();
    assert_eq!(text.lines().count(), names, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_reads_the_same_counters() {
    let server = support::library::server().await;
    let publisher = support::library::client(&server, "alice").await;
    for text in ["one", "two"] {
        publisher
            .publish("news", switchboard_client::Payload::text(text))
            .await
            .expect("published");
    }
    let observer = support::library::client(&server, "bob").await;
    let stats = observer.stats().await.expect("stats");
    let stat = |name: &str| {
        stats
            .stats
            .iter()
            .find(|stat| &*stat.name == name)
            .map(|stat| stat.value)
    };
    assert_eq!(stat("messages_published"), Some(2));
    assert_eq!(stat("connections_current"), Some(2));
    // What the library reads is what the server counts.
    for (name, value) in server.stats() {
        if name == "messages_published" || name == "connections_total" {
            assert_eq!(stat(&name), Some(value), "{name}");
        }
    }
    publisher.close().await.expect("closed");
    observer.close().await.expect("closed");
    server.shutdown().await;
}

/// Each line the child prints, as it prints it.
fn line_feed(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn relay_sends_a_files_bytes() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("blob.bin");
    std::fs::write(&binary, [0u8, 255, 1, 254]).unwrap();
    let text = dir.path().join("note.txt");
    std::fs::write(&text, "from a file\n").unwrap();

    let mut listener = server.spawn("carol", &["--json", "listen", "--count", "2"]);
    let lines = line_feed(&mut listener);
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from listen")
    };
    let hello: Value = serde_json::from_str(&next_line()).expect("JSON");
    let id = hello["client_id"].as_u64().expect("an id").to_string();
    for file in [&binary, &text] {
        let out = server
            .cli("alice")
            .args(["--json", "relay", "--to", &id, "--file"])
            .arg(file)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        assert_eq!(json_lines(&out)[0]["status"], "delivered");
    }
    let directs: Vec<Value> = (0..2)
        .map(|_| serde_json::from_str(&next_line()).expect("JSON"))
        .collect();
    let status = wait_exit(&mut listener, Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(directs[0]["payload_base64"], "AP8B/g==");
    assert_eq!(directs[0]["content_type"], "application/octet-stream");
    assert_eq!(directs[0]["from"], "alice");
    assert_eq!(directs[1]["payload"], "from a file\n");
    assert!(
        directs[1]["content_type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{}",
        directs[1]
    );
}

#[test]
fn pub_headers_and_content_type_reach_subscribers_and_get() {
    let server = TestServer::start();
    let mut sub = server.spawn("bob", &["--json", "sub", "orders", "--count", "1"]);
    server.wait_for_subscriber("bob", 1);
    server
        .cli("alice")
        .args([
            "pub",
            "orders",
            "{\"item\":42}",
            "--content-type",
            "application/json",
            "--header",
            "priority=high",
            "--header",
            "trace=abc=123",
        ])
        .assert()
        .success();
    let seen = read_lines(&mut sub, 1);
    assert!(wait_exit(&mut sub, Duration::from_secs(30)).success());
    let live: Value = serde_json::from_str(&seen[0]).expect("JSON");
    let out = server.stdout("bob", &["--json", "get", "orders"]);
    let stored = &json_lines(&out)[0];
    for message in [&live, stored] {
        assert_eq!(message["content_type"], "application/json", "{message}");
        assert_eq!(message["headers"]["priority"], "high", "{message}");
        // Only the first `=` separates the key from the value.
        assert_eq!(message["headers"]["trace"], "abc=123", "{message}");
        assert_eq!(message["payload"], "{\"item\":42}", "{message}");
    }
}

/// Publishes `texts` to `channel` and returns each message's `time`, as `get --json`
/// prints it.
fn publish_each(server: &TestServer, channel: &str, texts: &[&str]) -> Vec<String> {
    texts
        .iter()
        .map(|text| {
            server
                .cli("alice")
                .args(["pub", channel, text])
                .assert()
                .success();
            let out = server.stdout("alice", &["--json", "get", channel]);
            let latest = &json_lines(&out)[0];
            assert_eq!(latest["payload"], *text);
            latest["time"].as_str().expect("a time").to_owned()
        })
        .collect()
}

fn payloads(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message["payload"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn history_since_a_time_starts_at_that_time() {
    let server = TestServer::start();
    let times = publish_each(&server, "log", &["first", "second", "third"]);
    assert!(times[0] < times[1], "{times:?}");

    let out = server.stdout("bob", &["--json", "history", "log", "--since", &times[1]]);
    assert_eq!(payloads(&json_lines(&out)), ["second", "third"]);
    // An age reaches back over everything published just now.
    let out = server.stdout("bob", &["--json", "history", "log", "--since", "10m"]);
    assert_eq!(payloads(&json_lines(&out)), ["first", "second", "third"]);
    server
        .cli("bob")
        .args(["history", "log", "--since", "last tuesday"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot read --since"));
}

#[test]
fn sub_since_replays_from_a_sequence_number_or_a_time_then_goes_live() {
    let server = TestServer::start();
    let times = publish_each(&server, "log", &["first", "second", "third"]);

    for since in ["2", times[1].as_str()] {
        let mut sub = server.spawn(
            "bob",
            &["--json", "sub", "log", "--since", since, "--count", "3"],
        );
        let replayed = read_lines(&mut sub, 2);
        let replayed: Vec<Value> = replayed
            .iter()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        assert_eq!(payloads(&replayed), ["second", "third"], "since {since}");
        // The replay came through the subscription, which now delivers live messages.
        server
            .cli("alice")
            .args(["pub", "log", &format!("live after {since}")])
            .assert()
            .success();
        // It exits after its third message: the live one.
        assert!(wait_exit(&mut sub, Duration::from_secs(30)).success());
    }
}
