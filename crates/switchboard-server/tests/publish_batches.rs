//! PUBLISH frames carrying a batch of bodies (flag BATCH): each body is a publish of its
//! own, in order, with its own id, sequence number and request id (for an ERROR); a
//! malformed batch is refused whole and the session goes on; the server announces that
//! it takes batches, unless configured not to.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{RawClient, start_server, start_server_with};
use switchboard_proto::packet::{
    ChannelOptions, CreateChannel, GetMessages, Message, Packet, Publish, SessionInit, Since,
    StreamStart, Subscribe, features,
};
use switchboard_proto::{ErrorCode, Flags};
use switchboard_server::ServerHandle;
use switchboard_server::security::RoleSpec;
use switchboard_server::security::permissions::Rule;

/// The content of a batch of these bodies.
fn batch(bodies: &[&[u8]]) -> Bytes {
    let mut content = BytesMut::new();
    for body in bodies {
        content.put_u32(body.len() as u32);
        content.put_slice(body);
    }
    content.freeze()
}

/// A PUBLISH of text to `channel` whose content is `content`, as it is sent in a batch.
fn publish(channel: &str, content: Bytes) -> Packet {
    Packet::Publish(Publish {
        channel: channel.into(),
        content_type: "text/plain".into(),
        body: content,
        ..Publish::default()
    })
}

const BATCHED: Flags = Flags(Flags::NO_REPLY.0 | Flags::BATCH.0);

async fn subscriber(server: &ServerHandle, pattern: &str) -> RawClient {
    let (mut client, _) = RawClient::connect_session(server, "reader").await;
    let subscribe = Packet::Subscribe(Subscribe {
        pattern: pattern.into(),
        replay: Default::default(),
    });
    match client.request(subscribe).await {
        Packet::SubscribeAck(_) => client,
        other => panic!("expected SUBSCRIBE_ACK, got {other:?}"),
    }
}

/// The next `count` live MESSAGEs.
async fn messages(client: &mut RawClient, count: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    while messages.len() < count {
        match client.next_packet().await.expect("a message") {
            Packet::Message(message) => messages.push(message),
            other => panic!("expected MESSAGE, got {other:?}"),
        }
    }
    messages
}

/// The bodies in the channel's history (none for a channel that does not exist).
async fn history(client: &mut RawClient, channel: &str) -> Vec<Bytes> {
    let get = Packet::GetMessages(GetMessages {
        channel: channel.into(),
        since: Since::All,
        ..GetMessages::default()
    });
    let id = client.next_request_id();
    client.send(id, Flags::empty(), &get).await;
    let mut bodies = Vec::new();
    loop {
        match client.next_packet().await.expect("an answer") {
            Packet::Message(message) => bodies.push(message.body),
            Packet::MessagesEnd(_) => return bodies,
            Packet::Error(error) if error.code == ErrorCode::NotFound => return bodies,
            other => panic!("expected MESSAGE or MESSAGES_END, got {other:?}"),
        }
    }
}

/// Whether the session still serves: a PUBLISH with ack is answered.
async fn still_serves(client: &mut RawClient) {
    let answer = client
        .request(publish("after", Bytes::from_static(b"still here")))
        .await;
    assert!(
        matches!(answer, Packet::PublishAck(_)),
        "expected PUBLISH_ACK, got {answer:?}"
    );
}

