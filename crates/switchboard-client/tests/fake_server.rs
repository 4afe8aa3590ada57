//! The client against a scripted fake server: a loopback listener that speaks the real
//! protocol through the proto crate's codec, so each test controls exactly which frames
//! the client sees and checks exactly which frames it sends.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use switchboard_client::{
    Client, ClientConfig, ClientError, CloseReason, ErrorCode, ErrorKind, EventKind, GroupItem,
    Payload, ReceivedMessage, Replay, Scope, Since, TryNoReply,
};
use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{
    BatchBodies, ChannelList, Chunk, DIGEST_LEN, Direct, Disconnect, ErrorPacket, Event, Heartbeat,
    Identity, Message, MessagesEnd, OkReply, Packet, Publish, PublishAck, SessionAck, SessionInit,
    StreamAbort, StreamStart, SubscribeAck, batch_request_id, features,
};
use switchboard_proto::{Flags, Frame, FrameCodec, Limits, MacKey, PROTOCOL_VERSION, Preface};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use uuid::Uuid;

/// How long a test waits for any single thing before failing.
const PATIENCE: Duration = Duration::from_secs(5);

const MIB: u64 = 1024 * 1024;
/// The `max_frame` the fake server announces unless a test says otherwise.
const MAX_FRAME: u32 = 1024 * 1024;

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

    /// Reads SESSION_INIT and accepts it, announcing 1 MiB frames and 4 MiB bodies.
    async fn open_session(&mut self, heartbeat_ms: u32) -> SessionInit {
        self.open_session_with(heartbeat_ms, MAX_FRAME, 4 * MIB)
            .await
    }

    /// Reads SESSION_INIT and accepts it with these limits.
    async fn open_session_with(
        &mut self,
        heartbeat_ms: u32,
        max_frame: u32,
        max_body: u64,
    ) -> SessionInit {
        self.open_session_announcing(heartbeat_ms, max_frame, max_body, 0)
            .await
    }

    /// Reads SESSION_INIT and accepts it with these limits and features.
    async fn open_session_announcing(
        &mut self,
        heartbeat_ms: u32,
        max_frame: u32,
        max_body: u64,
        features: u64,
    ) -> SessionInit {
        let (request_id, _, packet) = self.recv_request().await;
        let Packet::SessionInit(init) = packet else {
            panic!("expected SESSION_INIT, got {packet:?}");
        };
        let ack = SessionAck {
            client_id: 42,
            session_id: session_id(),
            heartbeat_ms,
            max_frame,
            max_body,
            software: "fake-server/0".into(),
            features,
            ..SessionAck::default()
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
    connected_with(config, heartbeat_ms, MAX_FRAME, 4 * MIB).await
}

/// A connected client, the server announcing these limits.
async fn connected_with(
    config: ClientConfig,
    heartbeat_ms: u32,
    max_frame: u32,
    max_body: u64,
) -> (Client, FakeServer, SessionInit) {
    connected_announcing(config, heartbeat_ms, max_frame, max_body, 0).await
}

/// A connected client, the server announcing these limits and features.
async fn connected_announcing(
    config: ClientConfig,
    heartbeat_ms: u32,
    max_frame: u32,
    max_body: u64,
    features: u64,
) -> (Client, FakeServer, SessionInit) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let key = config.hmac_key().map(<[u8]>::to_vec);
    let config = config.with_server(address);
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::accept(Box::new(stream), key.as_deref()).await;
        let init = server
            .open_session_announcing(heartbeat_ms, max_frame, max_body, features)
            .await;
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
    assert_eq!(client.session().client_id, 42);
    assert_eq!(client.session().session_id, session_id());
    assert_eq!(client.session().name, "alice");
    assert_eq!(client.session().limits.max_frame, 1024 * 1024);
    assert_eq!(client.session().limits.max_body, 4 * 1024 * 1024);
    assert_eq!(client.session().heartbeat, Duration::from_millis(2500));
    assert_eq!(client.session().server_software, "fake-server/0");
}

