//! Limits per address, per user and per role, and reloading them: a real server on a
//! loopback port, raw sockets, and a hand-moved clock for rates (no sleeping).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{RawClient, WAIT, stat};
use switchboard_proto::packet::{
    CreateChannel, CreateGroup, DeleteChannel, ErrorPacket, Identify, Packet, Publish, Relay,
    SessionInit, Subscribe,
};
use switchboard_proto::{ErrorCode, FrameCodec, Limits, PREFACE_LEN, PROTOCOL_VERSION, Preface};
use switchboard_server::security::limits::{AddressLimits, LimitSpec, ManualClock};
use switchboard_server::security::permissions::{ChannelRule, GroupRules, Rule};
use switchboard_server::security::{RoleSpec, SecurityConfig, UserSpec};
use switchboard_server::{Server, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::Decoder;

/// A server whose anonymous sessions take the role `guest`, which may do everything but
/// the admin operations, with these limits.
fn guest_config(limits: LimitSpec) -> SecurityConfig {
    let mut security = SecurityConfig::default();
    let everything = || Rule {
        allow: vec![">".to_owned(), "#*".to_owned()],
        deny: Vec::new(),
    };
    security.roles.insert(
        "guest".to_owned(),
        RoleSpec {
            publish: everything(),
            subscribe: everything(),
            history: everything(),
            relay: Rule {
                allow: vec!["*".to_owned()],
                deny: Vec::new(),
            },
            create_channel: ChannelRule {
                allow: vec![">".to_owned()],
                ..ChannelRule::default()
            },
            groups: GroupRules {
                create: everything(),
                join: everything(),
                post: everything(),
                read: everything(),
            },
            limits,
            ..RoleSpec::default()
        },
    );
    security.anonymous_role = Some("guest".to_owned());
    security
}

async fn start(clock: &Arc<ManualClock>, change: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .admin_token("secret-admin")
        .clock(clock.clone())
        .configure(change)
        .start()
        .await
        .expect("server starts")
}

/// Connects from `source` (an address of the loopback network), sends the preface and
/// SESSION_INIT, and returns the first frame the server answers with.
async fn open_from(server: &ServerHandle, source: &str, name: &str) -> (TcpStream, Packet) {
    let addr = server.tcp_addr().expect("tcp address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse::<SocketAddr>().expect("source"))
        .expect("bind the source address");
    let mut stream = socket.connect(addr).await.expect("connect");
    let mut codec = FrameCodec::new(Limits::default());
    let mut out = BytesMut::new();
    out.extend_from_slice(&Preface::encode(PROTOCOL_VERSION));
    let init = SessionInit {
        name: name.into(),
        ..SessionInit::default()
    };
    codec
        .encode_packet(1, Default::default(), &Packet::SessionInit(init), &mut out)
        .expect("encode");
    stream.write_all(&out).await.expect("write");
    let mut preface = [0u8; PREFACE_LEN];
    tokio::time::timeout(WAIT, stream.read_exact(&mut preface))
        .await
        .expect("preface in time")
        .expect("server preface");
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(frame) = codec.decode(&mut buf).expect("frame") {
            break frame;
        }
        let read = tokio::time::timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(read > 0, "closed without an answer");
    };
    (stream, Packet::from_frame(&frame).expect("packet"))
}

fn refused(packet: &Packet) -> &ErrorPacket {
    match packet {
        Packet::Error(error) => error,
        other => panic!("expected an ERROR, got {other:?}"),
    }
}

async fn session(server: &ServerHandle, name: &str) -> RawClient {
    RawClient::connect_session(server, name).await.0
}

async fn publish(client: &mut RawClient, channel: &str, body: &str) -> Packet {
    client
        .request(Packet::Publish(Publish {
            channel: channel.into(),
            body: body.to_owned().into(),
            ..Publish::default()
        }))
        .await
}

/// Loopback addresses are exempt from the per-address limits unless `limit_loopback`
/// says otherwise: local clients and benchmarks open as many connections as they need.
#[tokio::test]
async fn loopback_is_exempt_from_the_per_address_limits_by_default() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.limits.per_address = AddressLimits {
            connections_per_ip: 1,
            new_connections_per_second: 1,
            new_connection_burst: 1,
            ..AddressLimits::default()
        };
    })
    .await;
    let mut held = Vec::new();
    for i in 0..3 {
        let (stream, answer) = open_from(&server, "127.0.0.1", &format!("local{i}")).await;
        assert!(matches!(answer, Packet::SessionAck(_)), "{answer:?}");
        held.push(stream);
    }
    assert_eq!(stat(&server, "connections_refused_per_ip"), 0);
    assert_eq!(stat(&server, "connections_rate_limited_per_ip"), 0);
    server.shutdown().await;
}

