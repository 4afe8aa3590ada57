//! The client against a scripted fake server: a loopback listener that speaks the real
//! protocol through the proto crate's codec, so each test controls exactly which frames
//! the client sees and checks exactly which frames it sends.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use switchboard_client::{
    Client, ClientConfig, ClientError, CloseReason, ErrorCode, EventKind, GroupItem, Payload,
    Replay, Scope, Since,
};
use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{
    ChannelList, Direct, Disconnect, ErrorPacket, Event, Heartbeat, Identity, Message, MessagesEnd,
    OkReply, Packet, PublishAck, SessionAck, SessionInit, SubscribeAck,
};
use switchboard_proto::{Flags, Frame, FrameCodec, Limits, MacKey, PROTOCOL_VERSION, Preface};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use uuid::Uuid;

/// How long a test waits for any single thing before failing.
const PATIENCE: Duration = Duration::from_secs(5);

trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// The server side of one connection.
struct FakeServer {
    framed: Framed<Box<dyn Transport>, FrameCodec>,
}

impl FakeServer {
    /// Reads and checks the client's preface, answers with ours.
    async fn accept(mut stream: Box<dyn Transport>, key: Option<&[u8]>) -> FakeServer {
        let mut preface = [0u8; 10];
        stream.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, Preface::encode(PROTOCOL_VERSION), "client preface");
        stream
            .write_all(&Preface::encode(PROTOCOL_VERSION))
            .await
            .unwrap();
        let codec = FrameCodec::new(Limits::default()).with_mac_key(key.map(MacKey::new));
        FakeServer {
            framed: Framed::new(stream, codec),
        }
    }

    /// The next frame from the client.
    async fn recv(&mut self) -> Frame {
        tokio::time::timeout(PATIENCE, self.framed.next())
            .await
            .expect("client sent nothing")
            .expect("client closed the connection")
            .expect("client sent a bad frame")
    }

    /// The next frame that is not one of the client's own heartbeats, as a packet.
    async fn recv_request(&mut self) -> (u32, Flags, Packet) {
        loop {
            let frame = self.recv().await;
            let packet = Packet::from_frame(&frame).unwrap();
            if !matches!(packet, Packet::Heartbeat(_)) {
                return (frame.request_id, frame.flags, packet);
            }
        }
    }

    async fn send(&mut self, request_id: u32, flags: Flags, packet: impl Into<Packet>) {
        let outbound = Outbound {
            request_id,
            flags,
            packet: packet.into(),
        };
        self.framed.send(outbound).await.unwrap();
    }

    /// Reads SESSION_INIT and accepts it.
    async fn open_session(&mut self, heartbeat_ms: u32) -> SessionInit {
        let (request_id, _, packet) = self.recv_request().await;
        let Packet::SessionInit(init) = packet else {
            panic!("expected SESSION_INIT, got {packet:?}");
        };
        let ack = SessionAck {
            client_id: 42,
            session_id: session_id(),
            heartbeat_ms,
            max_frame: 1024 * 1024,
            max_body: 4 * 1024 * 1024,
            software: "fake-server/0".into(),
        };
        self.send(request_id, Flags::empty(), ack).await;
        init
    }

    /// Reads a SUBSCRIBE and acknowledges it; returns its request id and pattern.
    async fn ack_subscribe(&mut self, subscription_id: u64, replay_count: u64) -> (u32, String) {
        let (request_id, _, packet) = self.recv_request().await;
        let Packet::Subscribe(subscribe) = packet else {
            panic!("expected SUBSCRIBE, got {packet:?}");
        };
        let ack = SubscribeAck {
            subscription_id,
            replay_count,
        };
        self.send(request_id, Flags::empty(), ack).await;
        (request_id, subscribe.pattern.to_string())
    }

    /// Whether the client closed its side (the next read ends).
    async fn closed_by_client(&mut self) -> bool {
        loop {
            match tokio::time::timeout(PATIENCE, self.framed.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn session_id() -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
}

fn config(address: &str) -> ClientConfig {
    ClientConfig::new(address, "alice").with_request_timeout(PATIENCE)
}

/// A connected client and the fake server's end of its connection.
async fn connected(config: ClientConfig, heartbeat_ms: u32) -> (Client, FakeServer, SessionInit) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let key = config.hmac_key().map(<[u8]>::to_vec);
    let config = config.with_server(address);
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::accept(Box::new(stream), key.as_deref()).await;
        let init = server.open_session(heartbeat_ms).await;
        (server, init)
    };
    let (client, (server, init)) = tokio::join!(Client::connect(config), server);
    (client.unwrap(), server, init)
}