#[tokio::test]
async fn a_password_login_takes_the_name_and_user_the_server_gives() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut server = FakeServer::accept(Box::new(stream), None).await;
        let (request_id, _, packet) = server.recv_request().await;
        let Packet::SessionInit(init) = packet else {
            panic!("expected SESSION_INIT, got {packet:?}");
        };
        let ack = SessionAck {
            client_id: 7,
            session_id: session_id(),
            name: "alice".into(),
            user: "alice".into(),
            ..SessionAck::default()
        };
        server.send(request_id, Flags::empty(), ack).await;
        (server, init)
    };
    let config = ClientConfig::new(&address, "impostor")
        .with_password("alice", "wonderland")
        .with_jwt("unused-jwt");
    let (client, (_server, init)) = tokio::join!(Client::connect(config), server);
    let client = client.unwrap();
    assert_eq!(init.user, "alice");
    assert_eq!(&init.password[..], b"wonderland");
    assert_eq!(&init.jwt[..], b"unused-jwt");
    assert!(!format!("{init:?}").contains("wonderland"));
    assert_eq!(client.session().name, "alice");
    assert_eq!(client.session().user.as_deref(), Some("alice"));
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
        Err(error) if error.kind() == ErrorKind::Server => {
            assert_eq!(error.code(), Some(ErrorCode::AuthFailed));
            assert!(error.to_string().ends_with(": bad token"), "{error}");
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
                .publish("chat.rust", payload)
                .pipelined()
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
                .publish("load", Payload::text(&n.to_string()))
                .pipelined()
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
    assert_eq!(wildcard.subscription_ids(), [1]);
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
async fn a_subscription_of_several_patterns_hands_out_each_message_once() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let first = message("chat.general", 1, "Anyone here likes #Rust?");
    let script = async {
        let (_, pattern) = server.ack_subscribe(1, 0).await;
        assert_eq!(pattern, "chat.>");
        // Live through the first pattern before the second is subscribed...
        server.send(0, Flags::empty(), first.clone()).await;
        let (hashtag_request, pattern) = server.ack_subscribe(2, 1).await;
        assert_eq!(pattern, "#rust");
        // ...so the second pattern's replay holds it again.
        server
            .send(hashtag_request, Flags::REPLAY, first.clone())
            .await;
    };
    let (both, ()) = tokio::join!(
        client.subscribe("chat.>", Replay::Last(1)).pattern("#rust"),
        script
    );
    let mut both = both.unwrap();
    assert_eq!(both.subscription_ids(), [1, 2]);
    // Live, matching both patterns: one frame, one delivery.
    server
        .send(0, Flags::empty(), message("chat.general", 2, "#rust again"))
        .await;
    let seqs = [
        both.next().await.unwrap().unwrap().seq(),
        both.next().await.unwrap().unwrap().seq(),
    ];
    assert_eq!(seqs, [1, 2]);
    assert!(stays_quiet(&mut both).await);

    // Dropping it cancels both patterns on the server.
    drop(both);
    let mut cancelled = Vec::new();
    while cancelled.len() < 2 {
        let (_, _, packet) = server.recv_request().await;
        let Packet::Unsubscribe(request) = packet else {
            panic!("expected UNSUBSCRIBE, got {packet:?}");
        };
        cancelled.push(request.subscription_id);
    }
    cancelled.sort_unstable();
    assert_eq!(cancelled, [1, 2]);
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
        Err(error) if error.kind() == ErrorKind::Server => {
            assert_eq!(error.code(), Some(ErrorCode::AlreadyExists));
            assert!(error.to_string().ends_with(": chat exists"), "{error}");
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

    let fetching = client.tag_messages("#Rust", Since::All, Some(10));
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
        Err(error) if error.is_closed() => assert_eq!(error.close_reason(), Some(&expected)),
        other => panic!("expected the DISCONNECT reason, got {other:?}"),
    }
    // The subscription says why it ended, once, then ends.
    match subscription.next().await {
        Some(Err(error)) if error.is_closed() => {
            assert_eq!(error.close_reason(), Some(&expected));
        }
        other => panic!("expected the DISCONNECT reason, got {other:?}"),
    }
    assert!(subscription.next().await.is_none());
    assert_eq!(client.close_reason(), Some(expected));
    assert!(client.identity().await.unwrap_err().is_closed());
    client.close().await.unwrap();
}

#[tokio::test]
async fn failed_no_reply_publishes_surface_on_flush() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    client
        .publish("chat", Payload::text("fire and forget"))
        .no_reply()
        .await
        .unwrap();
    client
        .publish("chat", Payload::text("this one fails"))
        .no_reply()
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

    flush_reports_one_failure(&client, &mut server, ErrorCode::TooManyCharacters).await;
}