/// One address at its connection limit is refused with LIMIT_REACHED before its
/// handshake; another address, and the sessions already open, are still served.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_address_at_its_connection_limit_is_refused_and_others_are_served() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.limits.per_address = AddressLimits {
            connections_per_ip: 3,
            limit_loopback: true,
            ..AddressLimits::default()
        };
    })
    .await;
    let mut held = Vec::new();
    for i in 0..3 {
        let (stream, answer) = open_from(&server, "127.0.0.1", &format!("held{i}")).await;
        assert!(matches!(answer, Packet::SessionAck(_)), "{answer:?}");
        held.push(stream);
    }
    let (_, answer) = open_from(&server, "127.0.0.1", "one-too-many").await;
    let error = refused(&answer);
    assert_eq!(error.code, ErrorCode::LimitReached);
    assert!(
        error.message.contains("127.0.0.1 has 3 connections open"),
        "{}",
        error.message
    );
    assert_eq!(stat(&server, "connections_refused_per_ip"), 1);

    // Another address of the loopback network is served as usual.
    let (_, answer) = open_from(&server, "127.0.0.2", "elsewhere").await;
    assert!(matches!(answer, Packet::SessionAck(_)), "{answer:?}");

    // Once one of the three goes, the address may open another.
    drop(held.pop());
    assert!(
        common::eventually(WAIT, || stat(&server, "connections_current") == 2).await,
        "the dropped session closes"
    );
    let (_, answer) = open_from(&server, "127.0.0.1", "again").await;
    assert!(matches!(answer, Packet::SessionAck(_)), "{answer:?}");
    server.shutdown().await;
}

/// New connections from one address beyond its rate and burst are refused with
/// RATE_LIMITED and a retry hint; once the clock moves on, one more is accepted.
#[tokio::test]
async fn new_connections_from_one_address_are_rate_limited() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.limits.per_address = AddressLimits {
            connections_per_ip: 0,
            new_connections_per_second: 2,
            new_connection_burst: 2,
            limit_loopback: true,
        };
    })
    .await;
    let mut held = Vec::new();
    for i in 0..2 {
        let (stream, answer) = open_from(&server, "127.0.0.1", &format!("c{i}")).await;
        assert!(matches!(answer, Packet::SessionAck(_)), "{answer:?}");
        held.push(stream);
    }
    let (_, answer) = open_from(&server, "127.0.0.1", "c2").await;
    let error = refused(&answer);
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert_eq!(error.code.as_u16(), 111);
    assert!(
        error.message.ends_with("retry in 500 ms"),
        "{}",
        error.message
    );
    assert_eq!(stat(&server, "connections_rate_limited_per_ip"), 1);
    clock.advance(Duration::from_millis(500));
    let (_, answer) = open_from(&server, "127.0.0.1", "c3").await;
    assert!(matches!(answer, Packet::SessionAck(_)), "{answer:?}");
    server.shutdown().await;
}

