//! Connections that end badly: slow consumers, sessions stuck on their own replies,
//! shutdown with many idle or half-open connections, and what must be first on the wire.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{RawClient, eventually, start_server, start_server_with, stat};

/// How long something that should happen at once may take before the test gives up:
/// generous, as the machine may be busy; waits end as soon as it happens.
const PATIENCE: Duration = Duration::from_secs(15);
use switchboard_proto::packet::{
    CreateGroup, GetMessages, JoinGroup, Packet, Publish, Replay, Scope, Subscribe,
};
use switchboard_proto::{ErrorCode, Flags};
use switchboard_server::ServerHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Publishes a body to a channel and waits for the ack.
async fn publish(client: &mut RawClient, channel: &str, body: Vec<u8>) {
    let publish = Publish {
        channel: channel.into(),
        body: Bytes::from(body),
        ..Publish::default()
    };
    match client.request(Packet::Publish(publish)).await {
        Packet::PublishAck(_) => {}
        other => panic!("expected PUBLISH_ACK, got {other:?}"),
    }
}

/// Makes `victim` stop reading while asking for far more than the socket buffers hold, so
/// that its writer blocks, its queue fills and its session waits for room for a reply.
async fn stall_on_own_replies(server: &ServerHandle, victim: &mut RawClient) {
    for _ in 0..64 {
        let id = victim.next_request_id();
        let get = GetMessages {
            channel: "big".into(),
            ..GetMessages::default()
        };
        victim
            .send(id, Flags::empty(), &Packet::GetMessages(get))
            .await;
    }
    wait_until_writes_stall(server).await;
}