/// Flushes `client` (whose flush asks the fake server who it is, which is answered) and
/// checks that the flush reports exactly one failed publish without reply, with `code`.
async fn flush_reports_one_failure(client: &Client, server: &mut FakeServer, code: ErrorCode) {
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
        Err(error) if error.kind() == ErrorKind::NoReplyFailures => {
            assert!(error.to_string().starts_with("1 publish(es)"), "{error}");
            assert_eq!(error.code(), Some(code));
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
        Err(error) if error.close_reason() == Some(&CloseReason::HeartbeatTimeout) => {}
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
    assert_eq!(
        client.group_feed().unwrap_err().kind(),
        ErrorKind::FeedTaken
    );
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
    let mut directs = client.direct_feed().unwrap();
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
    assert!(client.list_channels().await.unwrap_err().is_closed());
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
    assert_eq!(client.unwrap().session().client_id, 42);
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

/// Checks that a publish was refused as too large, for `len` bytes against `max`.
fn assert_too_large<T: std::fmt::Debug>(result: Result<T, ClientError>, len: u64, max: u64) {
    match result {
        Err(error) if error.kind() == ErrorKind::TooLarge => {
            let expected = format!("body of {len} bytes is over the server's limit of {max}");
            assert_eq!(error.to_string(), expected);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn bodies_over_the_server_limit_are_refused_before_sending() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    // Over max_body (4 MiB): refused whole, streamed or not.
    let too_big = Payload::bytes(vec![0u8; 4 * 1024 * 1024 + 1]);
    let result = client.publish("chat", too_big).await;
    assert_too_large(result, 4 * MIB + 1, 4 * MIB);
    let endless = tokio::io::repeat(0).take(5 * MIB);
    let result = client
        .publish("chat", Payload::default())
        .stream_from(endless, 5 * MIB)
        .await;
    assert_too_large(result, 5 * MIB, 4 * MIB);
    // Sent without reply, a body must fit one frame (1 MiB).
    let over_a_frame = Payload::bytes(vec![0u8; 1024 * 1024 + 1]);
    let result = client.publish("chat", over_a_frame).no_reply().await;
    assert_too_large(result, MIB + 1, MIB);
    // A body read from a reader is streamed, so it needs its ack.
    let refused = client
        .publish("chat", Payload::default())
        .stream_from(&b"abc"[..], 3)
        .no_reply()
        .await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::InvalidArgument);
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

// ----- streamed bodies -----

/// A body whose bytes are not all alike, so that misplaced chunks would show.
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|n| (n % 251) as u8 ^ (n >> 16) as u8)
        .collect()
}

fn sha256(body: &[u8]) -> [u8; DIGEST_LEN] {
    Sha256::digest(body).into()
}

/// What the fake server received of a streamed publish.
struct ReceivedUpload {
    request_id: u32,
    publish: Publish,
    body: Vec<u8>,
    chunk_sizes: Vec<usize>,
    digest: [u8; DIGEST_LEN],
}

impl FakeServer {
    /// Reads a streamed PUBLISH and all its chunks, checking what the protocol requires
    /// of them on the way; frames of other kinds in between are returned too.
    async fn recv_upload(&mut self, max_frame: usize) -> (ReceivedUpload, Vec<Packet>) {
        let (request_id, flags, packet) = self.recv_request().await;
        let Packet::Publish(publish) = packet else {
            panic!("expected PUBLISH, got {packet:?}");
        };
        assert!(
            !flags.contains(Flags::NO_REPLY),
            "a streamed publish wants its ack"
        );
        let stream = publish
            .stream
            .expect("flag STREAM with stream id and length");
        let mut body = publish.body.to_vec();
        let mut chunk_sizes = Vec::new();
        let mut others = Vec::new();
        let digest = loop {
            let (chunk_request, _, packet) = self.recv_request().await;
            let chunk = match packet {
                Packet::Chunk(chunk) => chunk,
                other => {
                    others.push(other);
                    continue;
                }
            };
            assert_eq!(
                chunk_request, request_id,
                "a CHUNK carries the PUBLISH's id"
            );
            assert_eq!(chunk.stream_id, stream.stream_id);
            assert!(chunk.data.len() <= max_frame, "chunk over max_frame");
            chunk_sizes.push(chunk.data.len());
            body.extend_from_slice(&chunk.data);
            assert!(body.len() as u64 <= stream.total_len, "more than TOTAL_LEN");
            if let Some(digest) = chunk.digest {
                break digest;
            }
        };
        assert_eq!(
            body.len() as u64,
            stream.total_len,
            "the parts add up to TOTAL_LEN"
        );
        let upload = ReceivedUpload {
            request_id,
            publish,
            body,
            chunk_sizes,
            digest,
        };
        (upload, others)
    }

    /// Sends a streamed MESSAGE's body from byte `from` on (the MESSAGE carried the
    /// bytes before) in chunks of `size`, the digest of the whole body on the last.
    async fn send_chunks(
        &mut self,
        request_id: u32,
        stream_id: u64,
        body: &[u8],
        from: usize,
        size: usize,
    ) {
        let pieces: Vec<&[u8]> = body[from..].chunks(size).collect();
        for (n, piece) in pieces.iter().enumerate() {
            let last = n + 1 == pieces.len();
            let chunk = Chunk {
                stream_id,
                data: Bytes::copy_from_slice(piece),
                digest: last.then(|| sha256(body)),
            };
            self.send(request_id, Flags::empty(), chunk).await;
        }
    }
}

/// A MESSAGE opening stream `stream_id` for a body of `total_len` bytes.
fn streamed(channel: &str, seq: u64, stream_id: u64, total_len: u64) -> Message {
    Message {
        stream: Some(StreamStart {
            stream_id,
            total_len,
        }),
        content_type: "application/octet-stream".into(),
        ..message(channel, seq, "")
    }
}

async fn read_body(message: ReceivedMessage) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    message.body_reader().read_to_end(&mut body).await?;
    Ok(body)
}

#[tokio::test]
async fn a_streamed_publish_sends_bounded_chunks_and_the_digest() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let body = patterned(3 * 1024 * 1024 + 12_345);
    let total = body.len() as u64;
    let progress = std::sync::Mutex::new(Vec::new());
    let progress = std::sync::Arc::new(progress);
    let recorded = progress.clone();
    let publishing = client
        .publish("files.big", Payload::default())
        .content_type("application/x-test")
        .header("name", "big.bin")
        .stream_from(&body[..], total)
        .progress(move |sent| recorded.lock().unwrap().push(sent));
    let answering = async {
        let (upload, others) = server.recv_upload(MAX_FRAME as usize).await;
        assert!(others.is_empty());
        assert_eq!(upload.publish.channel, "files.big");
        assert_eq!(upload.publish.content_type, "application/x-test");
        assert_eq!(upload.publish.user_headers[0].1, "big.bin");
        assert_eq!(upload.publish.stream.unwrap().total_len, total);
        assert_eq!(upload.chunk_sizes, [1 << 20, 1 << 20, 1 << 20, 12_345]);
        assert_eq!(upload.digest, sha256(&upload.body));
        assert_eq!(upload.body, body);
        let ack = PublishAck {
            id: Uuid::now_v7(),
            seq: 12,
        };
        server.send(upload.request_id, Flags::empty(), ack).await;
    };
    let (ack, ()) = tokio::join!(publishing, answering);
    assert_eq!(ack.unwrap().seq, 12);
    let progress = progress.lock().unwrap().clone();
    assert_eq!(progress.last(), Some(&total));
    assert!(progress.is_sorted());
}

