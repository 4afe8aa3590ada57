//! Roles enforced on real sessions: every session without credentials takes the
//! anonymous role, an admin-token session may do everything. Each denial is ERROR
//! FORBIDDEN naming the operation and subject, is counted, and leaves the session open.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, start_server_with, stat};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, CreateGroup, GetMessages, GroupMembers, Identify, JoinGroup,
    ListClients, Packet, Publish, Relay, RelayStatus, Replay, Scope, SessionInit, Since, Stats,
    Stop, StreamStart, Subscribe,
};
use switchboard_server::ServerHandle;
use switchboard_server::security::RoleSpec;
use switchboard_server::security::permissions::{AdminOperation, ChannelRule, GroupRules, Rule};

const ADMIN_TOKEN: &str = "test-admin-token";

fn rule(allow: &[&str], deny: &[&str]) -> Rule {
    Rule {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    }
}

/// The role every test session takes: it may publish anywhere but `locked.>`, subscribe
/// to `chat.>` and every hashtag but not `chat.admin`, read the history of `chat.>` but
/// not `chat.admin`, and use no admin operation.
fn guest() -> RoleSpec {
    RoleSpec {
        publish: rule(&[">"], &["locked.>"]),
        subscribe: rule(&["chat.>", "#*"], &["chat.admin"]),
        history: rule(&["chat.>", "#*"], &["chat.admin"]),
        relay: rule(&["anonymous"], &[]),
        create_channel: ChannelRule {
            allow: vec!["own.>".into()],
            deny: vec![],
            max_history: Some(10),
            max_body: Some(1024),
        },
        groups: GroupRules {
            create: rule(&["team.*"], &[]),
            join: rule(&["team.a"], &[]),
            post: rule(&["team.a", "team.b"], &[]),
            read: rule(&["team.a"], &[]),
        },
        ..RoleSpec::default()
    }
}

async fn server_with(role: RoleSpec) -> ServerHandle {
    start_server_with(|config| {
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.security.roles.insert("guest".into(), role);
        config.security.anonymous_role = Some("guest".into());
    })
    .await
}

async fn admin(server: &ServerHandle) -> RawClient {
    let mut client = RawClient::connect(server).await;
    let init = SessionInit {
        name: "root".into(),
        credentials: Bytes::from_static(ADMIN_TOKEN.as_bytes()),
        ..SessionInit::default()
    };
    match client.request(Packet::SessionInit(init)).await {
        Packet::SessionAck(_) => client,
        other => panic!("expected SESSION_ACK, got {other:?}"),
    }
}

/// Asserts a FORBIDDEN whose message says `text`.
fn assert_forbidden(answer: &Packet, text: &str) {
    match answer {
        Packet::Error(error) => {
            assert_eq!(error.code, ErrorCode::Forbidden, "{error:?}");
            assert!(
                error.message.contains(text),
                "{:?} lacks {text:?}",
                error.message
            );
        }
        other => panic!("expected FORBIDDEN ({text}), got {other:?}"),
    }
}

