//! Names with invisible or bidirectional-control characters are refused everywhere a
//! client names something (the finding: `alice` and `alice\u{200b}` could coexist).

mod common;

use common::{RawClient, start_server};
use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{
    CreateChannel, CreateGroup, Identify, Packet, Publish, SessionInit, Subscribe,
};

/// The code and message of an ERROR, or a panic naming what came instead.
fn refusal(packet: Packet) -> (ErrorCode, String) {
    match packet {
        Packet::Error(error) => (error.code, error.message.to_string()),
        other => panic!("expected an ERROR, got {other:?}"),
    }
}

/// Finding 12 (names): a session named `alice\u{200b}` is refused with INVALID_ARGUMENT
/// and a message naming the character, while `alice` is served.
#[tokio::test]
async fn a_client_name_with_a_zero_width_space_is_refused() {
    let server = start_server().await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    for impostor in ["alice\u{200b}", "\u{feff}alice", "alice\u{202e}", "alice "] {
        let mut client = RawClient::connect(&server).await;
        let answer = client
            .request(Packet::SessionInit(SessionInit {
                name: impostor.into(),
                ..SessionInit::default()
            }))
            .await;
        let (code, message) = refusal(answer);
        assert_eq!(code, ErrorCode::InvalidArgument, "{impostor:?}: {message}");
        assert!(message.contains("client"), "{message}");
        assert!(
            client.until_closed().await.is_empty(),
            "the connection is closed"
        );
    }
    let (_, message) = refusal(
        RawClient::connect(&server)
            .await
            .request(Packet::SessionInit(SessionInit {
                name: "alice\u{200b}".into(),
                ..SessionInit::default()
            }))
            .await,
    );
    assert!(message.contains("U+200B"), "{message}");
    assert!(matches!(
        alice.request(Packet::Identify(Identify)).await,
        Packet::Identity(identity) if identity.name == "alice"
    ));
    server.shutdown().await;
}

/// Finding 12 (names): channel, group, hashtag and header names with an invisible
/// character are refused with INVALID_ARGUMENT; the same names without it work.
#[tokio::test]
async fn channel_group_hashtag_and_header_names_must_be_visible() {
    let server = start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "maker").await;
    let invisible = [
        Packet::CreateChannel(CreateChannel {
            name: "news\u{202e}".into(),
            ..CreateChannel::default()
        }),
        Packet::CreateGroup(CreateGroup {
            name: "club\u{200b}".into(),
            ..CreateGroup::default()
        }),
        Packet::Subscribe(Subscribe {
            pattern: "#rust\u{2060}".into(),
            replay: Default::default(),
        }),
        Packet::Publish(Publish {
            channel: "news\u{200d}".into(),
            body: "x".into(),
            ..Publish::default()
        }),
        Packet::Publish(Publish {
            channel: "news".into(),
            user_headers: vec![("trace\u{200b}".into(), "1".into())],
            body: "x".into(),
            ..Publish::default()
        }),
    ];
    for packet in invisible {
        let (code, message) = refusal(client.request(packet.clone()).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{packet:?}: {message}");
        assert!(message.contains("invisible"), "{message}");
    }
    let visible = [
        Packet::CreateChannel(CreateChannel {
            name: "news".into(),
            ..CreateChannel::default()
        }),
        Packet::CreateGroup(CreateGroup {
            name: "club".into(),
            ..CreateGroup::default()
        }),
        Packet::Publish(Publish {
            channel: "news".into(),
            user_headers: vec![("trace".into(), "1".into())],
            body: "x".into(),
            ..Publish::default()
        }),
    ];
    for packet in visible {
        let answer = client.request(packet.clone()).await;
        assert!(
            !matches!(answer, Packet::Error(_)),
            "{packet:?}: {answer:?}"
        );
    }
    server.shutdown().await;
}
