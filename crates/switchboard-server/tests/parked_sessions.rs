//! Sessions parked without a task of their own (idle between frames for a moment) are
//! served as if they had one: their heartbeat deadline, a JWT's expiry, the
//! slow-consumer kill switch, a reload, shutdown, live deliveries and their next request
//! all reach them. Each test first waits until the server reports the session parked
//! (`sessions_parked`), so that it is the parked path that is tested. Real server, real
//! sockets.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{RawClient, WAIT, eventually, start_server, start_server_with, stat};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{Identify, Packet, Publish, SessionInit, Subscribe};
use switchboard_server::security::{JwtAlgorithm, JwtSpec, SecurityConfig, UserSpec};
use switchboard_server::{ServerConfig, ServerHandle};

/// Waits until the server has `count` sessions parked.
async fn parked(server: &ServerHandle, count: u64) {
    assert!(
        eventually(WAIT, || stat(server, "sessions_parked") == count).await,
        "expected {count} parked sessions: {:?}",
        server.stats()
    );
}

async fn subscribe(client: &mut RawClient, channel: &str) {
    let subscribe = Subscribe {
        pattern: channel.into(),
        replay: Default::default(),
    };
    match client.request(Packet::Subscribe(subscribe)).await {
        Packet::SubscribeAck(_) => {}
        other => panic!("expected SUBSCRIBE_ACK, got {other:?}"),
    }
}

async fn publish(client: &mut RawClient, channel: &str, body: Bytes) {
    let publish = Publish {
        channel: channel.into(),
        body,
        ..Publish::default()
    };
    match client.request(Packet::Publish(publish)).await {
        Packet::PublishAck(_) => {}
        other => panic!("expected PUBLISH_ACK, got {other:?}"),
    }
}

/// The DISCONNECT that ended a session, once the server closed it.
async fn goodbye(client: &mut RawClient) -> (ErrorCode, String) {
    let packets = tokio::time::timeout(WAIT * 2, client.until_closed())
        .await
        .expect("the session is closed");
    match packets.last() {
        Some(Packet::Disconnect(goodbye)) => (goodbye.code, goodbye.reason.to_string()),
        _ => panic!("expected a DISCONNECT last, got {packets:?}"),
    }
}