async fn still_open(client: &mut RawClient) {
    assert!(matches!(
        client.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
}

fn publish(channel: &str, body: &str) -> Packet {
    Packet::Publish(Publish {
        channel: channel.into(),
        content_type: "text/plain".into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        ..Publish::default()
    })
}

fn subscribe(pattern: &str, replay: Replay) -> Packet {
    Packet::Subscribe(Subscribe {
        pattern: pattern.into(),
        replay,
    })
}

/// The bodies of the live messages that arrive within a short wait.
async fn live_bodies(client: &mut RawClient) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(frame) = client.frame_within(Duration::from_millis(300)).await {
        if let Ok(Packet::Message(message)) = Packet::from_frame(&frame) {
            bodies.push(String::from_utf8_lossy(&message.body).into_owned());
        }
    }
    bodies
}

#[tokio::test]
async fn publish_frame_and_stream_to_a_denied_channel_are_forbidden_and_counted() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "guest").await;
    let before = stat(&server, "permission_denials");
    let answer = client.request(publish("locked.x", "hi")).await;
    assert_forbidden(&answer, "publish to locked.x is not permitted");
    let streamed = Packet::Publish(Publish {
        channel: "locked.y".into(),
        stream: Some(StreamStart {
            stream_id: 1,
            total_len: 10,
        }),
        ..Publish::default()
    });
    assert_forbidden(&client.request(streamed).await, "publish to locked.y");
    // Publishing to a channel nobody created creates it: that takes the create
    // permission, and the channel gets the server's defaults within the role's caps.
    assert_forbidden(
        &client.request(publish("free", "hi")).await,
        "create channel free is not permitted",
    );
    // A streamed one is refused before its body is sent.
    let streamed = Packet::Publish(Publish {
        channel: "fresh".into(),
        stream: Some(StreamStart {
            stream_id: 2,
            total_len: 10,
        }),
        ..Publish::default()
    });
    assert_forbidden(
        &client.request(streamed).await,
        "create channel fresh is not permitted",
    );
    assert_eq!(stat(&server, "permission_denials"), before + 4);
    let mut root = admin(&server).await;
    assert!(matches!(
        root.request(Packet::CreateChannel(CreateChannel {
            name: "free".into(),
            options: ChannelOptions::default(),
        }))
        .await,
        Packet::ChannelInfo(_)
    ));
    assert!(matches!(
        client.request(publish("free", "hi")).await,
        Packet::PublishAck(_)
    ));
    assert!(matches!(
        client.request(publish("own.x", "hi")).await,
        Packet::PublishAck(_)
    ));
    let own = CreateChannel {
        name: "own.x".into(),
        options: ChannelOptions::default(),
    };
    match client.request(Packet::CreateChannel(own)).await {
        Packet::ChannelInfo(info) => {
            assert_eq!(info.options.history, Some(10), "{info:?}");
            assert_eq!(info.options.max_bytes, Some(1024), "{info:?}");
        }
        other => panic!("expected CHANNEL_INFO, got {other:?}"),
    }
    still_open(&mut client).await;
}

/// Publishes written in one go reach the server in one read and are served as a run
/// that shares what it looked up: each is still checked on its own and answered in
/// order, a denial between two allowed publishes to one channel included.
#[tokio::test]
async fn publishes_read_together_are_each_checked_and_answered_in_order() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "guest").await;
    let before = stat(&server, "permission_denials");
    let channels = [
        "own.a", "own.a", "locked.x", "own.a", "locked.x", "locked.y", "own.b",
    ];
    let mut frames = bytes::BytesMut::new();
    let mut ids = Vec::new();
    for channel in channels {
        let id = client.next_request_id();
        ids.push(id);
        client
            .codec
            .encode_packet(
                id,
                switchboard_proto::Flags::empty(),
                &publish(channel, channel),
                &mut frames,
            )
            .expect("encode");
    }
    client.send_raw(&frames).await;
    let mut seqs = Vec::new();
    for (channel, id) in channels.into_iter().zip(ids) {
        let frame = client.next_frame().await.expect("an answer");
        assert_eq!(
            frame.request_id, id,
            "answers in the order of the publishes"
        );
        let answer = Packet::from_frame(&frame).expect("valid packet");
        if channel.starts_with("locked.") {
            assert_forbidden(&answer, &format!("publish to {channel}"));
        } else {
            match answer {
                Packet::PublishAck(ack) => seqs.push((channel, ack.seq)),
                other => panic!("expected PUBLISH_ACK for {channel}, got {other:?}"),
            }
        }
    }
    assert_eq!(
        seqs,
        [("own.a", 1), ("own.a", 2), ("own.a", 3), ("own.b", 1)]
    );
    assert_eq!(stat(&server, "permission_denials") - before, 3);
    still_open(&mut client).await;
}