fn message(channel: &str, seq: u64, body: &str) -> Message {
    Message {
        channel: channel.into(),
        id: Uuid::now_v7(),
        seq,
        time_us: 1_700_000_000_000_000,
        sender_id: 7,
        sender_name: "bob".into(),
        content_type: "text/plain; charset=utf-8".into(),
        body: Bytes::from(body.to_owned()),
        ..Message::default()
    }
}

/// Whether a subscription stays quiet for a moment.
async fn stays_quiet<S: futures::Stream + Unpin>(stream: &mut S) -> bool {
    tokio::time::timeout(Duration::from_millis(100), stream.next())
        .await
        .is_err()
}

#[tokio::test]
async fn handshake_sends_preface_and_session_init() {
    let config = config("unused:1")
        .with_heartbeat(Duration::from_millis(2500))
        .with_credentials(Bytes::from_static(b"token"));
    let (client, _server, init) = connected(config, 2500).await;
    assert_eq!(init.name, "alice");
    assert_eq!(init.heartbeat_ms, 2500);
    assert_eq!(&init.credentials[..], b"token");
    assert!(init.software.starts_with("switchboard-client/"));
    assert_eq!(client.client_id(), 42);
    assert_eq!(client.session_id(), session_id());
    assert_eq!(client.name(), "alice");
    assert_eq!(client.server_limits().max_frame, 1024 * 1024);
    assert_eq!(client.server_limits().max_body, 4 * 1024 * 1024);
    assert_eq!(client.heartbeat(), Duration::from_millis(2500));
    assert_eq!(client.server_software(), "fake-server/0");
}

#[tokio::test]
async fn refused_session_is_a_server_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::accept(Box::new(stream), None).await;
        let (request_id, _, _) = server.recv_request().await;
        let refusal = ErrorPacket::new(ErrorCode::AuthFailed, "bad token");
        server.send(request_id, Flags::empty(), refusal).await;
    };
    let (result, ()) = tokio::join!(Client::connect(config(&address)), server);
    match result {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::AuthFailed);
            assert_eq!(message, "bad token");
        }
        other => panic!("expected AUTH_FAILED, got {other:?}"),
    }
}

#[tokio::test]
async fn pipelined_acks_are_routed_by_request_id() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let mut pending = Vec::new();
    for n in 0..3 {
        let payload = Payload::text(&format!("message {n}")).with_header("n", n.to_string());
        pending.push(
            client
                .publish_pipelined("chat.rust", payload)
                .await
                .unwrap(),
        );
    }
    let mut requests = Vec::new();
    for n in 0..3u64 {
        let (request_id, flags, packet) = server.recv_request().await;
        let Packet::Publish(publish) = packet else {
            panic!("expected PUBLISH, got {packet:?}");
        };
        assert_eq!(flags, Flags::empty());
        assert_eq!(publish.channel, "chat.rust");
        assert_eq!(publish.scope, Scope::Channel);
        assert_eq!(publish.content_type, "text/plain; charset=utf-8");
        assert_eq!(publish.user_headers[0].1, n.to_string().as_str());
        requests.push((request_id, n));
    }
    // Answered out of order: each ack must still find its own publish.
    for (request_id, n) in requests.iter().rev() {
        let ack = PublishAck {
            id: Uuid::now_v7(),
            seq: 100 + n,
        };
        server.send(*request_id, Flags::empty(), ack).await;
    }
    for (n, ack) in pending.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap().seq, 100 + n as u64);
    }

    let publishing = client.publish("chat.rust", Payload::bytes(vec![1, 2, 3]));
    let answering = async {
        let (request_id, _, _) = server.recv_request().await;
        let ack = PublishAck {
            id: Uuid::now_v7(),
            seq: 7,
        };
        server.send(request_id, Flags::empty(), ack).await;
    };
    let (ack, ()) = tokio::join!(publishing, answering);
    assert_eq!(ack.unwrap().seq, 7);
}