/// A role's publish rate allows its burst at once, then refuses with RATE_LIMITED
/// saying when to retry; after that long, publishing goes on.
#[tokio::test]
async fn publishes_are_limited_to_the_roles_rate_after_its_burst() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.security = guest_config(LimitSpec {
            publishes_per_second: Some(10),
            publish_burst: Some(3),
            ..LimitSpec::default()
        });
        config.limits.per_address = AddressLimits::default();
    })
    .await;
    let mut alice = session(&server, "alice").await;
    for i in 0..3 {
        let ack = publish(&mut alice, "news", &format!("m{i}")).await;
        assert!(matches!(ack, Packet::PublishAck(_)), "{ack:?}");
    }
    let answer = publish(&mut alice, "news", "one too many").await;
    let error = refused(&answer);
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert_eq!(
        error.message.as_str(),
        "publish rate of 10 per second (burst 3) reached; retry in 100 ms"
    );
    assert_eq!(stat(&server, "rate_limited"), 1);
    // Other requests have a rate of their own.
    assert!(matches!(
        alice.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    clock.advance(Duration::from_millis(100));
    let ack = publish(&mut alice, "news", "later").await;
    assert!(matches!(ack, Packet::PublishAck(_)), "{ack:?}");
    server.shutdown().await;
}

/// Relays count against their sender: one sender over its rate is refused while
/// another sender, and the receiver, are served.
#[tokio::test]
async fn relays_count_against_their_sender() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.security = guest_config(LimitSpec {
            relays_per_second: Some(1),
            relay_burst: Some(2),
            ..LimitSpec::default()
        });
    })
    .await;
    let (mut receiver, receiver_ack) = RawClient::connect_session(&server, "receiver").await;
    let mut noisy = session(&server, "noisy").await;
    let mut quiet = session(&server, "quiet").await;
    let relay = || {
        Packet::Relay(Relay {
            receivers: vec![receiver_ack.client_id],
            body: "hi".into(),
            ..Relay::default()
        })
    };
    for _ in 0..2 {
        let answer = noisy.request(relay()).await;
        assert!(matches!(answer, Packet::RelayResult(_)), "{answer:?}");
    }
    let answer = noisy.request(relay()).await;
    assert_eq!(refused(&answer).code, ErrorCode::RateLimited);
    assert!(
        refused(&answer).message.ends_with("retry in 1000 ms"),
        "{answer:?}"
    );
    let answer = quiet.request(relay()).await;
    assert!(matches!(answer, Packet::RelayResult(_)), "{answer:?}");
    assert!(matches!(
        receiver.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    server.shutdown().await;
}

/// A role's caps on channels, groups and subscriptions refuse the next one with
/// LIMIT_REACHED, and a deleted channel gives its place back.
#[tokio::test]
async fn channel_group_and_subscription_caps_hold_and_are_given_back() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.security = guest_config(LimitSpec {
            max_channels: Some(2),
            max_groups: Some(1),
            max_subscriptions: Some(2),
            ..LimitSpec::default()
        });
    })
    .await;
    let mut alice = session(&server, "alice").await;
    let create = |name: &str| {
        Packet::CreateChannel(CreateChannel {
            name: name.into(),
            ..CreateChannel::default()
        })
    };
    assert!(matches!(
        alice.request(create("a")).await,
        Packet::ChannelInfo(_)
    ));
    // Publishing to a channel nobody created creates it, and counts too.
    assert!(matches!(
        publish(&mut alice, "b", "x").await,
        Packet::PublishAck(_)
    ));
    let answer = alice.request(create("c")).await;
    assert_eq!(refused(&answer).code, ErrorCode::LimitReached);
    assert_eq!(
        refused(&answer).message.as_str(),
        "a user may hold at most 2 channels"
    );
    let answer = publish(&mut alice, "d", "x").await;
    assert_eq!(refused(&answer).code, ErrorCode::LimitReached);
    let deleted = alice
        .request(Packet::DeleteChannel(DeleteChannel { name: "a".into() }))
        .await;
    assert!(matches!(deleted, Packet::Ok(_)), "{deleted:?}");
    assert!(matches!(
        alice.request(create("c")).await,
        Packet::ChannelInfo(_)
    ));

    let group = |name: &str| {
        Packet::CreateGroup(CreateGroup {
            name: name.into(),
            ..CreateGroup::default()
        })
    };
    assert!(matches!(alice.request(group("g1")).await, Packet::Ok(_)));
    let answer = alice.request(group("g2")).await;
    assert_eq!(refused(&answer).code, ErrorCode::LimitReached);

    let subscribe = |pattern: &str| {
        Packet::Subscribe(Subscribe {
            pattern: pattern.into(),
            ..Subscribe::default()
        })
    };
    for pattern in ["x", "#tag"] {
        let answer = alice.request(subscribe(pattern)).await;
        assert!(matches!(answer, Packet::SubscribeAck(_)), "{answer:?}");
    }
    let answer = alice.request(subscribe("y.*")).await;
    assert_eq!(refused(&answer).code, ErrorCode::LimitReached);
    assert_eq!(stat(&server, "limit_refusals"), 4);
    server.shutdown().await;
}