#[tokio::test]
async fn large_payloads_are_streamed_transparently_in_smaller_frames() {
    // The server takes 300 KiB per frame: chunks follow its limit, not the default.
    let max_frame = 300 * 1024;
    let (client, mut server, _) =
        connected_with(config("unused:1"), 5000, max_frame, 4 * MIB).await;
    let body = patterned(1024 * 1024);
    let payload = Payload::bytes(body.clone()).with_header("k", "v");
    let pipelined = client
        .publish("chat", payload.clone())
        .pipelined()
        .await
        .unwrap();
    let (upload, _) = server.recv_upload(max_frame as usize).await;
    assert_eq!(upload.body, body);
    assert_eq!(upload.chunk_sizes.len(), 4);
    assert_eq!(upload.publish.user_headers.len(), 1);
    let ack = PublishAck {
        id: Uuid::now_v7(),
        seq: 1,
    };
    server.send(upload.request_id, Flags::empty(), ack).await;
    assert_eq!(upload.request_id, pipelined.request_id());
    assert_eq!(pipelined.await.unwrap().seq, 1);

    let publishing = client.post("team", payload);
    let answering = async {
        let (upload, _) = server.recv_upload(max_frame as usize).await;
        assert_eq!(upload.publish.scope, Scope::Group);
        assert_eq!(upload.digest, sha256(&body));
        let ack = PublishAck {
            id: Uuid::now_v7(),
            seq: 2,
        };
        server.send(upload.request_id, Flags::empty(), ack).await;
    };
    let (ack, ()) = tokio::join!(publishing, answering);
    assert_eq!(ack.unwrap().seq, 2);
}