#[tokio::test]
async fn many_acks_in_flight_all_resolve() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let mut acks = FuturesUnordered::new();
    for n in 0..500 {
        acks.push(
            client
                .publish_pipelined("load", Payload::text(&n.to_string()))
                .await
                .unwrap(),
        );
    }
    for seq in 1..=500 {
        let (request_id, _, _) = server.recv_request().await;
        let ack = PublishAck {
            id: Uuid::now_v7(),
            seq,
        };
        server.send(request_id, Flags::empty(), ack).await;
    }
    let mut seqs = Vec::new();
    while let Some(ack) = acks.next().await {
        seqs.push(ack.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
}

#[tokio::test]
async fn live_messages_reach_each_matching_subscription_once() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;

    let subscribing = client.subscribe("chat.*", Replay::Last(1));
    let (wildcard, (wildcard_request, pattern)) =
        tokio::join!(subscribing, server.ack_subscribe(1, 1));
    let mut wildcard = wildcard.unwrap();
    assert_eq!(pattern, "chat.*");
    assert_eq!(wildcard.subscription_id(), 1);
    assert_eq!(wildcard.replay_count(), 1);

    let mut others = Vec::new();
    for (id, pattern) in [(2, "chat.rust"), (3, "#rust"), (4, "news")] {
        let (subscription, _) = tokio::join!(
            client.subscribe(pattern, Replay::None),
            server.ack_subscribe(id, 0)
        );
        others.push(subscription.unwrap());
    }

    // The replayed message carries the wildcard's request id: it is for it alone, even
    // though the exact subscription matches its channel too.
    let replayed = message("chat.rust", 1, "old news");
    server.send(wildcard_request, Flags::REPLAY, replayed).await;
    // Sent once, for three matching subscriptions.
    let live = message("chat.rust", 2, "hello #Rust");
    server.send(0, Flags::empty(), live).await;

    let first = wildcard.next().await.unwrap().unwrap();
    assert_eq!((first.seq(), first.is_replay()), (1, true));
    let second = wildcard.next().await.unwrap().unwrap();
    assert_eq!((second.seq(), second.is_replay()), (2, false));
    assert_eq!(second.text(), Some("hello #Rust"));
    assert_eq!(second.sender_name(), "bob");
    assert!(stays_quiet(&mut wildcard).await);

    let [exact, tag, news] = &mut others[..] else {
        unreachable!()
    };
    for subscription in [&mut *exact, &mut *tag] {
        let received = subscription.next().await.unwrap().unwrap();
        assert_eq!((received.seq(), received.is_replay()), (2, false));
        assert!(stays_quiet(subscription).await);
    }
    assert!(stays_quiet(news).await);
}

#[tokio::test]
async fn server_errors_keep_their_code() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let creating = client.create_channel("chat", Default::default());
    let refusing = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::CreateChannel(_)));
        let refusal = ErrorPacket::new(ErrorCode::AlreadyExists, "chat exists");
        server.send(request_id, Flags::empty(), refusal).await;
    };
    let (result, ()) = tokio::join!(creating, refusing);
    match result {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::AlreadyExists);
            assert_eq!(message, "chat exists");
        }
        other => panic!("expected ALREADY_EXISTS, got {other:?}"),
    }

    // NOT_FOUND answering GET_MESSAGE is an empty answer, not a failure.
    let fetching = client.get_message("chat", None);
    let refusing = async {
        let (request_id, _, _) = server.recv_request().await;
        let refusal = ErrorPacket::new(ErrorCode::NotFound, "empty");
        server.send(request_id, Flags::empty(), refusal).await;
    };
    let (result, ()) = tokio::join!(fetching, refusing);
    assert_eq!(result.unwrap(), None);
}

