//! `switchboard serve` options end to end: the server as its own process with the option,
//! the client library or the CLI against it, and what the option promises observed from
//! the outside (`--handshake-timeout`, `--max-relay-bytes`, `--max-body`, `--history`,
//! `--require-create`, `--sync never`, `--hmac-key-file`).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchboard_client::{ChannelOptions, Client, ClientConfig, ErrorKind, Payload, Since};
use switchboard_proto::ErrorCode;

mod support;

use support::{arg, serve_process};

async fn connect(addr: &str, name: &str) -> Client {
    Client::connect(ClientConfig::new(addr, name))
        .await
        .expect("client connects")
}

/// A memory-only server with `options`.
fn serve_memory(options: &[&str]) -> (support::KillOnDrop, String) {
    let mut args: Vec<&OsStr> = vec!["--no-unix".as_ref(), "--memory".as_ref()];
    args.extend(options.iter().map(OsStr::new));
    serve_process(&args)
}

fn texts(messages: &[switchboard_client::ReceivedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.text().expect("text").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_relay_bytes_refuses_a_larger_relay_and_delivers_one_at_the_limit() {
    let (_server, addr) = serve_memory(&["--max-relay-bytes", "100"]);
    let sender = connect(&addr, "sender").await;
    let receiver = connect(&addr, "receiver").await;
    let to = [receiver.session().client_id];
    let mut directs = receiver.direct_feed().expect("direct feed");

    let over = sender
        .relay(&to, vec![b'x'; 101], "text/plain")
        .await
        .expect_err("101 bytes are over the limit");
    assert_eq!(over.code(), Some(ErrorCode::TooLarge), "{over}");
    assert!(over.to_string().contains("100"), "{over}");

    let outcomes = sender
        .relay(&to, vec![b'y'; 100], "text/plain")
        .await
        .expect("100 bytes are within the limit");
    assert_eq!(outcomes.len(), 1);
    let direct = tokio::time::timeout(std::time::Duration::from_secs(10), directs.next())
        .await
        .expect("the relay arrives in time")
        .expect("a direct message");
    // The refused relay was never delivered: the first to arrive is the one at the limit.
    assert_eq!(direct.body().len(), 100);
    assert!(direct.body().iter().all(|&b| b == b'y'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_is_announced_and_bounds_what_channels_accept() {
    let (_server, addr) = serve_memory(&["--max-body", "1000"]);
    let client = connect(&addr, "writer").await;
    assert_eq!(client.session().limits.max_body, 1000);

    client
        .publish("bounded", Payload::bytes(vec![b'a'; 1000]))
        .await
        .expect("a body at the limit is accepted");
    let over = client
        .publish("bounded", Payload::bytes(vec![b'b'; 1001]))
        .await
        .expect_err("a body over the limit is refused");
    assert_eq!(over.kind(), ErrorKind::TooLarge, "{over}");

    // The server holds its channels to it: a channel created by publishing takes it as its
    // largest body, and one asking for more is refused.
    let channels = client.list_channels().await.expect("channels");
    let bounded = channels
        .iter()
        .find(|c| c.name == "bounded")
        .expect("listed");
    assert_eq!(bounded.options.max_bytes, Some(1000));
    let refused = client
        .create_channel(
            "roomier",
            ChannelOptions {
                max_bytes: Some(1001),
                ..ChannelOptions::default()
            },
        )
        .await
        .expect_err("a channel cannot take more than --max-body");
    assert_eq!(refused.kind(), ErrorKind::Server, "{refused}");
    let messages = client
        .get_messages("bounded", Since::All, None)
        .await
        .expect("history");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_sets_what_a_channel_created_by_publishing_keeps() {
    let (_server, addr) = serve_memory(&["--history", "3"]);
    let client = connect(&addr, "writer").await;
    for i in 1..=5 {
        client
            .publish("short", Payload::text(&format!("m{i}")))
            .await
            .expect("publish");
    }
    let messages = client
        .get_messages("short", Since::All, None)
        .await
        .expect("history");
    assert_eq!(texts(&messages), ["m3", "m4", "m5"]);
    let channels = client.list_channels().await.expect("channels");
    let short = channels.iter().find(|c| c.name == "short").expect("listed");
    assert_eq!(short.options.history, Some(3));

    // A channel created with a history of its own keeps that instead.
    client
        .create_channel(
            "long",
            ChannelOptions {
                history: Some(10),
                ..ChannelOptions::default()
            },
        )
        .await
        .expect("create");
    for i in 1..=5 {
        client
            .publish("long", Payload::text(&format!("m{i}")))
            .await
            .expect("publish");
    }
    let messages = client
        .get_messages("long", Since::All, None)
        .await
        .expect("history");
    assert_eq!(messages.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_create_refuses_publishing_to_a_channel_nobody_created() {
    let (_server, addr) = serve_memory(&["--require-create"]);
    let client = connect(&addr, "writer").await;
    let refused = client
        .publish("uncreated", Payload::text("hello"))
        .await
        .expect_err("no channel yet");
    assert_eq!(
        refused.code(),
        Some(ErrorCode::ChannelRequired),
        "{refused}"
    );
    assert!(
        client
            .list_channels()
            .await
            .expect("channels")
            .iter()
            .all(|c| c.name != "uncreated"),
        "the refused publish created nothing"
    );

    client
        .create_channel("uncreated", ChannelOptions::default())
        .await
        .expect("create");
    client
        .publish("uncreated", Payload::text("hello"))
        .await
        .expect("a created channel takes publishes");
    let messages = client
        .get_messages("uncreated", Since::All, None)
        .await
        .expect("history");
    assert_eq!(texts(&messages), ["hello"]);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_never_serves_its_data_and_keeps_it_through_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |dir: &Path| {
        serve_process(&[
            "--no-unix".as_ref(),
            "--data-dir".as_ref(),
            arg(dir),
            "--sync".as_ref(),
            "never".as_ref(),
        ])
    };
    let (mut server, addr) = serve(dir.path());
    let client = connect(&addr, "writer").await;
    for i in 1..=20 {
        client
            .publish("kept", Payload::text(&format!("m{i}")))
            .await
            .expect("publish");
    }
    let served = client
        .get_messages("kept", Since::All, None)
        .await
        .expect("history");
    assert_eq!(served.len(), 20, "served before any sync");
    drop(client);

    let exit = support::terminate(&mut server, std::time::Duration::from_secs(30));
    assert!(exit.success(), "a clean stop: {exit:?}");

    let (_server, addr) = serve(dir.path());
    let client = connect(&addr, "reader").await;
    let restored = client
        .get_messages("kept", Since::All, None)
        .await
        .expect("history");
    assert_eq!(texts(&restored), texts(&served));
    assert_eq!(
        restored.iter().map(|m| m.seq()).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u64>>()
    );
}

#[test]
fn hmac_key_file_admits_clients_with_the_same_key_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hub.key");
    let other = dir.path().join("other.key");
    std::fs::write(&key, "a shared secret\n").unwrap();
    std::fs::write(&other, "a different secret\n").unwrap();
    let (_server, addr) = serve_process(&[
        "--no-unix".as_ref(),
        "--memory".as_ref(),
        "--hmac-key-file".as_ref(),
        arg(&key),
    ]);

    support::cli_at(&addr, "keyholder")
        .arg("--hmac-key-file")
        .arg(&key)
        .args(["pub", "signed", "hello"])
        .assert()
        .success();
    let out = support::cli_at(&addr, "keyholder")
        .arg("--hmac-key-file")
        .arg(&key)
        .args(["--json", "get", "signed"])
        .assert()
        .success();
    let got = support::json_lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1);
    assert!(got[0].to_string().contains("hello"), "{}", got[0]);

    for (what, key) in [("a different key", Some(&other)), ("no key", None)] {
        let mut cli = support::cli_at(&addr, "stranger");
        if let Some(key) = key {
            cli.arg("--hmac-key-file").arg(key);
        }
        let out = cli.args(["pub", "signed", "intruder"]).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(
            stderr.contains("cannot connect") && stderr.contains("HMAC"),
            "{what}: {stderr}"
        );
    }
    // Nothing from them got in.
    let out = support::cli_at(&addr, "keyholder")
        .arg("--hmac-key-file")
        .arg(&key)
        .args(["--json", "get", "signed"])
        .assert()
        .success();
    assert_eq!(support::json_lines(&out.get_output().stdout).len(), 1);
}

/// Reads until the server closes `stream`; how long that took.
fn until_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("closed by the server within 5 s");
    started.elapsed()
}

#[test]
fn handshake_timeout_closes_connections_that_do_not_open_a_session_in_time() {
    let (_server, addr) = serve_memory(&["--handshake-timeout", "200ms"]);
    // Nothing at all.
    let mut silent = TcpStream::connect(&addr).expect("connect");
    let took = until_closed(&mut silent);
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");
    // A preface, and no SESSION_INIT.
    let mut quiet = TcpStream::connect(&addr).expect("connect");
    quiet
        .write_all(&switchboard_proto::Preface::encode(
            switchboard_proto::PROTOCOL_VERSION,
        ))
        .expect("preface");
    let took = until_closed(&mut quiet);
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");
    // A client opening its session at once is served.
    support::cli_at(&addr, "prompt")
        .args(["pub", "in.time", "hello"])
        .assert()
        .success();
}

#[test]
fn handshake_timeout_comes_from_the_config_file_unless_the_flag_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, "[limits]\nhandshake_timeout = \"250ms\"\n").unwrap();
    let check = |extra: &[&str]| {
        let out = assert_cmd::Command::new(support::BIN)
            .env_remove("SWITCHBOARD_DATA_DIR")
            .args(["serve", "--memory", "--config"])
            .arg(&config)
            .args(extra)
            .args(["--check", "json"])
            .timeout(Duration::from_secs(30))
            .assert()
            .success();
        let settings: serde_json::Value =
            serde_json::from_slice(&out.get_output().stdout).expect("JSON");
        settings["limits"]["handshake_timeout"].clone()
    };
    assert_eq!(check(&[]), "250ms");
    assert_eq!(check(&["--handshake-timeout", "2s"]), "2s");
}