#[tokio::test]
async fn a_refused_stream_stops_sending_at_once() {
    let (client, mut server, _) =
        connected_with(config("unused:1"), 5000, MAX_FRAME, 1 << 40).await;
    let total = 512 * MIB;
    let publishing = client
        .publish("secret", Payload::default())
        .stream_from(tokio::io::repeat(7).take(total), total);
    let refusing = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Publish(_)));
        let refusal = ErrorPacket::new(ErrorCode::Forbidden, "not yours");
        server.send(request_id, Flags::empty(), refusal).await;
        request_id
    };
    let (result, request_id) = tokio::join!(publishing, refusing);
    match result {
        Err(error) if error.kind() == ErrorKind::Server => {
            assert_eq!(error.code(), Some(ErrorCode::Forbidden));
        }
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
    // What was already on its way arrives; then nothing more of the body, and no abort.
    let listing = client.list_channels();
    let draining = async {
        let mut chunk_bytes = 0u64;
        loop {
            let (id, _, packet) = server.recv_request().await;
            match packet {
                Packet::Chunk(chunk) => {
                    assert_eq!(id, request_id);
                    assert!(chunk.digest.is_none());
                    chunk_bytes += chunk.data.len() as u64;
                }
                Packet::ListChannels(_) => {
                    server
                        .send(id, Flags::empty(), ChannelList::default())
                        .await;
                    return chunk_bytes;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let (listed, chunk_bytes) = tokio::join!(listing, draining);
    listed.unwrap();
    assert!(
        chunk_bytes < 64 * MIB,
        "{chunk_bytes} bytes sent after the refusal"
    );
}

#[tokio::test]
async fn a_reader_of_the_wrong_length_aborts_the_stream() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let short = patterned(2 * 1024 * 1024);
    let publishing = client
        .publish("files", Payload::default())
        .stream_from(&short[..], 3 * MIB);
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        let Packet::Publish(publish) = packet else {
            panic!("expected PUBLISH, got {packet:?}");
        };
        let stream_id = publish.stream.unwrap().stream_id;
        let mut received = 0;
        loop {
            let (id, _, packet) = server.recv_request().await;
            assert_eq!(id, request_id);
            match packet {
                Packet::Chunk(chunk) => {
                    assert!(chunk.digest.is_none());
                    received += chunk.data.len();
                }
                Packet::StreamAbort(abort) => {
                    assert_eq!(abort.stream_id, stream_id);
                    assert_eq!(abort.code, ErrorCode::StreamAborted);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, short.len());
        // The server confirms; the client drops that answer.
        let confirmation = ErrorPacket::new(ErrorCode::StreamAborted, "aborted by the client");
        server.send(request_id, Flags::empty(), confirmation).await;
    };
    let (result, ()) = tokio::join!(publishing, answering);
    match result {
        Err(error) if error.kind() == ErrorKind::BodyLength => {
            let expected = format!("ended after {} of the {} bytes", 2 * MIB, 3 * MIB);
            assert!(error.to_string().contains(&expected), "{error}");
        }
        other => panic!("expected BodyTooShort, got {other:?}"),
    }

    // Too long: every byte announced is sent, but not the digest.
    let long = patterned(1024);
    let publishing = client
        .publish("files", Payload::default())
        .stream_from(&long[..], 1000);
    let answering = async {
        let (_, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Publish(_)));
        let (_, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::StreamAbort(_)), "got {packet:?}");
    };
    let (result, ()) = tokio::join!(publishing, answering);
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BodyLength);
    assert!(
        error.to_string().contains("longer than the 1000 bytes"),
        "{error}"
    );

    // The connection carries on.
    let listing = client.list_channels();
    let answering = async {
        let (request_id, _, _) = server.recv_request().await;
        server
            .send(request_id, Flags::empty(), ChannelList::default())
            .await;
    };
    let (listed, ()) = tokio::join!(listing, answering);
    assert!(listed.unwrap().is_empty());
}

#[tokio::test]
async fn streamed_messages_arrive_through_interleaved_chunks() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let (files, _) = tokio::join!(
        client.subscribe("files.>", Replay::None),
        server.ack_subscribe(1, 0)
    );
    let (logs, _) = tokio::join!(
        client.subscribe("logs", Replay::None),
        server.ack_subscribe(2, 0)
    );
    let (mut files, mut logs) = (files.unwrap(), logs.unwrap());
    let big = patterned(3 * 1024 * 1024 + 7);
    let small = patterned(5000);

    let serving = async {
        server
            .send(
                0,
                Flags::empty(),
                streamed("files.a", 1, 5, big.len() as u64),
            )
            .await;
        let big_chunks: Vec<&[u8]> = big.chunks(1024 * 1024).collect();
        let chunk = |n: usize| Chunk {
            stream_id: 5,
            data: Bytes::copy_from_slice(big_chunks[n]),
            digest: (n + 1 == big_chunks.len()).then(|| sha256(&big)),
        };
        server.send(0, Flags::empty(), chunk(0)).await;
        server
            .send(0, Flags::empty(), message("logs", 1, "between"))
            .await;
        server.send(0, Flags::empty(), Heartbeat).await;
        // A second stream starts and ends while the first is still going; its MESSAGE
        // carries the first part of its body.
        let mut second = streamed("files.b", 2, 6, small.len() as u64);
        second.body = Bytes::copy_from_slice(&small[..1000]);
        server.send(0, Flags::empty(), second).await;
        server.send(0, Flags::empty(), chunk(1)).await;
        server.send_chunks(0, 6, &small, 1000, 1500).await;
        server.send(0, Flags::empty(), chunk(2)).await;
        server.send(0, Flags::empty(), chunk(3)).await;
    };
    let reading = async {
        let first = files.next().await.unwrap().unwrap();
        assert!(first.is_streamed());
        assert_eq!(first.body_len(), big.len() as u64);
        assert_eq!(first.channel(), "files.a");
        let first_body = read_body(first).await.unwrap();
        let second = files.next().await.unwrap().unwrap();
        assert_eq!(second.channel(), "files.b");
        (first_body, read_body(second).await.unwrap())
    };
    let ((), (first_body, second_body)) = tokio::join!(serving, reading);
    assert!(first_body == big, "the first body came back intact");
    assert!(second_body.len() == small.len() && sha256(&second_body) == sha256(&small));
    let between = logs.next().await.unwrap().unwrap();
    assert_eq!(between.text(), Some("between"));
    assert!(!between.is_streamed());
}