#[tokio::test]
async fn a_wildcard_not_covered_by_an_allow_pattern_is_forbidden() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "guest").await;
    for pattern in [">", "news.*", "*.rust", "chat.admin"] {
        let answer = client.request(subscribe(pattern, Replay::None)).await;
        assert_forbidden(&answer, &format!("subscribe to {pattern} is not permitted"));
    }
    still_open(&mut client).await;
}

#[tokio::test]
async fn a_wildcard_overlapping_a_deny_never_delivers_the_denied_channel() {
    let server = server_with(guest()).await;
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    let mut root = admin(&server).await;
    assert!(matches!(
        root.request(publish("chat.admin", "old secret")).await,
        Packet::PublishAck(_)
    ));
    assert!(matches!(
        root.request(publish("chat.rust", "old news")).await,
        Packet::PublishAck(_)
    ));
    // The replay leaves the denied channel out.
    match reader.request(subscribe("chat.>", Replay::Last(10))).await {
        Packet::SubscribeAck(ack) => assert_eq!(ack.replay_count, 1),
        other => panic!("expected SUBSCRIBE_ACK, got {other:?}"),
    }
    let replayed = live_bodies(&mut reader).await;
    assert_eq!(replayed, ["old news"]);
    for (channel, body) in [("chat.admin", "secret"), ("chat.rust", "hello")] {
        assert!(matches!(
            root.request(publish(channel, body)).await,
            Packet::PublishAck(_)
        ));
    }
    assert_eq!(live_bodies(&mut reader).await, ["hello"]);
}

#[tokio::test]
async fn a_hashtag_subscription_does_not_deliver_from_a_denied_channel() {
    let server = server_with(guest()).await;
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    let mut root = admin(&server).await;
    assert!(matches!(
        reader.request(subscribe("#news", Replay::None)).await,
        Packet::SubscribeAck(_)
    ));
    for (channel, body) in [
        ("chat.admin", "#news from the denied channel"),
        ("elsewhere", "#news from a channel it may not subscribe to"),
        ("chat.rust", "#news for everyone"),
    ] {
        assert!(matches!(
            root.request(publish(channel, body)).await,
            Packet::PublishAck(_)
        ));
    }
    assert_eq!(live_bodies(&mut reader).await, ["#news for everyone"]);
    // Fetching by the tag leaves them out too.
    let fetch = Packet::GetMessages(GetMessages {
        scope: Scope::Tag,
        channel: "news".into(),
        since: Since::All,
        limit: None,
    });
    let id = reader.next_request_id();
    reader
        .send(id, switchboard_proto::Flags::empty(), &fetch)
        .await;
    let mut bodies = Vec::new();
    loop {
        let frame = reader.next_frame().await.expect("an answer");
        match Packet::from_frame(&frame).unwrap() {
            Packet::Message(message) if frame.request_id == id => {
                bodies.push(String::from_utf8_lossy(&message.body).into_owned())
            }
            Packet::MessagesEnd(_) if frame.request_id == id => break,
            _ => {}
        }
    }
    assert_eq!(bodies, ["#news for everyone"]);
}

#[tokio::test]
async fn history_of_a_denied_channel_is_forbidden() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "guest").await;
    let get = |channel: &str| {
        Packet::GetMessages(GetMessages {
            scope: Scope::Channel,
            channel: channel.into(),
            since: Since::All,
            limit: None,
        })
    };
    assert_forbidden(
        &client.request(get("chat.admin")).await,
        "read the history of chat.admin is not permitted",
    );
    assert_forbidden(
        &client.request(subscribe("news", Replay::Last(1))).await,
        "subscribe to news",
    );
    still_open(&mut client).await;
}

