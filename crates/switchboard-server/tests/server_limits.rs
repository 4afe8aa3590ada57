//! The server's own limits against a real server on a loopback port: the handshake
//! timeout, the heartbeat bounds a client's request is clamped to, the most connections
//! and subscriptions, and the disconnect hook an embedding application hears.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RawClient, WAIT, eventually, start_server, start_server_with};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{Packet, Replay, SessionInit, Subscribe, Unsubscribe};
use switchboard_server::{Hooks, Server, ServerHandle, SessionInfo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

async fn subscribe(client: &mut RawClient, pattern: &str) -> Packet {
    client
        .request(Packet::Subscribe(Subscribe {
            pattern: pattern.into(),
            replay: Replay::None,
        }))
        .await
}

#[tokio::test]
async fn a_connection_without_session_init_is_closed_at_the_handshake_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let server = start_server_with(|config| config.handshake_timeout = TIMEOUT).await;

    // The preface, then nothing.
    let started = Instant::now();
    let mut quiet = RawClient::connect(&server).await;
    let packets = quiet.until_closed().await;
    let elapsed = started.elapsed();
    assert!(
        matches!(&packets[..], [Packet::Error(e)]
            if e.code == ErrorCode::SessionRequired && e.message.contains("handshake timed out")),
        "{packets:?}"
    );
    assert!(elapsed >= TIMEOUT, "closed too early: {elapsed:?}");
    assert!(elapsed < WAIT, "closed too late: {elapsed:?}");

    // Not even a preface: closed as well.
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.tcp_addr().expect("tcp"))
        .await
        .expect("connect");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, silent.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    assert!(started.elapsed() >= TIMEOUT, "closed too early");

    // A client that opens its session in time is served as usual.
    let (_client, ack) = RawClient::connect_session(&server, "prompt").await;
    assert!(ack.client_id > 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_heartbeat_a_client_asks_for_is_clamped_to_the_servers_bounds() {
    let server = start_server().await;
    for (asked, granted) in [
        // None asked: the server's default, 5 s.
        (0, 5_000),
        (1, 50),
        (49, 50),
        (50, 50),
        (750, 750),
        (300_000, 300_000),
        (300_001, 300_000),
        (u32::MAX, 300_000),
    ] {
        let mut client = RawClient::connect(&server).await;
        let ack = client.open("beating", asked).await;
        assert_eq!(ack.heartbeat_ms, granted, "asked for {asked} ms");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_past_max_connections_is_refused_until_one_closes() {
    let server = start_server_with(|config| config.max_connections = 2).await;
    let (first, _) = RawClient::connect_session(&server, "first").await;
    let (_second, _) = RawClient::connect_session(&server, "second").await;

    let mut third = RawClient::connect(&server).await;
    let init = SessionInit {
        name: "third".into(),
        ..SessionInit::default()
    };
    match third.request(Packet::SessionInit(init)).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::LimitReached, "{error:?}"),
        other => panic!("expected LIMIT_REACHED, got {other:?}"),
    }
    assert!(
        third.until_closed().await.is_empty(),
        "closed after the refusal"
    );

    drop(first);
    assert!(
        eventually(WAIT, || server.hub().metrics().connections_closed >= 1).await,
        "the first session never ended"
    );
    let (_again, ack) = RawClient::connect_session(&server, "again").await;
    assert!(ack.client_id > 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_past_max_subscriptions_is_refused_until_it_removes_one() {
    let server = start_server_with(|config| config.max_subscriptions = 3).await;
    let (mut client, _) = RawClient::connect_session(&server, "greedy").await;
    let mut ids = Vec::new();
    for pattern in ["a", "b.*", "c"] {
        match subscribe(&mut client, pattern).await {
            Packet::SubscribeAck(ack) => ids.push(ack.subscription_id),
            other => panic!("{pattern}: {other:?}"),
        }
    }
    match subscribe(&mut client, "d").await {
        Packet::Error(error) => {
            assert_eq!(error.code, ErrorCode::LimitReached);
            assert!(error.message.contains('3'), "{error:?}");
        }
        other => panic!("expected LIMIT_REACHED, got {other:?}"),
    }
    // The limit is per session: another session subscribes freely.
    let (mut other, _) = RawClient::connect_session(&server, "other").await;
    assert!(matches!(
        subscribe(&mut other, "d").await,
        Packet::SubscribeAck(_)
    ));
    // Removing one makes room for one.
    assert!(matches!(
        client
            .request(Packet::Unsubscribe(Unsubscribe {
                subscription_id: ids[0],
            }))
            .await,
        Packet::Ok(_)
    ));
    assert!(matches!(
        subscribe(&mut client, "d").await,
        Packet::SubscribeAck(_)
    ));
    assert!(matches!(
        subscribe(&mut client, "e").await,
        Packet::Error(e) if e.code == ErrorCode::LimitReached
    ));
    server.shutdown().await;
}

/// Tells the test of every disconnect it hears.
struct DisconnectWitness {
    heard: mpsc::UnboundedSender<(SessionInfo, String)>,
}

impl Hooks for DisconnectWitness {
    fn on_disconnect(&self, session: &SessionInfo, reason: &str) {
        let _ = self.heard.send((session.clone(), reason.to_owned()));
    }
}

async fn server_with_witness() -> (ServerHandle, mpsc::UnboundedReceiver<(SessionInfo, String)>) {
    let (tell, heard) = mpsc::unbounded_channel();
    let witness = DisconnectWitness { heard: tell };
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .hooks(Arc::new(witness))
        .start()
        .await
        .expect("server starts");
    (server, heard)
}

async fn next_disconnect(
    heard: &mut mpsc::UnboundedReceiver<(SessionInfo, String)>,
) -> (SessionInfo, String) {
    tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("the hook runs in time")
        .expect("the server keeps its hooks")
}

#[tokio::test]
async fn the_disconnect_hook_hears_each_session_that_ends() {
    let (server, mut heard) = server_with_witness().await;
    let (leaving, leaving_ack) = RawClient::connect_session(&server, "leaving").await;
    let (mut staying, staying_ack) = RawClient::connect_session(&server, "staying").await;

    // A client that goes away.
    drop(leaving);
    let (info, _reason) = next_disconnect(&mut heard).await;
    assert_eq!(info.name, "leaving");
    assert_eq!(info.client_id, leaving_ack.client_id);
    assert_eq!(info.session_id, leaving_ack.session_id);
    assert!(info.peer.starts_with("tcp 127.0.0.1:"), "{}", info.peer);

    // A session the server ends: the hook gets its reason.
    let stopping = tokio::spawn(async move { server.shutdown().await });
    let packets = staying.until_closed().await;
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.code == ErrorCode::ShuttingDown),
        "{packets:?}"
    );
    let (info, reason) = next_disconnect(&mut heard).await;
    assert_eq!(info.client_id, staying_ack.client_id);
    assert_eq!(reason, "server shutting down");
    stopping.await.expect("shutdown");
    assert!(heard.try_recv().is_err(), "one call per session");
}