#[tokio::test]
async fn a_large_body_flows_with_backpressure_and_a_dropped_one_does_not_stall() {
    let config = config("unused:1").with_subscription_capacity(2);
    let (client, mut server, _) = connected_with(config, 5000, 8 * 1024 * 1024, 1 << 30).await;
    let (files, _) = tokio::join!(
        client.subscribe("files", Replay::None),
        server.ack_subscribe(1, 0)
    );
    let mut files = files.unwrap();
    // Five times the client's buffer, read slowly.
    let body = patterned(5 * switchboard_client::BODY_BUFFER_BYTES);
    let serving = async {
        server
            .send(
                0,
                Flags::empty(),
                streamed("files", 1, 1, body.len() as u64),
            )
            .await;
        server.send_chunks(0, 1, &body, 0, 2 * 1024 * 1024).await;
        server
            .send(0, Flags::empty(), message("files", 2, "after"))
            .await;
        // The next one is dropped unread: its chunks must not hold up what follows.
        server
            .send(
                0,
                Flags::empty(),
                streamed("files", 3, 2, body.len() as u64),
            )
            .await;
        server.send_chunks(0, 2, &body, 0, 1024 * 1024).await;
        server
            .send(0, Flags::empty(), message("files", 4, "last"))
            .await;
    };
    let reading = async {
        let message = files.next().await.unwrap().unwrap();
        let mut reader = message.body_reader();
        let mut received = Vec::new();
        while let Some(part) = reader.chunk().await.unwrap() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            received.extend_from_slice(&part);
        }
        assert!(received == body);
        let after = files.next().await.unwrap().unwrap();
        assert_eq!(after.text(), Some("after"));
        drop(files.next().await.unwrap().unwrap());
        files.next().await.unwrap().unwrap()
    };
    let ((), last) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(serving, reading)
    })
    .await
    .expect("no stall");
    assert_eq!(last.text(), Some("last"));
}

#[tokio::test]
async fn broken_streams_fail_the_read() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    // A digest that does not match.
    let fetching = client.get_message("files", None);
    let answering = async {
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::GetMessage(_)));
        server
            .send(request_id, Flags::REPLAY, streamed("files", 1, 1, 6))
            .await;
        let chunk = Chunk {
            stream_id: 1,
            data: Bytes::from_static(b"abcdef"),
            digest: Some(sha256(b"abcdeX")),
        };
        server.send(request_id, Flags::empty(), chunk).await;
    };
    let (message, ()) = tokio::join!(fetching, answering);
    let message = message.unwrap().unwrap();
    assert!(message.is_replay());
    let error = read_body(message).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);

    // An abort from the server.
    let fetching = client.get_message("files", None);
    let answering = async {
        let (request_id, _, _) = server.recv_request().await;
        server
            .send(request_id, Flags::REPLAY, streamed("files", 1, 2, 6))
            .await;
        let abort = StreamAbort {
            stream_id: 2,
            code: ErrorCode::Internal,
            reason: "storage failed".into(),
        };
        server.send(request_id, Flags::empty(), abort).await;
    };
    let (message, ()) = tokio::join!(fetching, answering);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    let error = message
        .unwrap()
        .unwrap()
        .save_body_to(&path, |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(!path.exists(), "nothing of a broken stream is left behind");

    // The connection ends half way.
    let fetching = client.get_message("files", None);
    let answering = async {
        let (request_id, _, _) = server.recv_request().await;
        server
            .send(request_id, Flags::REPLAY, streamed("files", 1, 3, 6))
            .await;
        let chunk = Chunk {
            stream_id: 3,
            data: Bytes::from_static(b"abc"),
            digest: None,
        };
        server.send(request_id, Flags::empty(), chunk).await;
        server
    };
    let (message, server) = tokio::join!(fetching, answering);
    let message = message.unwrap().unwrap();
    drop(server);
    let error = read_body(message).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
}