#[tokio::test]
async fn relay_needs_the_relay_rule_and_a_receiver_that_takes_relays() {
    let server = server_with(RoleSpec {
        relay: rule(&["someone"], &[]),
        ..guest()
    })
    .await;
    let (mut sender, _) = RawClient::connect_session(&server, "sender").await;
    let (_receiver, ack) = RawClient::connect_session(&server, "receiver").await;
    let relay = Packet::Relay(Relay {
        receivers: vec![ack.client_id],
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"psst"),
    });
    assert_forbidden(
        &sender.request(relay.clone()).await,
        "relay to anonymous is not permitted",
    );
    // Without the `clients` operation, the list shows only those it may relay to.
    match sender
        .request(Packet::ListClients(ListClients::default()))
        .await
    {
        Packet::ClientList(list) => assert!(list.clients.is_empty(), "{list:?}"),
        other => panic!("expected CLIENT_LIST, got {other:?}"),
    }

    let server = server_with(RoleSpec {
        receive_relay: false,
        ..guest()
    })
    .await;
    let (mut sender, _) = RawClient::connect_session(&server, "sender").await;
    let (_receiver, ack) = RawClient::connect_session(&server, "receiver").await;
    let relay = Packet::Relay(Relay {
        receivers: vec![ack.client_id],
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"psst"),
    });
    assert_forbidden(
        &sender.request(relay.clone()).await,
        "it does not take relays",
    );
    // An admin reaches it all the same.
    let mut root = admin(&server).await;
    match root.request(relay).await {
        Packet::RelayResult(result) => {
            assert_eq!(result.outcomes[0].status, RelayStatus::Delivered)
        }
        other => panic!("expected RELAY_RESULT, got {other:?}"),
    }

    let server = server_with(guest()).await;
    let (mut sender, _) = RawClient::connect_session(&server, "sender").await;
    let (_receiver, ack) = RawClient::connect_session(&server, "receiver").await;
    let relay = Packet::Relay(Relay {
        receivers: vec![ack.client_id],
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"psst"),
    });
    match sender.request(relay).await {
        Packet::RelayResult(result) => {
            assert_eq!(result.outcomes[0].status, RelayStatus::Delivered)
        }
        other => panic!("expected RELAY_RESULT, got {other:?}"),
    }
    match sender
        .request(Packet::ListClients(ListClients::default()))
        .await
    {
        Packet::ClientList(list) => assert_eq!(list.clients.len(), 1, "{list:?}"),
        other => panic!("expected CLIENT_LIST, got {other:?}"),
    }
}

#[tokio::test]
async fn groups_create_join_post_and_read_are_each_checked() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "member").await;
    let create = |name: &str| {
        Packet::CreateGroup(CreateGroup {
            name: name.into(),
            description: "".into(),
        })
    };
    assert_forbidden(
        &client.request(create("other")).await,
        "create group other is not permitted",
    );
    for name in ["team.a", "team.b"] {
        assert!(matches!(client.request(create(name)).await, Packet::Ok(_)));
    }
    let join = |name: &str| Packet::JoinGroup(JoinGroup { group: name.into() });
    assert_forbidden(
        &client.request(join("team.b")).await,
        "join group team.b is not permitted",
    );
    assert!(matches!(
        client.request(join("team.a")).await,
        Packet::Ok(_)
    ));
    let post = |group: &str| {
        Packet::Publish(Publish {
            scope: Scope::Group,
            channel: group.into(),
            body: Bytes::from_static(b"hello"),
            ..Publish::default()
        })
    };
    assert!(matches!(
        client.request(post("team.a")).await,
        Packet::PublishAck(_)
    ));
    // Allowed by the rule, but posting also takes membership.
    assert_forbidden(&client.request(post("team.b")).await, "not a member");
    let members = |group: &str| {
        Packet::GroupMembers(GroupMembers {
            group: group.into(),
            ..GroupMembers::default()
        })
    };
    assert_forbidden(
        &client.request(members("team.b")).await,
        "read group team.b is not permitted",
    );
    assert!(matches!(
        client.request(members("team.a")).await,
        Packet::MemberList(_)
    ));
    still_open(&mut client).await;
}

