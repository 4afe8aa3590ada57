//! The server's handling of the connection itself over real TCP: prefaces, HTTP
//! requests, the session handshake, HMAC, corrupt frames and heartbeats.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{RawClient, WAIT, start_server};
use switchboard_proto::packet::{Identify, ListClients, Packet, Publish, SessionInit};
use switchboard_proto::{ErrorCode, Flags, FrameCodec, Limits, MAGIC, PREFACE_LEN, Preface};
use switchboard_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn http_request_gets_a_plain_http_refusal() {
    let server = start_server().await;
    let mut stream = TcpStream::connect(server.tcp_addr().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request"),
        "{response}"
    );
    assert!(response.contains("Switchboard binary protocol"));
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_magic_gets_preface_and_bad_preface_error() {
    let server = start_server().await;
    let mut stream = TcpStream::connect(server.tcp_addr().unwrap())
        .await
        .unwrap();
    stream.write_all(b"HELLO WORLD!").await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&bytes[..8], &MAGIC);
    let mut buf = BytesMut::from(&bytes[PREFACE_LEN..]);
    let frame =
        tokio_util::codec::Decoder::decode(&mut FrameCodec::new(Limits::default()), &mut buf)
            .unwrap()
            .unwrap();
    match Packet::from_frame(&frame).unwrap() {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::BadPreface),
        other => panic!("expected ERROR, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn newer_client_version_is_answered_with_ours() {
    let server = start_server().await;
    let mut stream = TcpStream::connect(server.tcp_addr().unwrap())
        .await
        .unwrap();
    stream.write_all(&Preface::encode(7)).await.unwrap();
    let mut preface = [0u8; PREFACE_LEN];
    stream.read_exact(&mut preface).await.unwrap();
    assert_eq!(Preface::decode(&preface).unwrap().version, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_before_session_init_is_refused_and_closed() {
    let server = start_server().await;
    let mut client = RawClient::connect(&server).await;
    client
        .send(5, Flags::empty(), &Packet::Identify(Identify))
        .await;
    let packets = client.until_closed().await;
    assert!(
        matches!(&packets[..], [Packet::Error(e)] if e.code == ErrorCode::SessionRequired),
        "{packets:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn session_ack_gives_distinct_ids_and_the_heartbeat() {
    let server = start_server().await;
    let mut a = RawClient::connect(&server).await;
    let ack_a = a.open("alice", 750).await;
    let (_b, ack_b) = RawClient::connect_session(&server, "bob").await;
    assert_ne!(ack_a.client_id, ack_b.client_id);
    assert_ne!(ack_a.session_id, ack_b.session_id);
    assert_eq!(ack_a.heartbeat_ms, 750);
    assert_eq!(ack_a.session_id.get_version_num(), 7);
    match a.request(Packet::Identify(Identify)).await {
        Packet::Identity(identity) => {
            assert_eq!(identity.client_id, ack_a.client_id);
            assert_eq!(identity.name, "alice");
            assert_eq!(identity.session_id, ack_a.session_id);
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

/// A PUBLISH to "chat" of `body` as `client` would send it (request id 9), to be
/// changed before it is sent.
fn publish_frame(client: &RawClient, body: bytes::Bytes) -> BytesMut {
    let mut frame = BytesMut::new();
    client
        .codec
        .encode_packet(
            9,
            Flags::empty(),
            &Packet::Publish(Publish {
                channel: "chat".into(),
                body,
                ..Publish::default()
            }),
            &mut frame,
        )
        .unwrap();
    frame
}

#[tokio::test]
async fn corrupt_crc_is_an_error_and_the_connection_closes_but_others_go_on() {
    let server = start_server().await;
    let (mut bad, _) = RawClient::connect_session(&server, "mallory").await;
    let (mut good, _) = RawClient::connect_session(&server, "alice").await;
    let mut frame = publish_frame(&bad, bytes::Bytes::from_static(b"hello"));
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    bad.send_raw(&frame).await;
    let packets = bad.until_closed().await;
    assert!(
        packets
            .iter()
            .any(|p| matches!(p, Packet::Error(e) if e.code == ErrorCode::BadFrame)),
        "{packets:?}"
    );
    assert!(matches!(
        good.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn a_large_body_changed_on_the_way_is_refused() {
    let server = start_server().await;
    let (mut bad, _) = RawClient::connect_session(&server, "mallory").await;
    let mut frame = publish_frame(&bad, bytes::Bytes::from(vec![7u8; 64 * 1024]));
    // One byte of the body, well inside it, past the reach of any short-input path.
    let at = frame.len() - 20_000;
    frame[at] ^= 0x01;
    // The prefix first: the rest is read into the frame's own buffer.
    bad.send_raw(&frame[..100]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    bad.send_raw(&frame[100..]).await;
    let packets = bad.until_closed().await;
    assert!(
        packets
            .iter()
            .any(|p| matches!(p, Packet::Error(e) if e.code == ErrorCode::BadFrame)),
        "{packets:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn hmac_is_required_when_configured() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .hmac_key(b"shared-secret".to_vec())
        .start()
        .await
        .unwrap();
    // The right key: a working session.
    let mut good = RawClient::connect(&server).await.with_mac(b"shared-secret");
    good.open("alice", 0).await;
    assert!(matches!(
        good.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    // The wrong key: refused with BAD_MAC and no session. The refusal carries the
    // server's tag, so it is read with the server's key.
    let mut wrong = RawClient::connect(&server).await.with_mac(b"guess");
    let init = SessionInit {
        name: "mallory".into(),
        ..SessionInit::default()
    };
    wrong
        .send(1, Flags::empty(), &Packet::SessionInit(init))
        .await;
    wrong
        .codec
        .set_mac_key(Some(switchboard_proto::MacKey::new(b"shared-secret")));
    let packets = wrong.until_closed().await;
    assert!(
        matches!(&packets[..], [Packet::Error(e)] if e.code == ErrorCode::BadMac),
        "{packets:?}"
    );
    // No tag at all: refused with BAD_MAC (readable by a client with the key).
    let mut none = RawClient::connect(&server).await;
    none.send(1, Flags::empty(), &Packet::SessionInit(Default::default()))
        .await;
    none.codec
        .set_mac_key(Some(switchboard_proto::MacKey::new(b"shared-secret")));
    let packets = none.until_closed().await;
    assert!(
        matches!(&packets[..], [Packet::Error(e)] if e.code == ErrorCode::BadMac),
        "{packets:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn silent_client_is_closed_after_three_heartbeats_and_leaves_the_list() {
    let server = start_server().await;
    let (mut watcher, _) = RawClient::connect_session(&server, "watcher").await;
    let mut silent = RawClient::connect(&server).await;
    let ack = silent.open("silent", 100).await;
    assert_eq!(ack.heartbeat_ms, 100);
    let started = Instant::now();
    let packets = silent.until_closed().await;
    let elapsed = started.elapsed();
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.code == ErrorCode::HeartbeatTimeout),
        "{packets:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed too early: {elapsed:?}"
    );
    // Three heartbeats are 300 ms; a server that never closed it would hang here, so a
    // generous bound leaves room for a busy machine.
    assert!(
        elapsed < Duration::from_secs(10),
        "closed too late: {elapsed:?}"
    );
    match watcher
        .request(Packet::ListClients(ListClients::default()))
        .await
    {
        Packet::ClientList(list) => assert!(list.clients.iter().all(|c| c.name != "silent")),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_keep_a_session_alive_and_are_answered() {
    let server = start_server().await;
    let mut client = RawClient::connect(&server).await;
    // Closed after three silent intervals (1.2 s): heartbeats every 200 ms for 2 s keep it
    // open, with room for a busy machine to delay one by most of a second.
    client.open("pinger", 400).await;
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .send(
                100 + round,
                Flags::empty(),
                &Packet::Heartbeat(Default::default()),
            )
            .await;
        let frame = client.next_frame().await.expect("pong");
        assert_eq!(frame.request_id, 100 + round);
        assert!(frame.flags.contains(Flags::PONG));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_sessions_why() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "alice").await;
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    let packets = client.until_closed().await;
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.code == ErrorCode::ShuttingDown && d.reason == "server shutting down"),
        "{packets:?}"
    );
    shutdown.await.unwrap();
}

#[tokio::test]
async fn server_refuses_256_receivers_and_oversized_relays_delivering_nothing() {
    use switchboard_proto::packet::Relay;
    let server = start_server().await;
    let (mut sender, _) = RawClient::connect_session(&server, "sender").await;
    let (mut receiver, receiver_ack) = RawClient::connect_session(&server, "receiver").await;
    let mut receivers: Vec<u64> = (0..255).map(|i| 5_000 + i).collect();
    receivers.push(receiver_ack.client_id);
    let relay = |receivers: Vec<u64>, len: usize| {
        Packet::Relay(Relay {
            receivers,
            content_type: "text/plain".into(),
            body: bytes::Bytes::from(vec![b'x'; len]),
        })
    };
    match sender.request(relay(receivers.clone(), 1)).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::TooManyReceivers),
        other => panic!("{other:?}"),
    }
    match sender
        .request(relay(vec![receiver_ack.client_id], 1024 * 1024 + 1))
        .await
    {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::TooLarge),
        other => panic!("{other:?}"),
    }
    match sender.request(relay(Vec::new(), 1)).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::InvalidArgument),
        other => panic!("{other:?}"),
    }
    // The first thing the receiver gets is this small relay: the refused ones left nothing.
    match sender.request(relay(vec![receiver_ack.client_id], 3)).await {
        Packet::RelayResult(result) => assert_eq!(result.outcomes.len(), 1),
        other => panic!("{other:?}"),
    }
    match receiver.next_packet().await {
        Some(Packet::Direct(direct)) => assert_eq!(direct.body.len(), 3),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}