#[tokio::test]
async fn fetched_lists_keep_receiving_bodies_after_their_end() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let body = patterned(2 * 1024 * 1024 + 3);
    let fetching = client.get_messages("files", Since::All, None);
    let answering = async {
        let (request_id, _, _) = server.recv_request().await;
        server
            .send(request_id, Flags::REPLAY, message("files", 1, "small"))
            .await;
        server
            .send(
                request_id,
                Flags::REPLAY,
                streamed("files", 2, 8, body.len() as u64),
            )
            .await;
        let end = MessagesEnd {
            count: 2,
            last_seq: 2,
        };
        server.send(request_id, Flags::empty(), end).await;
        request_id
    };
    let (messages, request_id) = tokio::join!(fetching, answering);
    let mut messages = messages.unwrap();
    assert_eq!(messages.len(), 2);
    assert!(!messages[0].is_streamed());
    let streamed_message = messages.pop().unwrap();
    assert!(streamed_message.is_streamed());
    let sending = server.send_chunks(request_id, 8, &body, 0, 1024 * 1024);
    let (received, ()) = tokio::join!(read_body(streamed_message), sending);
    assert!(received.unwrap() == body);
}

#[tokio::test]
async fn closing_does_not_wait_for_unread_bodies() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let (files, _) = tokio::join!(
        client.subscribe("files", Replay::None),
        server.ack_subscribe(1, 0)
    );
    let mut files = files.unwrap();
    let body = patterned(3 * switchboard_client::BODY_BUFFER_BYTES);
    let serving = async {
        server
            .send(
                0,
                Flags::empty(),
                streamed("files", 1, 1, body.len() as u64),
            )
            .await;
        server.send_chunks(0, 1, &body, 0, 1024 * 1024).await;
        let (request_id, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Identify(_)), "the close's flush");
        let identity = Identity {
            client_id: 42,
            ..Identity::default()
        };
        server.send(request_id, Flags::empty(), identity).await;
        let (_, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Disconnect(_)));
    };
    let closing = async {
        // Held, never read: its buffer fills and the connection waits for it...
        let unread = files.next().await.unwrap().unwrap();
        // ...until the client closes.
        client.close().await.unwrap();
        read_body(unread).await.unwrap_err()
    };
    let ((), error) = tokio::time::timeout(PATIENCE, async { tokio::join!(serving, closing) })
        .await
        .expect("close does not wait for the unread body");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
}

#[tokio::test]
async fn try_no_reply_queues_without_waiting_and_hands_back_a_full_queue() {
    let config = config("unused:1").with_send_queue_capacity(2);
    let (client, mut server, _) = connected(config, 60_000).await;
    // One body shared by every publish: the socket fills up, not the test's memory.
    let body = Bytes::from(vec![7u8; 512 * 1024]);
    let mut queued = 0u32;
    let sending = loop {
        assert!(queued < 1000, "the send queue never filled up");
        match client
            .publish("bulk", Payload::bytes(body.clone()))
            .try_no_reply()
            .unwrap()
        {
            TryNoReply::Queued => queued += 1,
            TryNoReply::Full(wait) => {
                // Full only until the writer task has run; full for good once the
                // socket is, since the server reads nothing: backpressure holds.
                let mut sending = Box::pin(wait.send());
                let patience = Duration::from_millis(200);
                if tokio::time::timeout(patience, &mut sending).await.is_err() {
                    break sending;
                }
                queued += 1;
            }
        }
    };
    assert!(queued > 0);
    let reading = async {
        let mut ids = Vec::new();
        while ids.len() < queued as usize + 1 {
            let (request_id, flags, packet) = server.recv_request().await;
            assert!(flags.contains(Flags::NO_REPLY));
            let Packet::Publish(publish) = packet else {
                panic!("expected a PUBLISH, got {packet:?}");
            };
            assert_eq!(publish.body.len(), body.len());
            ids.push(request_id);
        }
        ids
    };
    let (sent, ids) = tokio::join!(sending, reading);
    sent.unwrap();
    // In the order they were queued, the one that waited last.
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    drop(server);
    client.close().await.unwrap();
    let after_close = client
        .publish("bulk", Payload::text("late"))
        .try_no_reply()
        .unwrap_err();
    assert!(after_close.is_closed(), "{after_close}");
}

