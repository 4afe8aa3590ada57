//! Large inline bodies: kept as they were read, apart from the MESSAGE head the hub
//! encodes, and read into a buffer of their own so that a history of large messages
//! holds their bodies and nothing more.
//!
//! Memory is counted by a global allocator (bytes allocated and not freed), so the bound
//! does not depend on the allocator's caches.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_proto::packet::{GetMessage, Packet, Publish, Replay, Subscribe};
use switchboard_proto::{Flags, Frame, FrameType};
use switchboard_server::{Server, ServerHandle};
use tokio::io::AsyncWriteExt;

mod common;
#[path = "common/live_bytes.rs"]
mod live_bytes;

use common::RawClient;
use live_bytes::LIVE_BYTES;

const BODY: usize = 64 * 1024;
/// Large messages published while memory is measured.
const MESSAGES: usize = 64;

fn body(seed: u8) -> Bytes {
    Bytes::from(
        (0..BODY)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

fn publish(channel: &str, body: Bytes) -> Packet {
    Packet::Publish(Publish {
        channel: channel.into(),
        content_type: "application/x-test".into(),
        user_headers: vec![("trace".into(), "abc".into())],
        body,
        ..Publish::default()
    })
}

/// Publishes `count` large messages, each after a small one, all in one write (so that
/// frames arrive whole, split and side by side in the server's reads), and waits for
/// every acknowledgement.
async fn publish_mixed(client: &mut RawClient, count: usize) {
    let mut out = BytesMut::new();
    let mut ids = Vec::new();
    for index in 0..count {
        for packet in [
            publish("big", Bytes::from(vec![b's'; 100])),
            publish("big", body(index as u8)),
        ] {
            let id = client.next_request_id();
            client
                .codec
                .encode_packet(id, Flags::empty(), &packet, &mut out)
                .expect("encode");
            ids.push(id);
        }
    }
    client.stream.write_all(&out).await.expect("write");
    drop(out);
    for id in ids {
        let frame = client.next_frame().await.expect("an ack");
        assert_eq!(frame.request_id, id);
        assert_eq!(frame.frame_type, FrameType::PublishAck, "{frame:?}");
    }
}

/// What is allocated and not freed, once the server's writers went idle.
async fn settled_live_bytes() -> isize {
    tokio::time::sleep(Duration::from_millis(400)).await;
    LIVE_BYTES.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_of_large_messages_holds_about_its_bodies() {
    let server = common::start_server().await;
    let (mut client, _) = RawClient::connect_session(&server, "publisher").await;
    publish_mixed(&mut client, 4).await;
    let before = settled_live_bytes().await;
    publish_mixed(&mut client, MESSAGES).await;
    let after = settled_live_bytes().await;
    let per_message = (after - before) / MESSAGES as isize;
    // Each large message holds its body (64 KiB) and a little: its head, its record, a
    // small message beside it. A body that kept its read buffer alive would hold that
    // buffer's other frames too.
    let bound = (BODY + BODY / 16) as isize;
    assert!(
        per_message <= bound,
        "{per_message} bytes held per 64 KiB message (bound {bound})"
    );
    server.shutdown().await;
}

async fn server_with(key: Option<&[u8]>) -> ServerHandle {
    let builder = Server::builder().listen_tcp("127.0.0.1:0");
    let builder = match key {
        Some(key) => builder.hmac_key(key.to_vec()),
        None => builder,
    };
    builder.start().await.expect("server starts")
}

async fn session(server: &ServerHandle, key: Option<&[u8]>, name: &str) -> RawClient {
    let mut client = RawClient::connect(server).await;
    if let Some(key) = key {
        client = client.with_mac(key);
    }
    client.open(name, 0).await;
    client
}

/// Sends a request and returns every frame answering it, up to the one `last` accepts.
async fn frames_answering(
    client: &mut RawClient,
    packet: Packet,
    last: impl Fn(&Frame) -> bool,
) -> Vec<Frame> {
    let id = client.next_request_id();
    client.send(id, Flags::empty(), &packet).await;
    let mut frames = Vec::new();
    loop {
        let frame = client.next_frame().await.expect("an answer");
        if frame.request_id != id {
            continue;
        }
        let done = last(&frame);
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// A 64 KiB message delivered live, fetched and replayed carries the same header block,
/// content and content CRC each time (the frames are checked, tags included, by the
/// client's decoder), with and without HMAC.
#[tokio::test]
async fn a_large_message_is_the_same_live_fetched_and_replayed() {
    for key in [None, Some(&b"shared-secret"[..])] {
        let server = server_with(key).await;
        let mut subscriber = session(&server, key, "subscriber").await;
        let subscribed = subscriber
            .request(Packet::Subscribe(Subscribe {
                pattern: "big".into(),
                replay: Replay::None,
            }))
            .await;
        assert!(
            matches!(subscribed, Packet::SubscribeAck(_)),
            "{subscribed:?}"
        );
        let mut publisher = session(&server, key, "publisher").await;
        let body = body(7);
        let acked = publisher.request(publish("big", body.clone())).await;
        assert!(matches!(acked, Packet::PublishAck(_)), "{acked:?}");

        let live = subscriber.next_frame().await.expect("the live message");
        assert_eq!(live.frame_type, FrameType::Message);
        assert_eq!((live.request_id, live.flags), (0, Flags::empty()));
        let fetched = frames_answering(
            &mut subscriber,
            Packet::GetMessage(GetMessage {
                channel: "big".into(),
                ..GetMessage::default()
            }),
            |_| true,
        )
        .await;
        let replayed = frames_answering(
            &mut subscriber,
            Packet::Subscribe(Subscribe {
                pattern: "big".into(),
                replay: Replay::SinceSeq(1),
            }),
            |frame| frame.frame_type == FrameType::Message,
        )
        .await;
        for copy in [&fetched[0], replayed.last().expect("a replay")] {
            assert_eq!(copy.frame_type, FrameType::Message);
            assert_eq!(copy.flags, Flags::REPLAY);
            assert_eq!(copy.headers, live.headers);
            assert_eq!(copy.content_crc, live.content_crc);
            assert_eq!(copy.content, live.content);
        }
        assert_eq!(live.content, body);
        let Ok(Packet::Message(message)) = Packet::from_frame(&live) else {
            panic!("a MESSAGE");
        };
        assert_eq!(message.content_type.as_str(), "application/x-test");
        assert_eq!(message.user_headers.len(), 1);
        server.shutdown().await;
    }
}