#[tokio::test]
async fn history_fetches_gather_until_messages_end() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let fetching = client.get_messages("chat", Since::Seq(5), Some(2));
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        let Packet::GetMessages(request) = packet else {
            panic!("expected GET_MESSAGES, got {packet:?}");
        };
        assert_eq!(request.since, Since::Seq(5));
        assert_eq!(request.limit, Some(2));
        for seq in [5, 6] {
            let history = message("chat", seq, "old");
            server.send(request_id, Flags::REPLAY, history).await;
        }
        let end = MessagesEnd {
            count: 2,
            last_seq: 9,
        };
        server.send(request_id, Flags::empty(), end).await;
    };
    let (messages, ()) = tokio::join!(fetching, answering);
    let seqs: Vec<u64> = messages.unwrap().iter().map(|m| m.seq()).collect();
    assert_eq!(seqs, [5, 6]);

    let fetching = client.tag_messages("#Rust", Some(10));
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        let Packet::GetMessages(request) = packet else {
            panic!("expected GET_MESSAGES, got {packet:?}");
        };
        assert_eq!(request.scope, Scope::Tag);
        assert_eq!(request.channel, "rust");
        let end = MessagesEnd {
            count: 0,
            last_seq: 0,
        };
        server.send(request_id, Flags::empty(), end).await;
    };
    let (messages, ()) = tokio::join!(fetching, answering);
    assert!(messages.unwrap().is_empty());
}

#[tokio::test]
async fn disconnect_fails_pending_requests_with_its_reason() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let (subscription, _) = tokio::join!(
        client.subscribe("chat", Replay::None),
        server.ack_subscribe(1, 0)
    );
    let mut subscription = subscription.unwrap();

    let listing = client.list_channels();
    let hanging_up = async {
        let (_, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::ListChannels(_)));
        let goodbye = Disconnect::new(ErrorCode::ShuttingDown, "maintenance");
        server.send(0, Flags::empty(), goodbye).await;
        drop(server);
    };
    let (result, ()) = tokio::join!(listing, hanging_up);
    let expected = CloseReason::Disconnect {
        code: ErrorCode::ShuttingDown,
        reason: "maintenance".into(),
    };
    match result {
        Err(ClientError::ConnectionClosed { reason }) => assert_eq!(reason, expected),
        other => panic!("expected the DISCONNECT reason, got {other:?}"),
    }
    // The subscription says why it ended, once, then ends.
    match subscription.next().await {
        Some(Err(ClientError::ConnectionClosed { reason })) => assert_eq!(reason, expected),
        other => panic!("expected the DISCONNECT reason, got {other:?}"),
    }
    assert!(subscription.next().await.is_none());
    assert_eq!(client.close_reason(), Some(expected));
    assert!(client.identity().await.unwrap_err().is_connection_closed());
    client.close().await.unwrap();
}

#[tokio::test]
async fn failed_no_reply_publishes_surface_on_flush() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    client
        .publish_no_reply("chat", Payload::text("fire and forget"))
        .await
        .unwrap();
    client
        .publish_no_reply("chat", Payload::text("this one fails"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (request_id, flags, packet) = server.recv_request().await;
        assert!(flags.contains(Flags::NO_REPLY));
        assert!(matches!(packet, Packet::Publish(_)));
        ids.push(request_id);
    }
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|&id| id != 0));
    let refusal = ErrorPacket::new(ErrorCode::TooManyCharacters, "too long");
    server.send(ids[1], Flags::empty(), refusal).await;

    let flushing = client.flush();
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Identify(_)));
        let identity = Identity {
            client_id: 42,
            name: "alice".into(),
            session_id: session_id(),
            connected_since_us: 0,
        };
        server.send(request_id, Flags::empty(), identity).await;
    };
    let (flushed, ()) = tokio::join!(flushing, answering);
    match flushed {
        Err(ClientError::NoReplyFailures { count, first }) => {
            assert_eq!(count, 1);
            assert_eq!(first.code(), Some(ErrorCode::TooManyCharacters));
        }
        other => panic!("expected the failed publish, got {other:?}"),
    }
}