#[tokio::test]
async fn a_large_message_whose_body_was_changed_on_the_way_is_refused() {
    let (client, mut server, _) = connected(config("unused:1"), 5000).await;
    let (subscription, _) = tokio::join!(
        client.subscribe("big", Replay::None),
        server.ack_subscribe(1, 0)
    );
    let mut subscription = subscription.unwrap();

    let body = patterned(64 * 1024);
    let mut sound = message("big", 1, "");
    sound.body = Bytes::from(body.clone());
    server.send(0, Flags::empty(), sound).await;
    let received = subscription.next().await.unwrap().unwrap();
    assert!(
        received.body()[..] == body[..],
        "the sound message arrives whole"
    );

    // The same message with one byte of its body changed, its prefix sent first, so
    // that the rest is read into a buffer of its own.
    let mut changed = message("big", 2, "");
    changed.body = Bytes::from(body);
    let mut frame = bytes::BytesMut::new();
    server
        .framed
        .codec()
        .encode_packet(0, Flags::empty(), &Packet::Message(changed), &mut frame)
        .unwrap();
    let last = frame.len() - 1;
    frame[last - 1000] ^= 0x01;
    let raw = server.framed.get_mut();
    raw.write_all(&frame[..100]).await.unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.write_all(&frame[100..]).await.unwrap();
    raw.flush().await.unwrap();

    match tokio::time::timeout(PATIENCE, subscription.next()).await {
        Ok(Some(Err(error))) => assert!(
            matches!(error.close_reason(), Some(CloseReason::Protocol(_))),
            "{error:?}"
        ),
        other => panic!("expected the connection to close as corrupt, got {other:?}"),
    }
}

/// The publishes of `count` frames without reply: (request id, body) in order, and how
/// many frames carried them.
async fn received_publishes(server: &mut FakeServer, count: usize) -> (Vec<(u32, Bytes)>, usize) {
    let mut publishes = Vec::new();
    let mut frames = 0;
    while publishes.len() < count {
        let (request_id, flags, packet) = server.recv_request().await;
        let Packet::Publish(publish) = packet else {
            panic!("expected PUBLISH, got {packet:?}");
        };
        assert!(flags.contains(Flags::NO_REPLY));
        assert_eq!(publish.channel, "ticks");
        assert_eq!(publish.content_type, "text/plain; charset=utf-8");
        frames += 1;
        if flags.contains(Flags::BATCH) {
            for (index, body) in BatchBodies::new(&publish.body).enumerate() {
                publishes.push((batch_request_id(request_id, index as u32), body));
            }
        } else {
            publishes.push((request_id, publish.body));
        }
    }
    (publishes, frames)
}

#[tokio::test]
async fn publishes_without_reply_share_frames_only_with_a_server_that_takes_batches() {
    const COUNT: usize = 300;
    // With an HMAC key, whose tag follows the content, frames are never appended to.
    let keyed = || config("unused:1").with_hmac_key(b"shared secret".to_vec());
    for (config, features, batched) in [
        (config("unused:1"), 0, false),
        (config("unused:1"), features::PUBLISH_BATCH, true),
        (keyed(), features::PUBLISH_BATCH, false),
    ] {
        let (client, mut server, _) =
            connected_announcing(config, 5000, MAX_FRAME, 4 * MIB, features).await;
        for n in 0..COUNT {
            client
                .publish("ticks", Payload::text(&n.to_string()))
                .no_reply()
                .await
                .unwrap();
        }
        // A body over the batch bound, and one to another channel, go in frames of
        // their own.
        client
            .publish("ticks", Payload::text(&"x".repeat(5000)))
            .no_reply()
            .await
            .unwrap();
        client
            .publish("other", Payload::text("elsewhere"))
            .no_reply()
            .await
            .unwrap();
        let (publishes, frames) = received_publishes(&mut server, COUNT + 1).await;
        for (n, (_, body)) in publishes.iter().take(COUNT).enumerate() {
            assert_eq!(body, n.to_string().as_bytes());
        }
        assert_eq!(publishes[COUNT].1.len(), 5000);
        let ids: Vec<u32> = publishes.iter().map(|(id, _)| *id).collect();
        assert!(
            ids.windows(2)
                .all(|pair| pair[1] == batch_request_id(pair[0], 1)),
            "consecutive ids: {ids:?}"
        );
        // In a frame of its own (a batch of one, or a plain PUBLISH).
        let (_, _, packet) = server.recv_request().await;
        assert!(matches!(packet, Packet::Publish(publish) if publish.channel == "other"));
        if batched {
            assert!(frames < COUNT / 10, "{frames} frames for {COUNT} publishes");
        } else {
            assert_eq!(frames, COUNT + 1);
        }
    }
}

#[tokio::test]
async fn a_failed_publish_of_a_batch_surfaces_on_flush() {
    let (client, mut server, _) = connected_announcing(
        config("unused:1"),
        5000,
        MAX_FRAME,
        4 * MIB,
        features::PUBLISH_BATCH,
    )
    .await;
    for n in 0..10 {
        client
            .publish("ticks", Payload::text(&n.to_string()))
            .no_reply()
            .await
            .unwrap();
    }
    let (publishes, _) = received_publishes(&mut server, 10).await;
    let refusal = ErrorPacket::new(ErrorCode::TooManyCharacters, "too long");
    server.send(publishes[6].0, Flags::empty(), refusal).await;
    flush_reports_one_failure(&client, &mut server, ErrorCode::TooManyCharacters).await;
}
