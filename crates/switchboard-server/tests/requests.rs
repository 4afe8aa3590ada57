//! Requests at the edges of the protocol: frames sent in the wrong direction, names that
//! are not names, fire-and-forget failures, fetching by hashtag, and replay bounds.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{RawClient, start_server};
use switchboard_proto::packet::{
    GetMessage, GetMessages, Identify, Packet, Publish, Replay, Scope, SessionInit, Since,
    Subscribe,
};
use switchboard_proto::{ErrorCode, Flags, Frame, FrameType};

fn error_code(packet: &Packet) -> Option<ErrorCode> {
    match packet {
        Packet::Error(error) => Some(error.code),
        _ => None,
    }
}

/// Sends a frame of any type with an empty header block and content.
async fn send_empty(client: &mut RawClient, frame_type: FrameType, request_id: u32) {
    let frame = Frame {
        frame_type,
        flags: Flags::empty(),
        request_id,
        headers: Bytes::new(),
        content: Bytes::new(),
        content_crc: 0, // computed by encode_frame
    };
    let mut out = BytesMut::new();
    client.codec.encode_frame(&frame, &mut out).unwrap();
    client.send_raw(&out).await;
}

async fn publish(client: &mut RawClient, channel: &str, content_type: &str, body: &str) -> Packet {
    client
        .request(Packet::Publish(Publish {
            channel: channel.into(),
            content_type: content_type.into(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            ..Publish::default()
        }))
        .await
}

#[tokio::test]
async fn every_server_frame_sent_by_a_client_is_bad_frame_and_the_session_goes_on() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "confused").await;
    let server_only = [
        FrameType::SessionAck,
        FrameType::Error,
        FrameType::Ok,
        FrameType::Identity,
        FrameType::ClientList,
        FrameType::RelayResult,
        FrameType::ChannelInfo,
        FrameType::PublishAck,
        FrameType::SubscribeAck,
        FrameType::MessagesEnd,
        FrameType::ChannelList,
        FrameType::GroupList,
        FrameType::MemberList,
        FrameType::StatsReply,
        FrameType::Message,
        FrameType::Direct,
        FrameType::Event,
    ];
    for (index, frame_type) in server_only.into_iter().enumerate() {
        let request_id = 100 + index as u32;
        // Empty frames: several of these types have required fields, which must not
        // turn the answer into INVALID_ARGUMENT.
        send_empty(&mut client, frame_type, request_id).await;
        let frame = client.next_frame().await.expect("an answer");
        assert_eq!(frame.request_id, request_id, "{frame_type:?}");
        let packet = Packet::from_frame(&frame).unwrap();
        assert_eq!(
            error_code(&packet),
            Some(ErrorCode::BadFrame),
            "{frame_type:?}: {packet:?}"
        );
    }
    assert!(matches!(
        client.request(Packet::Identify(Identify)).await,
        Packet::Identity(_)
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_session_init_is_refused_without_closing() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "twice").await;
    let again = client
        .request(Packet::SessionInit(SessionInit {
            name: "again".into(),
            ..SessionInit::default()
        }))
        .await;
    assert_eq!(error_code(&again), Some(ErrorCode::SessionRequired));
    match client.request(Packet::Identify(Identify)).await {
        Packet::Identity(identity) => assert_eq!(identity.name, "twice"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn fetching_with_an_invalid_name_is_invalid_argument_not_not_found() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "reader").await;
    let cases = [
        (Scope::Channel, "a..b", ErrorCode::InvalidArgument),
        (Scope::Channel, "x*", ErrorCode::InvalidArgument),
        (Scope::Channel, "no.such.channel", ErrorCode::NotFound),
        (Scope::Group, "@group", ErrorCode::InvalidArgument),
        (Scope::Group, "has space", ErrorCode::InvalidArgument),
        (Scope::Group, "no.such.group", ErrorCode::NotFound),
        (Scope::Tag, "a-b", ErrorCode::InvalidArgument),
        (Scope::Tag, "", ErrorCode::InvalidArgument),
    ];
    for (scope, name, code) in cases {
        let one = client
            .request(Packet::GetMessage(GetMessage {
                scope,
                channel: name.into(),
                id: None,
            }))
            .await;
        assert_eq!(
            error_code(&one),
            Some(code),
            "GET_MESSAGE {scope:?} {name:?}"
        );
        let many = client
            .request(Packet::GetMessages(GetMessages {
                scope,
                channel: name.into(),
                ..GetMessages::default()
            }))
            .await;
        assert_eq!(
            error_code(&many),
            Some(code),
            "GET_MESSAGES {scope:?} {name:?}: {many:?}"
        );
    }
    // A valid tag nobody used is an empty range, not an error.
    match client
        .request(Packet::GetMessages(GetMessages {
            scope: Scope::Tag,
            channel: "unused".into(),
            ..GetMessages::default()
        }))
        .await
    {
        Packet::MessagesEnd(end) => assert_eq!(end.count, 0),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_no_reply_publish_is_answered_with_its_request_id() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "quiet").await;
    let good = Packet::Publish(Publish {
        channel: "fine".into(),
        body: Bytes::from_static(b"ok"),
        ..Publish::default()
    });
    let bad = Packet::Publish(Publish {
        channel: "not..fine".into(),
        body: Bytes::from_static(b"no"),
        ..Publish::default()
    });
    let tag = Packet::Publish(Publish {
        scope: Scope::Tag,
        channel: "rust".into(),
        body: Bytes::from_static(b"no"),
        ..Publish::default()
    });
    client.send(41, Flags::NO_REPLY, &good).await;
    client.send(42, Flags::NO_REPLY, &bad).await;
    client.send(43, Flags::NO_REPLY, &tag).await;
    client.send(44, Flags::NO_REPLY, &good).await;
    let first = client.next_frame().await.unwrap();
    assert_eq!(first.request_id, 42);
    assert_eq!(
        error_code(&Packet::from_frame(&first).unwrap()),
        Some(ErrorCode::InvalidArgument)
    );
    let second = client.next_frame().await.unwrap();
    assert_eq!(second.request_id, 43);
    assert_eq!(
        error_code(&Packet::from_frame(&second).unwrap()),
        Some(ErrorCode::InvalidArgument)
    );
    // The successes were silent.
    assert!(
        client
            .frame_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_tagged_message_can_be_fetched_by_id_through_its_tag() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "tagger").await;
    let Packet::PublishAck(first) = publish(&mut client, "a", "text/plain", "one #Rust").await
    else {
        panic!("publish refused");
    };
    let Packet::PublishAck(second) =
        publish(&mut client, "b", "text/markdown", "two #rust #go").await
    else {
        panic!("publish refused");
    };
    for (name, id, channel) in [
        ("rust", Some(first.id), "a"),
        ("#RUST", Some(second.id), "b"),
        ("go", Some(second.id), "b"),
        ("rust", None, "b"),
    ] {
        let id_sent = client.next_request_id();
        client
            .send(
                id_sent,
                Flags::empty(),
                &Packet::GetMessage(GetMessage {
                    scope: Scope::Tag,
                    channel: name.into(),
                    id,
                }),
            )
            .await;
        let frame = client.next_frame().await.unwrap();
        assert_eq!(frame.request_id, id_sent);
        assert!(frame.flags.contains(Flags::REPLAY), "{name} {id:?}");
        match Packet::from_frame(&frame).unwrap() {
            // A message fetched through a tag is a channel message of its channel.
            Packet::Message(message) => {
                assert_eq!(message.scope, Scope::Channel);
                assert_eq!(message.channel, channel);
                if let Some(id) = id {
                    assert_eq!(message.id, id);
                }
            }
            other => panic!("{other:?}"),
        }
    }
    // The right id under the wrong tag is not found.
    let wrong = client
        .request(Packet::GetMessage(GetMessage {
            scope: Scope::Tag,
            channel: "go".into(),
            id: Some(first.id),
        }))
        .await;
    assert_eq!(error_code(&wrong), Some(ErrorCode::NotFound));
    server.shutdown().await;
}

#[tokio::test]
async fn replay_of_last_zero_and_since_seq_zero() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "replayer").await;
    for body in ["1", "2", "3"] {
        assert!(matches!(
            publish(&mut client, "r", "text/plain", body).await,
            Packet::PublishAck(_)
        ));
    }
    for (replay, expected) in [
        (Replay::Last(0), 0u64),
        (Replay::SinceSeq(0), 3),
        (Replay::Last(u64::MAX), 3),
        (Replay::SinceSeq(u64::MAX), 0),
        (Replay::SinceTime(0), 3),
    ] {
        match client
            .request(Packet::Subscribe(Subscribe {
                pattern: "r".into(),
                replay,
            }))
            .await
        {
            Packet::SubscribeAck(ack) => assert_eq!(ack.replay_count, expected, "{replay:?}"),
            other => panic!("{other:?}"),
        }
        for _ in 0..expected {
            let frame = client.next_frame().await.unwrap();
            assert!(frame.flags.contains(Flags::REPLAY));
        }
    }
    match client
        .request(Packet::GetMessages(GetMessages {
            channel: "r".into(),
            since: Since::Seq(0),
            limit: Some(u64::MAX),
            ..GetMessages::default()
        }))
        .await
    {
        Packet::Message(message) => assert_eq!(message.seq, 1),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_full_of_distinct_hashtags_is_indexed_in_linear_time() {
    let server = start_server().await;
    let (mut publisher, _) = RawClient::connect_session(&server, "tagger").await;
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    match reader
        .request(Packet::Subscribe(Subscribe {
            // The last tag indexed: a message counts its first MAX_HASHTAGS tags.
            pattern: format!("#t{}", switchboard_proto::subject::MAX_HASHTAGS - 1)
                .as_str()
                .into(),
            replay: Replay::None,
        }))
        .await
    {
        Packet::SubscribeAck(_) => {}
        other => panic!("{other:?}"),
    }
    // About 300 KB: finding the tags with a quadratic duplicate check takes many seconds.
    let body: String = (0..40_000).map(|i| format!("(#t{i}) ")).collect();
    let started = std::time::Instant::now();
    assert!(matches!(
        publish(&mut publisher, "tags", "text/plain", &body).await,
        Packet::PublishAck(_)
    ));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "publishing took {took:?}");
    match reader.next_packet().await {
        Some(Packet::Message(message)) => assert_eq!(message.channel, "tags"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn any_first_frame_but_session_init_is_session_required_even_when_malformed() {
    let server = start_server().await;
    // A PUBLISH without its channel, and a server frame without its fields.
    for frame_type in [FrameType::Publish, FrameType::Message, FrameType::Heartbeat] {
        let mut client = RawClient::connect(&server).await;
        send_empty(&mut client, frame_type, 9).await;
        let frames = {
            let mut frames = Vec::new();
            while let Some(frame) = client.next_frame().await {
                frames.push(frame);
            }
            frames
        };
        assert_eq!(frames.len(), 1, "{frame_type:?}");
        assert_eq!(frames[0].request_id, 9);
        assert_eq!(
            error_code(&Packet::from_frame(&frames[0]).unwrap()),
            Some(ErrorCode::SessionRequired),
            "{frame_type:?}"
        );
    }
    server.shutdown().await;
}