#[tokio::test]
async fn admin_operations_need_the_role_or_an_admin_session() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "guest").await;
    assert_forbidden(
        &client.request(Packet::Stats(Stats)).await,
        "admin operation stats is not permitted",
    );
    assert_forbidden(
        &client.request(Packet::Stop(Stop)).await,
        "admin operation stop is not permitted",
    );
    still_open(&mut client).await;

    let server = server_with(RoleSpec {
        admin: vec![AdminOperation::Stats],
        ..guest()
    })
    .await;
    let (mut client, _) = RawClient::connect_session(&server, "operator").await;
    match client.request(Packet::Stats(Stats)).await {
        Packet::StatsReply(reply) => {
            assert!(reply.stats.iter().any(|s| s.name == "permission_denials"))
        }
        other => panic!("expected STATS_REPLY, got {other:?}"),
    }
}

#[tokio::test]
async fn created_channels_are_capped_by_the_role() {
    let server = server_with(guest()).await;
    let (mut client, _) = RawClient::connect_session(&server, "creator").await;
    let create = |name: &str, options: ChannelOptions| {
        Packet::CreateChannel(CreateChannel {
            name: name.into(),
            options,
        })
    };
    assert_forbidden(
        &client
            .request(create("chat.new", ChannelOptions::default()))
            .await,
        "create channel chat.new is not permitted",
    );
    let more_history = ChannelOptions {
        history: Some(11),
        ..ChannelOptions::default()
    };
    assert_forbidden(
        &client.request(create("own.a", more_history)).await,
        "history 11 is over the role's cap of 10",
    );
    let larger_body = ChannelOptions {
        max_bytes: Some(4096),
        ..ChannelOptions::default()
    };
    assert_forbidden(
        &client.request(create("own.a", larger_body)).await,
        "max_bytes 4096 is over the role's cap of 1024",
    );
    match client
        .request(create("own.a", ChannelOptions::default()))
        .await
    {
        Packet::ChannelInfo(info) => {
            assert_eq!(info.options.history, Some(10));
            assert_eq!(info.options.max_bytes, Some(1024));
        }
        other => panic!("expected CHANNEL_INFO, got {other:?}"),
    }
    let within = ChannelOptions {
        history: Some(5),
        ..ChannelOptions::default()
    };
    match client.request(create("own.b", within)).await {
        Packet::ChannelInfo(info) => assert_eq!(info.options.history, Some(5)),
        other => panic!("expected CHANNEL_INFO, got {other:?}"),
    }
}

#[tokio::test]
async fn an_open_hub_checks_nothing() {
    let server = start_server_with(|_| {}).await;
    let (mut client, _) = RawClient::connect_session(&server, "anyone").await;
    assert!(matches!(
        client.request(publish("locked.x", "hi")).await,
        Packet::PublishAck(_)
    ));
    assert!(matches!(
        client.request(subscribe(">", Replay::None)).await,
        Packet::SubscribeAck(_)
    ));
    assert!(matches!(
        client.request(Packet::Stats(Stats)).await,
        Packet::StatsReply(_)
    ));
    assert_eq!(stat(&server, "permission_denials"), 0);
}

#[tokio::test]
async fn a_malformed_role_stops_the_server_from_starting() {
    let result = switchboard_server::Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| {
            config.security.roles.insert(
                "bad".into(),
                RoleSpec {
                    subscribe: rule(&["chat.>.x"], &[]),
                    ..RoleSpec::default()
                },
            );
        })
        .start()
        .await;
    let Err(error) = result else {
        panic!("a malformed role must stop the server from starting");
    };
    let error = error.to_string();
    assert!(
        error.contains("\"bad\"") && error.contains("chat.>.x"),
        "{error}"
    );
}