#[tokio::test]
async fn heartbeats_are_sent_answered_and_missed() {
    let (client, mut server, _) = connected(config("unused:1"), 100).await;
    server.send(9, Flags::empty(), Heartbeat).await;
    let (mut pings, mut pong) = (0, None);
    while pong.is_none() || pings == 0 {
        let frame = server.recv().await;
        if let Packet::Heartbeat(_) = Packet::from_frame(&frame).unwrap() {
            if frame.flags.contains(Flags::PONG) {
                pong = Some(frame.request_id);
            } else {
                pings += 1;
            }
        }
    }
    assert_eq!(pong, Some(9), "the PONG echoes the ping's request id");

    // Silence from now on: after three intervals the client gives up on the server.
    let waiting = client.list_channels();
    let result = tokio::time::timeout(PATIENCE, waiting).await.unwrap();
    match result {
        Err(ClientError::ConnectionClosed {
            reason: CloseReason::HeartbeatTimeout,
        }) => {}
        other => panic!("expected a heartbeat timeout, got {other:?}"),
    }
    drop(server);
}

#[tokio::test]
async fn hmac_sessions_tag_every_frame() {
    let config = config("unused:1").with_hmac_key(b"shared secret".to_vec());
    let (client, mut server, _) = connected(config, 5000).await;
    let listing = client.list_channels();
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::ListChannels(_)));
        server
            .send(request_id, Flags::empty(), ChannelList::default())
            .await;
    };
    let (channels, ()) = tokio::join!(listing, answering);
    assert!(channels.unwrap().is_empty());
}

#[tokio::test]
async fn feeds_buffer_pushes_until_taken() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let mut posted = message("team", 3, "hi team");
    posted.scope = Scope::Group;
    server.send(0, Flags::empty(), posted).await;
    let mut joined = Event::new(EventKind::MemberJoined);
    joined.scope = Scope::Group;
    joined.channel = "team".into();
    joined.subject = "carol".into();
    server.send(0, Flags::empty(), joined).await;
    let direct = Direct {
        sender_id: 7,
        sender_name: "bob".into(),
        time_us: 0,
        content_type: "application/json".into(),
        body: Bytes::from_static(br#"{"ping":1}"#),
    };
    server.send(0, Flags::empty(), direct).await;

    let mut group = client.group_feed().unwrap();
    assert!(matches!(
        client.group_feed(),
        Err(ClientError::FeedTaken(_))
    ));
    match group.next().await {
        Some(GroupItem::Message(message)) => {
            assert_eq!(message.channel(), "team");
            assert_eq!(message.scope(), Scope::Group);
        }
        other => panic!("expected the group message, got {other:?}"),
    }
    match group.next().await {
        Some(GroupItem::Event(event)) => {
            assert_eq!(event.kind, EventKind::MemberJoined);
            assert_eq!(event.subject, "carol");
        }
        other => panic!("expected the join, got {other:?}"),
    }
    let mut directs = client.directs().unwrap();
    let received = directs.next().await.unwrap();
    assert_eq!(received.sender_id(), 7);
    let value: serde_json::Value = received.decode().unwrap();
    assert_eq!(value["ping"], 1);
    drop(group);
    assert!(
        client.group_feed().is_ok(),
        "a released feed can be taken again"
    );
}