#[tokio::test]
async fn a_parked_session_is_closed_at_its_heartbeat_deadline() {
    let server = start_server().await;
    let mut client = RawClient::connect(&server).await;
    let opened = Instant::now();
    // Three heartbeats of 400 ms: closed 1.2 s after its last byte.
    client.open("quiet", 400).await;
    parked(&server, 1).await;
    let (code, reason) = goodbye(&mut client).await;
    let lived = opened.elapsed();
    assert_eq!(code, ErrorCode::HeartbeatTimeout, "{reason}");
    assert!(
        lived >= Duration::from_millis(1200),
        "closed after {lived:?}, before its deadline"
    );
    assert!(lived < Duration::from_secs(3), "closed after {lived:?}");
    assert_eq!(stat(&server, "heartbeat_timeouts"), 1);
    assert!(eventually(WAIT, || stat(&server, "connections_current") == 0).await);
    assert_eq!(stat(&server, "sessions_parked"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_session_is_kept_by_its_heartbeats() {
    let server = start_server().await;
    let mut client = RawClient::connect(&server).await;
    client.open("beating", 200).await;
    // Heartbeats every 300 ms, each after the session parked: it lives past its first
    // deadline (600 ms) several times over.
    for _ in 0..6 {
        parked(&server, 1).await;
        client
            .send(
                0,
                switchboard_proto::Flags::empty(),
                &Packet::Heartbeat(switchboard_proto::packet::Heartbeat),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(matches!(
        client.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    assert_eq!(stat(&server, "heartbeat_timeouts"), 0);
    server.shutdown().await;
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
}

#[tokio::test]
async fn a_parked_jwt_session_is_closed_when_its_token_expires() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let security = SecurityConfig {
        jwt: Some(JwtSpec {
            algorithm: JwtAlgorithm::ES256,
            secret_file: None,
            public_key_file: Some(fixtures.join("es256.pub")),
            issuer: None,
            audience: None,
            user_claim: None,
            roles_claim: None,
            leeway_seconds: Some(0),
        }),
        ..SecurityConfig::default()
    };
    let server = start_server_with(|config| config.security = security).await;
    let exp = now_secs() + 2;
    let claims = serde_json::json!({ "sub": "carol", "exp": exp });
    let pem = std::fs::read(fixtures.join("es256.key")).expect("the key");
    let key = EncodingKey::from_ec_pem(&pem).expect("an EC key");
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("jwt");
    let mut client = RawClient::connect(&server).await;
    let init = SessionInit {
        name: "carol".into(),
        jwt: Bytes::from(token),
        ..SessionInit::default()
    };
    let opened = Instant::now();
    // The heartbeat (5 s by default, 15 s without a byte) is not what ends it.
    match client.request(Packet::SessionInit(init)).await {
        Packet::SessionAck(_) => {}
        other => panic!("expected SESSION_ACK, got {other:?}"),
    }
    parked(&server, 1).await;
    let (code, reason) = goodbye(&mut client).await;
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(reason, "token expired");
    let lived = opened.elapsed();
    assert!(lived < Duration::from_secs(4), "closed after {lived:?}");
    assert!(now_secs() >= exp, "not before the expiry");
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_subscriber_that_does_not_read_is_disconnected_as_a_slow_consumer() {
    let server = start_server_with(|config| config.outbound_queue_bytes = 1024 * 1024).await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let (mut victim, _) = RawClient::connect_session(&server, "victim").await;
    subscribe(&mut victim, "x").await;
    parked(&server, 2).await;
    let body = Bytes::from(vec![b'x'; 256 * 1024]);
    let mut published = 0;
    while published < 400 && stat(&server, "slow_consumers_disconnected") == 0 {
        publish(&mut publisher, "x", body.clone()).await;
        published += 1;
    }
    // Counted as the session closes, which a parked session does only once its kill
    // switch gave it a task again.
    assert!(
        eventually(WAIT, || {
            stat(&server, "slow_consumers_disconnected") == 1
                && stat(&server, "connections_current") == 1
        })
        .await,
        "the stuck reader is still connected after {published} publishes: {:?}",
        server.stats()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_reload_reaches_a_parked_session() {
    let server = start_server().await;
    let (mut anonymous, _) = RawClient::connect_session(&server, "anon").await;
    parked(&server, 1).await;
    // Credentials are required from now on: the anonymous session is no longer accepted.
    let mut with_users = ServerConfig::default();
    with_users.security.users.push(UserSpec {
        name: "carol".to_owned(),
        password: None,
        roles: Vec::new(),
    });
    server.reload(&with_users).expect("reload");
    let (code, reason) = goodbye(&mut anonymous).await;
    assert_eq!(code, ErrorCode::AuthFailed);
    assert!(reason.contains("no longer accepted"), "{reason}");
    assert_eq!(stat(&server, "sessions_ended_by_reload"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_every_parked_session_with_shutting_down() {
    let server = start_server().await;
    let mut clients = Vec::new();
    for index in 0..3 {
        let (client, _) = RawClient::connect_session(&server, &format!("idle-{index}")).await;
        clients.push(client);
    }
    parked(&server, 3).await;
    let started = Instant::now();
    let ends = async {
        let mut ends = Vec::new();
        for client in &mut clients {
            ends.push(goodbye(client).await);
        }
        ends
    };
    let ((), ends) = tokio::join!(server.shutdown(), ends);
    for (code, reason) in ends {
        assert_eq!(code, ErrorCode::ShuttingDown, "{reason}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(stat(&server, "sessions_parked"), 0);
}

#[tokio::test]
async fn a_parked_subscriber_gets_live_messages_and_stays_parked() {
    let server = start_server().await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let (mut subscriber, _) = RawClient::connect_session(&server, "subscriber").await;
    subscribe(&mut subscriber, "news").await;
    parked(&server, 2).await;
    for index in 0..3u8 {
        publish(&mut publisher, "news", Bytes::from(vec![index; 16])).await;
        match subscriber.next_packet().await {
            Some(Packet::Message(message)) => assert_eq!(message.body.as_ref(), [index; 16]),
            other => panic!("expected a MESSAGE, got {other:?}"),
        }
        // Deliveries go through the writer: the subscriber's read side stays parked.
        assert!(stat(&server, "sessions_parked") >= 1);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_session_answers_its_next_request_and_parks_again() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "sleeper").await;
    for _ in 0..3 {
        parked(&server, 1).await;
        let started = Instant::now();
        match client.request(Packet::Identify(Identify)).await {
            Packet::Identity(identity) => assert_eq!(identity.name.as_str(), "sleeper"),
            other => panic!("expected IDENTITY, got {other:?}"),
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
    }
    server.shutdown().await;
}

/// A session parks as soon as it goes quiet after its first request (its opening: a
/// SUBSCRIBE here), without waiting the 100 ms that later quiet moments wait.
#[tokio::test]
async fn a_session_parks_at_once_after_its_first_request() {
    const LINGER: Duration = Duration::from_millis(100);
    let server = start_server().await;
    let mut clients = Vec::new();
    let mut fastest = Duration::MAX;
    // Three sessions, one after another: a stall of the machine may delay one look at
    // the gauge past the linger, not all three.
    for index in 0..3u64 {
        let (mut client, _) = RawClient::connect_session(&server, &format!("quick-{index}")).await;
        subscribe(&mut client, &format!("quick.{index}")).await;
        let acked = Instant::now();
        parked(&server, index + 1).await;
        fastest = fastest.min(acked.elapsed());
        clients.push(client);
    }
    assert!(
        fastest < LINGER,
        "parked {fastest:?} after its first request at the soonest"
    );
    server.shutdown().await;
}

/// Many sessions parked at once (on unix their sockets out of the runtime's reactor,
/// watched by the parking task): some are woken by a burst of deliveries, which each
/// gets whole and in order, some by their own request, some by their peer leaving; the
/// rest are ended by shutdown. Each kind parks again (or is gone) afterwards.
#[tokio::test]
async fn many_parked_sessions_wake_by_delivery_by_request_by_their_peer_leaving_and_at_shutdown() {
    const SESSIONS: usize = 90;
    const BURST: u64 = 64;
    let server = start_server().await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    let mut clients = Vec::new();
    for index in 0..SESSIONS {
        let (mut client, _) = RawClient::connect_session(&server, &format!("many-{index}")).await;
        subscribe(&mut client, &format!("many.{index}")).await;
        clients.push(client);
    }
    parked(&server, SESSIONS as u64 + 1).await;

    // Woken by deliveries: a burst to every third session, published without waiting
    // for each acknowledgement.
    let mut sent = 0;
    for index in (0..SESSIONS).step_by(3) {
        for seq in 1..=BURST {
            let publish = Packet::Publish(Publish {
                channel: format!("many.{index}").into(),
                body: Bytes::copy_from_slice(&seq.to_le_bytes()),
                ..Publish::default()
            });
            let id = publisher.next_request_id();
            publisher
                .send(id, switchboard_proto::Flags::empty(), &publish)
                .await;
            sent += 1;
        }
    }
    let mut acked = 0;
    while acked < sent {
        match publisher.next_packet().await {
            Some(Packet::PublishAck(_)) => acked += 1,
            other => panic!("expected PUBLISH_ACK, got {other:?}"),
        }
    }
    for index in (0..SESSIONS).step_by(3) {
        let client = &mut clients[index];
        for seq in 1..=BURST {
            match client.next_packet().await {
                Some(Packet::Message(message)) => {
                    assert_eq!(message.seq, seq, "session {index}");
                    assert_eq!(message.body.as_ref(), seq.to_le_bytes(), "session {index}");
                }
                other => panic!("session {index}: expected MESSAGE {seq}, got {other:?}"),
            }
        }
    }

    // Woken by their own request.
    for index in (1..SESSIONS).step_by(3) {
        match clients[index].request(Packet::Identify(Identify)).await {
            Packet::Identity(identity) => {
                assert_eq!(identity.name.as_str(), format!("many-{index}"));
            }
            other => panic!("session {index}: expected IDENTITY, got {other:?}"),
        }
    }
    parked(&server, SESSIONS as u64 + 1).await;

    // Woken by their peer leaving: closed without a word while parked.
    let mut left = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        if index % 3 == 2 {
            drop(client);
        } else {
            left.push(client);
        }
    }
    let open = left.len() as u64 + 1;
    assert!(
        eventually(WAIT, || stat(&server, "connections_current") == open).await,
        "{:?}",
        server.stats()
    );
    parked(&server, open).await;

    // The rest, ended by shutdown while parked.
    let ends = async {
        let mut ends = Vec::new();
        for client in &mut left {
            ends.push(goodbye(client).await);
        }
        ends
    };
    let ((), ends) = tokio::join!(server.shutdown(), ends);
    for (code, reason) in ends {
        assert_eq!(code, ErrorCode::ShuttingDown, "{reason}");
    }
    assert_eq!(stat(&server, "sessions_parked"), 0);
}

/// A session on the Unix socket parks too (on unix its socket leaves the runtime's
/// reactor like a TCP one), and is woken by deliveries and by its own requests.
#[cfg(unix)]
#[tokio::test]
async fn a_parked_unix_socket_session_gets_its_deliveries_and_is_answered() {
    use futures::StreamExt;
    use switchboard_client::{Client, ClientConfig, Payload, Replay};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hub.sock");
    let server = switchboard_server::Server::builder()
        .listen_tcp("127.0.0.1:0")
        .listen_unix(&path)
        .start()
        .await
        .expect("server starts");
    let local = Client::connect(ClientConfig::new(
        format!("unix:{}", path.display()),
        "local",
    ))
    .await
    .expect("connects over the Unix socket");
    let mut subscription = local
        .subscribe("over.unix", Replay::None)
        .await
        .expect("subscribes");
    parked(&server, 1).await;
    let (mut publisher, _) = RawClient::connect_session(&server, "publisher").await;
    for index in 1..=3u8 {
        publish(
            &mut publisher,
            "over.unix",
            Bytes::from(vec![b'0' + index; 4]),
        )
        .await;
        let message = tokio::time::timeout(WAIT, subscription.next())
            .await
            .expect("delivered in time")
            .expect("the subscription goes on")
            .expect("a message");
        assert_eq!(message.seq(), u64::from(index));
        assert_eq!(message.body().as_ref(), [b'0' + index; 4]);
    }
    parked(&server, 2).await;
    local
        .publish("over.unix.back", Payload::text("from a parked session"))
        .await
        .expect("answered");
    server.shutdown().await;
}