/// Waits until the server has stopped writing: the socket buffers between it and a client
/// that does not read are full, and the session waits for room. Nothing counts that
/// moment, so this watches the bytes sent stop growing (for several polls in a row) once
/// more was asked for than the socket buffers hold; a busy machine only makes it wait
/// longer.
async fn wait_until_writes_stall(server: &ServerHandle) {
    let bytes_sent = || server.hub().metrics().bytes_sent;
    let mut last = bytes_sent();
    let mut unchanged = 0;
    let deadline = Instant::now() + PATIENCE;
    while unchanged < 10 {
        assert!(
            Instant::now() < deadline,
            "the server never stopped writing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = bytes_sent();
        unchanged = if sent == last && sent > 1024 * 1024 {
            unchanged + 1
        } else {
            0
        };
        last = sent;
    }
}

#[tokio::test]
async fn a_slow_consumer_waiting_for_room_for_its_own_reply_is_still_disconnected() {
    let server = start_server_with(|config| {
        config.outbound_queue = 4;
        config.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    publish(&mut publisher, "big", vec![b'x'; 1024 * 1024]).await;
    let (mut victim, _) = RawClient::connect_session(&server, "victim").await;
    match victim
        .request(Packet::Subscribe(Subscribe {
            pattern: "x".into(),
            replay: Replay::None,
        }))
        .await
    {
        Packet::SubscribeAck(_) => {}
        other => panic!("{other:?}"),
    }
    stall_on_own_replies(&server, &mut victim).await;

    // The victim's queue is full: this delivery kills it, and must not block the publisher.
    let started = Instant::now();
    publish(&mut publisher, "x", b"live".to_vec()).await;
    // Held up, it would wait for a reader that never reads: any bound shows that, and
    // one of seconds leaves room for a busy machine.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "publishing took {took:?}");
    let gone = eventually(PATIENCE, || {
        stat(&server, "slow_consumers_disconnected") == 1
            && stat(&server, "connections_current") == 1
    })
    .await;
    assert!(
        gone,
        "the slow consumer is still connected: {:?}",
        server.stats()
    );
    // Nothing is routed to it any more, and the publisher goes on.
    publish(&mut publisher, "x", b"after".to_vec()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_a_session_waiting_for_room_for_its_own_reply() {
    let server = start_server_with(|config| {
        config.outbound_queue = 4;
        config.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    publish(&mut publisher, "big", vec![b'x'; 1024 * 1024]).await;
    let (mut victim, _) = RawClient::connect_session(&server, "victim").await;
    stall_on_own_replies(&server, &mut victim).await;

    let started = Instant::now();
    server.shutdown().await;
    // Stuck, shutdown would wait for a reader that never reads; the grace is 300 ms.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_eq!(
        stat(&server, "connections_current"),
        0,
        "a session outlived the shutdown"
    );
}

#[tokio::test]
async fn shutdown_is_prompt_with_many_idle_and_handshaking_connections() {
    let server = start_server().await;
    let addr = server.tcp_addr().unwrap();
    let mut idle = Vec::new();
    for i in 0..100 {
        let (client, _) = RawClient::connect_session(&server, &format!("idle{i}")).await;
        idle.push(client);
    }
    // Connected but silent, and half a preface.
    let mut half_open = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            stream.write_all(&[0x8a, 0x53, 0x57]).await.unwrap();
        }
        half_open.push(stream);
    }
    // Prefaces exchanged, no SESSION_INIT.
    let mut preface_only = Vec::new();
    // The server answered these prefaces, so it accepted every connection made before
    // them (one listener accepts in order): all the half-open ones are its own now.
    for _ in 0..100 {
        preface_only.push(RawClient::connect(&server).await);
    }
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    // Under the default grace of 5 s that a session left waiting would cost, with room
    // for a busy machine.
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert_eq!(stat(&server, "connections_current"), 0);
    for client in &mut preface_only {
        assert!(client.until_closed().await.is_empty());
    }
    for client in &mut idle {
        let packets = client.until_closed().await;
        assert!(
            matches!(packets.last(), Some(Packet::Disconnect(d)) if d.code == ErrorCode::ShuttingDown),
            "{packets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_ack_is_the_first_frame_even_while_the_group_is_busy() {
    let server = start_server().await;
    let (mut poster, _) = RawClient::connect_session(&server, "alice").await;
    assert!(matches!(
        poster
            .request(Packet::CreateGroup(CreateGroup {
                name: "busy".into(),
                description: "".into(),
            }))
            .await,
        Packet::Ok(_)
    ));
    assert!(matches!(
        poster
            .request(Packet::JoinGroup(JoinGroup {
                group: "busy".into()
            }))
            .await,
        Packet::Ok(_)
    ));
    // Alice posts to her group without pause; every new session named alice is a member
    // and receives those posts, but only after its SESSION_ACK.
    let stop = tokio_util::sync::CancellationToken::new();
    let posting = tokio::spawn({
        let stop = stop.clone();
        async move {
            let publish = Packet::Publish(Publish {
                scope: Scope::Group,
                channel: "busy".into(),
                body: Bytes::from_static(b"post"),
                ..Publish::default()
            });
            while !stop.is_cancelled() {
                for _ in 0..32 {
                    poster.send(1, Flags::NO_REPLY, &publish).await;
                }
                // Alice gets her own posts too: read them, or she is a slow consumer.
                while poster
                    .frame_within(Duration::from_millis(1))
                    .await
                    .is_some()
                {}
            }
            poster
        }
    });
    for _ in 0..1000 {
        let mut client = RawClient::connect(&server).await;
        let id = client.next_request_id();
        client
            .send(
                id,
                Flags::empty(),
                &Packet::SessionInit(switchboard_proto::packet::SessionInit {
                    name: "alice".into(),
                    ..Default::default()
                }),
            )
            .await;
        let first = client.next_packet().await.expect("a first frame");
        assert!(
            matches!(first, Packet::SessionAck(_)),
            "the first frame was {first:?}"
        );
    }
    stop.cancel();
    let _poster = posting.await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn connections_that_vanish_are_not_protocol_errors() {
    let server = start_server().await;
    let addr = server.tcp_addr().unwrap();
    // A session reset by its peer, a half-open connection reset before its preface, and
    // one closed without a word (a health check).
    let (session, _) = RawClient::connect_session(&server, "leaver").await;
    #[allow(deprecated)]
    session.stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(session);
    let half = TcpStream::connect(addr).await.unwrap();
    #[allow(deprecated)]
    half.set_linger(Some(Duration::ZERO)).unwrap();
    drop(half);
    drop(TcpStream::connect(addr).await.unwrap());
    assert!(eventually(PATIENCE, || stat(&server, "connections_current") == 0).await);
    assert_eq!(stat(&server, "protocol_errors"), 0);
    // A frame cut short is one, though. Nothing counts a connection gone before its
    // session, so there is no moment to wait for: the exact count below (one, not three)
    // is what shows the vanished connections were not counted, as the server handles
    // them, which needs only an end of stream, before this later session's frame.
    let (mut truncated, _) = RawClient::connect_session(&server, "truncated").await;
    truncated.send_raw(b"SB\x01").await;
    drop(truncated);
    assert!(eventually(PATIENCE, || stat(&server, "protocol_errors") >= 1).await);
    assert_eq!(stat(&server, "protocol_errors"), 1, "{:?}", server.stats());
    server.shutdown().await;
}

#[tokio::test]
async fn a_killed_slow_consumer_does_not_hold_up_shutdown_for_the_grace_period() {
    // The default grace of 5 s: a stuck writer must not be waited for that long.
    let server = start_server_with(|config| config.outbound_queue = 4).await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    publish(&mut publisher, "big", vec![b'x'; 1024 * 1024]).await;
    let (mut victim, _) = RawClient::connect_session(&server, "victim").await;
    match victim
        .request(Packet::Subscribe(Subscribe {
            pattern: "x".into(),
            replay: Replay::None,
        }))
        .await
    {
        Packet::SubscribeAck(_) => {}
        other => panic!("{other:?}"),
    }
    stall_on_own_replies(&server, &mut victim).await;
    publish(&mut publisher, "x", b"live".to_vec()).await;
    assert!(
        eventually(PATIENCE, || {
            stat(&server, "slow_consumers_disconnected") == 1
        })
        .await
    );
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    // Under the 5 s grace a stuck writer would cost, with room for a busy machine.
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
}

/// Subscribes `client` to `channel` and waits for the acknowledgement.
async fn subscribe(client: &mut RawClient, channel: &str) {
    match client
        .request(Packet::Subscribe(Subscribe {
            pattern: channel.into(),
            replay: Replay::None,
        }))
        .await
    {
        Packet::SubscribeAck(_) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_subscriber_that_stopped_reading_is_disconnected_under_the_default_bounds() {
    // Default bounds: 64 MiB of queued deliveries. 1 MiB bodies overflow that (plus what
    // the socket buffers hold) well within 128 publishes.
    let server = start_server().await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let (mut victim, _) = RawClient::connect_session(&server, "victim").await;
    subscribe(&mut victim, "x").await;
    let body = vec![b'x'; 1024 * 1024];
    let mut published = 0;
    while published < 128 && stat(&server, "slow_consumers_disconnected") == 0 {
        // Never held up by the stuck reader (which would be for ever): a bound of
        // seconds shows that and leaves room for a busy machine.
        let started = Instant::now();
        publish(&mut publisher, "x", body.clone()).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "publishing took {took:?}");
        published += 1;
    }
    assert!(
        eventually(PATIENCE, || {
            stat(&server, "slow_consumers_disconnected") == 1
                && stat(&server, "connections_current") == 1
        })
        .await,
        "the stuck reader is still connected after {published} MiB: {:?}",
        server.stats()
    );
    assert!(published > 64, "disconnected after only {published} MiB");
    server.shutdown().await;
}

#[tokio::test]
async fn a_burst_larger_than_the_socket_buffers_is_not_a_slow_consumer() {
    // 100 000 small messages (about 10 MB of frames) arrive while the subscriber is not
    // reading: more than the socket buffers hold, so the server queues tens of thousands
    // of them. A reader that then catches up must get every one.
    let server = start_server().await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    subscribe(&mut reader, "burst").await;
    const BURST: u64 = 100_000;
    for _ in 0..BURST {
        let id = publisher.next_request_id();
        let publish = Publish {
            channel: "burst".into(),
            body: Bytes::from_static(b"0123456789abcdef"),
            ..Publish::default()
        };
        publisher
            .send(id, Flags::NO_REPLY, &Packet::Publish(publish))
            .await;
    }
    publish(&mut publisher, "burst", b"last".to_vec()).await;
    let mut received = 0;
    while received < BURST + 1 {
        match reader.next_packet().await {
            Some(Packet::Message(_)) => received += 1,
            Some(_) => {}
            None => panic!(
                "disconnected after {received} messages: {:?}",
                server.stats()
            ),
        }
    }
    assert_eq!(stat(&server, "slow_consumers_disconnected"), 0);
    server.shutdown().await;
}