#[tokio::test]
async fn unsubscribing_and_dropping_cancel_on_the_server() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let (kept, _) = tokio::join!(
        client.subscribe("a", Replay::None),
        server.ack_subscribe(11, 0)
    );
    let (dropped, _) = tokio::join!(
        client.subscribe("b", Replay::None),
        server.ack_subscribe(12, 0)
    );

    let unsubscribing = kept.unwrap().unsubscribe();
    let confirming = async {
        let (request_id, _, packet) = server.recv_request().await;
        let Packet::Unsubscribe(request) = packet else {
            panic!("expected UNSUBSCRIBE, got {packet:?}");
        };
        assert_eq!(request.subscription_id, 11);
        server.send(request_id, Flags::empty(), OkReply).await;
    };
    let (result, ()) = tokio::join!(unsubscribing, confirming);
    result.unwrap();

    drop(dropped);
    let (_, _, packet) = server.recv_request().await;
    let Packet::Unsubscribe(request) = packet else {
        panic!("expected UNSUBSCRIBE, got {packet:?}");
    };
    assert_eq!(request.subscription_id, 12);
}

#[tokio::test]
async fn close_flushes_and_says_goodbye() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let closing = client.close();
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Identify(_)));
        let identity = Identity {
            client_id: 42,
            ..Identity::default()
        };
        server.send(request_id, Flags::empty(), identity).await;
        let (_, _, packet) = server.recv_request().await;
        let Packet::Disconnect(goodbye) = packet else {
            panic!("expected DISCONNECT, got {packet:?}");
        };
        assert_eq!(goodbye.code, ErrorCode::Normal);
        assert!(server.closed_by_client().await);
    };
    let (closed, ()) = tokio::join!(closing, answering);
    closed.unwrap();
    assert_eq!(client.close_reason(), Some(CloseReason::Client));
    assert!(
        client
            .list_channels()
            .await
            .unwrap_err()
            .is_connection_closed()
    );
}

#[tokio::test]
async fn dropping_the_last_handle_says_goodbye() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    drop(client);
    let (_, _, packet) = server.recv_request().await;
    assert!(matches!(packet, Packet::Disconnect(_)));
    assert!(server.closed_by_client().await);
}

#[cfg(unix)]
#[tokio::test]
async fn unix_sockets_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let config = config(&format!("unix:{}", path.display()));
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::accept(Box::new(stream), None).await;
        server.open_session(5000).await;
        server
    };
    let (client, _server) = tokio::join!(Client::connect(config), server);
    assert_eq!(client.unwrap().client_id(), 42);
}

#[tokio::test]
async fn a_slow_subscriber_slows_the_connection_but_loses_nothing() {
    let config = config("unused:1").with_subscription_capacity(2);
    let (client, mut server, _) = connected(config, 5000).await;
    let (subscription, _) = tokio::join!(
        client.subscribe("ticks", Replay::None),
        server.ack_subscribe(1, 0)
    );
    let mut subscription = subscription.unwrap();
    for seq in 1..=20 {
        server
            .send(0, Flags::empty(), message("ticks", seq, "tick"))
            .await;
    }
    // Queued behind the messages the subscriber has not read yet: it is answered once
    // the subscriber catches up, not dropped and not reordered.
    let listing = client.list_channels();
    let answering = async {
        let (request_id, _, _) = server.recv_request().await;
        server
            .send(request_id, Flags::empty(), ChannelList::default())
            .await;
    };
    let reading = async {
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seqs.push(subscription.next().await.unwrap().unwrap().seq());
        }
        seqs
    };
    let (listed, (), seqs) = tokio::join!(listing, answering, reading);
    assert!(listed.unwrap().is_empty());
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn bodies_over_the_server_limit_are_refused_before_sending() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let too_big = Payload::bytes(vec![0u8; 1024 * 1024 + 1]);
    match client.publish("chat", too_big).await {
        Err(ClientError::TooLarge { len, max }) => {
            assert_eq!((len, max), (1024 * 1024 + 1, 1024 * 1024));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Nothing went out: the next frame the server sees is the next request.
    let listing = client.list_channels();
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::ListChannels(_)));
        server
            .send(request_id, Flags::empty(), ChannelList::default())
            .await;
    };
    let (listed, ()) = tokio::join!(listing, answering);
    assert!(listed.unwrap().is_empty());
}