/// A role's body limit refuses larger publishes and relays with TOO_LARGE.
#[tokio::test]
async fn a_roles_body_limit_refuses_larger_bodies() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.security = guest_config(LimitSpec {
            max_body: Some(10),
            ..LimitSpec::default()
        });
    })
    .await;
    let mut alice = session(&server, "alice").await;
    assert!(matches!(
        publish(&mut alice, "news", "0123456789").await,
        Packet::PublishAck(_)
    ));
    let answer = publish(&mut alice, "news", "0123456789!").await;
    assert_eq!(refused(&answer).code, ErrorCode::TooLarge);
    assert_eq!(
        refused(&answer).message.as_str(),
        "a body of 11 bytes is over this session's limit of 10 bytes"
    );
    server.shutdown().await;
}

/// An open hub without roles keeps no limit state and limits nothing per user.
#[tokio::test]
async fn an_open_hub_limits_nothing_per_user() {
    let clock = ManualClock::new();
    let server = start(&clock, |_| {}).await;
    let mut alice = session(&server, "alice").await;
    for i in 0..2500 {
        let ack = publish(&mut alice, "news", &format!("m{i}")).await;
        assert!(matches!(ack, Packet::PublishAck(_)), "{ack:?}");
    }
    assert_eq!(stat(&server, "rate_limited"), 0);
    assert_eq!(stat(&server, "limit_users_tracked"), 0);
    server.shutdown().await;
}

/// A reload puts a new limit in force for sessions already open; a configuration that
/// names a role nobody defines is refused, counted, and the one in force kept.
#[tokio::test]
async fn a_reload_puts_new_limits_in_force_and_a_bad_one_is_refused() {
    let clock = ManualClock::new();
    let base = guest_config(LimitSpec::default());
    let server = start(&clock, |config| config.security = base.clone()).await;
    let mut alice = session(&server, "alice").await;
    for i in 0..5 {
        assert!(matches!(
            publish(&mut alice, "news", &format!("m{i}")).await,
            Packet::PublishAck(_)
        ));
    }
    let tighter = ServerConfig {
        security: guest_config(LimitSpec {
            publishes_per_second: Some(1),
            publish_burst: Some(1),
            ..LimitSpec::default()
        }),
        ..ServerConfig::default()
    };
    server.reload(&tighter).expect("the reload is accepted");
    assert_eq!(stat(&server, "reloads"), 1);
    // The session took the new policy before its next request: the five publishes
    // before are a debt at 1 per second (the clock has not moved).
    let answer = publish(&mut alice, "news", "now limited").await;
    assert_eq!(refused(&answer).code, ErrorCode::RateLimited, "{answer:?}");

    let mut broken = ServerConfig {
        security: guest_config(LimitSpec::default()),
        ..ServerConfig::default()
    };
    broken.security.anonymous_role = Some("nobody".to_owned());
    let error = server.reload(&broken).unwrap_err();
    assert!(error.to_string().contains("[roles.nobody]"), "{error}");
    assert_eq!(stat(&server, "reloads_failed"), 1);
    // Still the tighter configuration: one more publish now is refused.
    let answer = publish(&mut alice, "news", "still limited").await;
    assert_eq!(refused(&answer).code, ErrorCode::RateLimited);
    server.shutdown().await;
}