/// An ERROR, its request id and code.
async fn error(client: &mut RawClient) -> (u32, ErrorCode) {
    let frame = client.next_frame().await.expect("an answer");
    match Packet::from_frame(&frame).expect("valid packet") {
        Packet::Error(error) => (frame.request_id, error.code),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

#[tokio::test]
async fn the_bodies_of_a_batch_are_published_in_order_each_on_its_own() {
    let server = start_server().await;
    let mut reader = subscriber(&server, "chat").await;
    let (mut writer, ack) = RawClient::connect_session(&server, "writer").await;
    assert_eq!(
        ack.features & features::PUBLISH_BATCH,
        features::PUBLISH_BATCH
    );
    let bodies: [&[u8]; 4] = [b"one", b"", b"three #tagged", b"four"];
    writer
        .send(0x8000_0001, BATCHED, &publish("chat", batch(&bodies)))
        .await;
    let live = messages(&mut reader, bodies.len()).await;
    for (index, (message, body)) in live.iter().zip(bodies).enumerate() {
        assert_eq!(message.body, body);
        assert_eq!(message.seq, index as u64 + 1);
        assert_eq!(message.channel, "chat");
        assert_eq!(message.sender_name, "writer");
    }
    let mut ids: Vec<_> = live.iter().map(|message| message.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), bodies.len(), "each body has its own id");
    assert!(ids.is_sorted(), "ids follow the order of the bodies");
    assert_eq!(history(&mut writer, "chat").await, bodies);
    // The hashtag of the third body was indexed as for a publish of its own.
    let tagged = Packet::GetMessages(GetMessages {
        scope: switchboard_proto::packet::Scope::Tag,
        channel: "tagged".into(),
        since: Since::All,
        limit: None,
    });
    let id = writer.next_request_id();
    writer.send(id, Flags::empty(), &tagged).await;
    match writer.next_packet().await.expect("an answer") {
        Packet::Message(message) => assert_eq!(message.body, bodies[2]),
        other => panic!("expected the tagged MESSAGE, got {other:?}"),
    }
    // Nothing was answered for the quiet publishes.
    assert!(
        writer
            .frame_within(Duration::from_millis(100))
            .await
            .is_some_and(|frame| matches!(Packet::from_frame(&frame), Ok(Packet::MessagesEnd(_))))
    );
    assert!(
        writer
            .frame_within(Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_body_over_a_limit_fails_alone_under_its_own_request_id() {
    let server = start_server().await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let create = Packet::CreateChannel(CreateChannel {
        name: "small".into(),
        options: ChannelOptions {
            max_bytes: Some(4),
            max_chars: Some(3),
            ..ChannelOptions::default()
        },
    });
    assert!(matches!(
        writer.request(create).await,
        Packet::ChannelInfo(_)
    ));
    let mut reader = subscriber(&server, "small").await;
    // Ids wrap inside the ids with the high bit: the fourth body's is 0x8000_0000.
    let first = 0xFFFF_FFFD;
    let bodies: [&[u8]; 5] = [b"ok", b"too long", "éé".as_bytes(), b"abcd", b"end"];
    writer
        .send(first, BATCHED, &publish("small", batch(&bodies)))
        .await;
    assert_eq!(error(&mut writer).await, (0xFFFF_FFFE, ErrorCode::TooLarge));
    assert_eq!(
        error(&mut writer).await,
        (0x8000_0000, ErrorCode::TooManyCharacters)
    );
    let live = messages(&mut reader, 3).await;
    let delivered: Vec<_> = live.iter().map(|message| message.body.clone()).collect();
    assert_eq!(delivered, [&b"ok"[..], "éé".as_bytes(), b"end"]);
    assert_eq!(
        live.iter().map(|message| message.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    still_serves(&mut writer).await;
}

#[tokio::test]
async fn a_malformed_batch_is_refused_whole_and_the_session_goes_on() {
    let server = start_server().await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let mut past_the_end = BytesMut::from(&batch(&[b"one", b"two"])[..]);
    past_the_end.put_u32(10);
    past_the_end.put_slice(b"short");
    let mut cut_length = BytesMut::from(&batch(&[b"one"])[..]);
    cut_length.put_slice(&[0, 0]);
    let streamed = Packet::Publish(Publish {
        channel: "chat".into(),
        body: batch(&[b"one"]),
        stream: Some(StreamStart {
            stream_id: 1,
            total_len: 7,
        }),
        ..Publish::default()
    });
    let cases = [
        (
            publish("chat", past_the_end.freeze()),
            BATCHED,
            ErrorCode::BadFrame,
        ),
        (
            publish("chat", cut_length.freeze()),
            BATCHED,
            ErrorCode::BadFrame,
        ),
        (
            publish("chat", Bytes::new()),
            BATCHED,
            ErrorCode::InvalidArgument,
        ),
        (
            publish("chat", batch(&[b"one"])),
            Flags::BATCH,
            ErrorCode::InvalidArgument,
        ),
        (streamed, BATCHED, ErrorCode::InvalidArgument),
    ];
    for (index, (packet, flags, code)) in cases.into_iter().enumerate() {
        let id = 0x8000_0100 + index as u32 * 16;
        writer.send(id, flags, &packet).await;
        assert_eq!(error(&mut writer).await, (id, code), "case {index}");
        still_serves(&mut writer).await;
    }
    assert!(history(&mut writer, "chat").await.is_empty());
}

#[tokio::test]
async fn a_server_configured_without_batches_does_not_announce_them() {
    let server = start_server_with(|config| config.publish_batches = false).await;
    let (_, ack) = RawClient::connect_session(&server, "writer").await;
    assert_eq!(ack.features & features::PUBLISH_BATCH, 0);
}

#[tokio::test]
async fn a_batch_where_the_session_may_not_publish_is_refused_body_by_body() {
    let server = start_server_with(|config| {
        let role = RoleSpec {
            publish: Rule {
                allow: vec![">".into()],
                deny: vec!["locked.>".into()],
            },
            subscribe: Rule {
                allow: vec![">".into()],
                deny: vec![],
            },
            history: Rule {
                allow: vec![">".into()],
                deny: vec![],
            },
            ..RoleSpec::default()
        };
        config.security.roles.insert("guest".into(), role);
        config.security.anonymous_role = Some("guest".into());
        config.admin_token = Some("admin-token".into());
    })
    .await;
    let mut admin = RawClient::connect(&server).await;
    let init = SessionInit {
        name: "root".into(),
        credentials: Bytes::from_static(b"admin-token"),
        ..SessionInit::default()
    };
    assert!(matches!(
        admin.request(Packet::SessionInit(init)).await,
        Packet::SessionAck(_)
    ));
    let create = Packet::CreateChannel(CreateChannel {
        name: "open".into(),
        ..CreateChannel::default()
    });
    assert!(matches!(
        admin.request(create).await,
        Packet::ChannelInfo(_)
    ));
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    writer
        .send(
            0x8000_0001,
            BATCHED,
            &publish("locked.door", batch(&[b"one", b"two", b"three"])),
        )
        .await;
    for id in 0x8000_0001..=0x8000_0003 {
        assert_eq!(error(&mut writer).await, (id, ErrorCode::Forbidden));
    }
    // The same session may publish a batch elsewhere.
    let mut reader = subscriber(&server, "open").await;
    writer
        .send(0x8000_0004, BATCHED, &publish("open", batch(&[b"a", b"b"])))
        .await;
    if let Some(frame) = writer.frame_within(Duration::from_millis(200)).await {
        panic!("unexpected {:?}", Packet::from_frame(&frame));
    }
    let live = messages(&mut reader, 2).await;
    assert_eq!(live[1].body, &b"b"[..]);
    assert_eq!(history(&mut writer, "open").await, [&b"a"[..], b"b"]);
}

#[tokio::test]
async fn a_node_of_a_cluster_publishes_the_bodies_of_a_batch_in_order() {
    let backplane = switchboard_server::cluster::memory::MemoryBackplane::new();
    let server = switchboard_server::Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.node())
        .start()
        .await
        .expect("node starts");
    let mut reader = subscriber(&server, "chat").await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let create = Packet::CreateChannel(CreateChannel {
        name: "small".into(),
        options: ChannelOptions {
            max_bytes: Some(4),
            ..ChannelOptions::default()
        },
    });
    assert!(matches!(
        writer.request(create).await,
        Packet::ChannelInfo(_)
    ));
    let bodies: [&[u8]; 3] = [b"one", b"two", b"three"];
    writer
        .send(0x8000_0001, BATCHED, &publish("chat", batch(&bodies)))
        .await;
    let live = messages(&mut reader, bodies.len()).await;
    for (index, (message, body)) in live.iter().zip(bodies).enumerate() {
        assert_eq!(message.body, body);
        assert_eq!(message.seq, index as u64 + 1);
    }
    writer
        .send(
            0x8000_0010,
            BATCHED,
            &publish("small", batch(&[b"ok", b"too long"])),
        )
        .await;
    assert_eq!(error(&mut writer).await, (0x8000_0011, ErrorCode::TooLarge));
    assert_eq!(history(&mut writer, "small").await, [&b"ok"[..]]);
}