/// A session whose standing a reload removes (here: credentials are required now and
/// anonymous sessions are no longer accepted) is disconnected with AUTH_FAILED and the
/// reason, at once, though idle; an admin session stays.
#[tokio::test]
async fn a_reload_disconnects_the_sessions_it_no_longer_accepts() {
    let clock = ManualClock::new();
    let server = start(&clock, |_| {}).await;
    let mut anonymous = session(&server, "anon").await;
    let mut admin = RawClient::connect(&server).await;
    let init = SessionInit {
        name: "root".into(),
        credentials: "secret-admin".into(),
        ..SessionInit::default()
    };
    assert!(matches!(
        admin.request(Packet::SessionInit(init)).await,
        Packet::SessionAck(_)
    ));
    let mut with_users = ServerConfig::default();
    with_users.security.users.push(UserSpec {
        name: "carol".to_owned(),
        password: None,
        roles: Vec::new(),
    });
    server.reload(&with_users).expect("reload");
    let packets = tokio::time::timeout(WAIT, anonymous.until_closed())
        .await
        .expect("the anonymous session is closed");
    let Some(Packet::Disconnect(goodbye)) = packets.last() else {
        panic!("expected a DISCONNECT, got {packets:?}");
    };
    assert_eq!(goodbye.code, ErrorCode::AuthFailed);
    assert!(
        goodbye.reason.contains("no longer accepted"),
        "{}",
        goodbye.reason
    );
    assert_eq!(stat(&server, "sessions_ended_by_reload"), 1);
    assert!(matches!(
        admin.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    server.shutdown().await;
}

/// A role's hashtag cap counts the tags a user's messages bring into the index: a
/// message bringing more is refused with LIMIT_REACHED, tags already in use are free,
/// and tags leaving the index (their channel deleted) give their places back.
#[tokio::test]
async fn a_roles_hashtag_cap_counts_the_tags_a_user_brings_into_use() {
    let clock = ManualClock::new();
    let server = start(&clock, |config| {
        config.security = guest_config(LimitSpec {
            max_hashtags: Some(2),
            ..LimitSpec::default()
        });
    })
    .await;
    let mut alice = session(&server, "alice").await;
    let mut tagged = async |channel: &str, text: &str| {
        alice
            .request(Packet::Publish(Publish {
                channel: channel.into(),
                content_type: "text/plain".into(),
                body: text.to_owned().into(),
                ..Publish::default()
            }))
            .await
    };
    assert!(matches!(
        tagged("a", "#rust and #tokio").await,
        Packet::PublishAck(_)
    ));
    let answer = tagged("a", "now #serde").await;
    assert_eq!(refused(&answer).code, ErrorCode::LimitReached);
    assert_eq!(
        refused(&answer).message.as_str(),
        "a user may bring at most 2 hashtags into use"
    );
    assert!(matches!(
        tagged("b", "#rust again").await,
        Packet::PublishAck(_)
    ));
    // Channel a goes; #tokio (only there) leaves the index, #rust stays (in b).
    let deleted = alice
        .request(Packet::DeleteChannel(DeleteChannel { name: "a".into() }))
        .await;
    assert!(matches!(deleted, Packet::Ok(_)), "{deleted:?}");
    assert!(matches!(
        alice
            .request(Packet::Publish(Publish {
                channel: "b".into(),
                content_type: "text/plain".into(),
                body: "now #serde".into(),
                ..Publish::default()
            }))
            .await,
        Packet::PublishAck(_)
    ));
    server.shutdown().await;
}
