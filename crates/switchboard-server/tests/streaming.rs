//! Streamed bodies over real sockets with a bare protocol client: chunked upload,
//! chunked delivery to subscribers and fetchers, digests, broken and refused transfers,
//! and bodies surviving a restart.

mod common;

use bytes::Bytes;
use common::RawClient;
use sha2::{Digest, Sha256};
use switchboard_proto::packet::{
    Chunk, GetMessage, GetMessages, Packet, Publish, Replay, Since, StreamAbort, StreamStart,
    Subscribe,
};
use switchboard_proto::{ErrorCode, Flags, Limits};
use switchboard_server::{Server, ServerHandle};

const CHUNK: usize = 256 * 1024;

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sends a streamed PUBLISH of `data` in chunks; returns its request id.
async fn send_stream(
    client: &mut RawClient,
    channel: &str,
    stream_id: u64,
    data: &[u8],
    digest: [u8; 32],
) -> u32 {
    send_stream_in(client, channel, stream_id, data, digest, CHUNK).await
}

/// Sends a streamed PUBLISH of `data` in pieces of `chunk` bytes; returns its request id.
async fn send_stream_in(
    client: &mut RawClient,
    channel: &str,
    stream_id: u64,
    data: &[u8],
    digest: [u8; 32],
    chunk: usize,
) -> u32 {
    let request_id = client.next_request_id();
    let first = data.len().min(chunk);
    let publish = Packet::Publish(Publish {
        channel: channel.into(),
        content_type: "application/octet-stream".into(),
        body: Bytes::copy_from_slice(&data[..first]),
        stream: Some(StreamStart {
            stream_id,
            total_len: data.len() as u64,
        }),
        ..Publish::default()
    });
    client.send(request_id, Flags::empty(), &publish).await;
    let rest = &data[first..];
    let pieces: Vec<&[u8]> = if rest.is_empty() {
        vec![&[][..]]
    } else {
        rest.chunks(chunk).collect()
    };
    let count = pieces.len();
    for (index, piece) in pieces.into_iter().enumerate() {
        let chunk = Chunk {
            stream_id,
            data: Bytes::copy_from_slice(piece),
            digest: (index + 1 == count).then_some(digest),
        };
        client
            .send(request_id, Flags::empty(), &Packet::Chunk(chunk))
            .await;
    }
    request_id
}

async fn answer(client: &mut RawClient, request_id: u32) -> Packet {
    loop {
        let frame = client.next_frame().await.expect("an answer");
        if frame.request_id == request_id
            && !matches!(frame.frame_type, switchboard_proto::FrameType::Chunk)
        {
            return Packet::from_frame(&frame).expect("packet");
        }
    }
}

/// Reads one streamed MESSAGE and its chunks; returns the body.
async fn receive_stream(client: &mut RawClient) -> Vec<u8> {
    let (stream_id, total) = loop {
        match client.next_packet().await.expect("a message") {
            Packet::Message(message) => {
                let stream = message.stream.expect("a streamed message");
                assert!(message.body.is_empty() || message.body.len() as u64 <= stream.total_len);
                break (stream.stream_id, stream.total_len);
            }
            Packet::SubscribeAck(_) | Packet::MessagesEnd(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let mut data = Vec::with_capacity(total as usize);
    loop {
        match client.next_packet().await.expect("chunks") {
            Packet::Chunk(chunk) if chunk.stream_id == stream_id => {
                data.extend_from_slice(&chunk.data);
                if let Some(digest) = chunk.digest {
                    assert_eq!(data.len() as u64, total);
                    assert_eq!(
                        <[u8; 32]>::from(Sha256::digest(&data)),
                        digest,
                        "digest of the delivered body"
                    );
                    return data;
                }
            }
            Packet::MessagesEnd(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn memory_server() -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_streamed_body_reaches_subscribers_and_fetchers_whole() {
    let server = memory_server().await;
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    reader
        .request(Packet::Subscribe(Subscribe {
            pattern: "files".into(),
            replay: Replay::None,
        }))
        .await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let data = body(3 * 1024 * 1024 + 17);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let request_id = send_stream(&mut writer, "files", 7, &data, digest).await;
    match answer(&mut writer, request_id).await {
        Packet::PublishAck(ack) => assert_eq!(ack.seq, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(receive_stream(&mut reader).await, data);

    let (mut fetcher, _) = RawClient::connect_session(&server, "fetcher").await;
    fetcher
        .send(
            9,
            Flags::empty(),
            &Packet::GetMessage(GetMessage {
                channel: "files".into(),
                ..GetMessage::default()
            }),
        )
        .await;
    assert_eq!(receive_stream(&mut fetcher).await, data);
    fetcher
        .send(
            10,
            Flags::empty(),
            &Packet::GetMessages(GetMessages {
                channel: "files".into(),
                since: Since::All,
                ..GetMessages::default()
            }),
        )
        .await;
    assert_eq!(receive_stream(&mut fetcher).await, data);
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_with_small_frames_sends_bodies_in_chunks_that_fit_them() {
    const MAX_FRAME: u32 = 16 * 1024;
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.max_frame = MAX_FRAME)
        .start()
        .await
        .unwrap();
    // Receivers that take no frame larger than the server announced.
    let strict = |client: &mut RawClient, ack: &switchboard_proto::packet::SessionAck| {
        assert_eq!(ack.max_frame, MAX_FRAME);
        client.codec.set_limits(Limits {
            max_content_len: ack.max_frame,
            ..Limits::default()
        });
    };
    let (mut reader, ack) = RawClient::connect_session(&server, "reader").await;
    strict(&mut reader, &ack);
    reader
        .request(Packet::Subscribe(Subscribe {
            pattern: "files".into(),
            replay: Replay::None,
        }))
        .await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let data = body(3 * 1024 * 1024 + 17);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let request_id =
        send_stream_in(&mut writer, "files", 1, &data, digest, MAX_FRAME as usize).await;
    match answer(&mut writer, request_id).await {
        Packet::PublishAck(ack) => assert_eq!(ack.seq, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(receive_stream(&mut reader).await, data);

    let (mut fetcher, ack) = RawClient::connect_session(&server, "fetcher").await;
    strict(&mut fetcher, &ack);
    fetcher
        .send(
            2,
            Flags::empty(),
            &Packet::GetMessage(GetMessage {
                channel: "files".into(),
                ..GetMessage::default()
            }),
        )
        .await;
    assert_eq!(receive_stream(&mut fetcher).await, data);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_digest_or_length_stores_nothing() {
    let server = memory_server().await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let data = body(600 * 1024);
    let request_id = send_stream(&mut writer, "files", 1, &data, [0u8; 32]).await;
    match answer(&mut writer, request_id).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::StreamAborted, "{error:?}"),
        other => panic!("{other:?}"),
    }
    // Too long for what was announced.
    let request_id = writer.next_request_id();
    writer
        .send(
            request_id,
            Flags::empty(),
            &Packet::Publish(Publish {
                channel: "files".into(),
                body: Bytes::from(vec![1u8; 10]),
                stream: Some(StreamStart {
                    stream_id: 2,
                    total_len: 5,
                }),
                ..Publish::default()
            }),
        )
        .await;
    match answer(&mut writer, request_id).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::StreamAborted),
        other => panic!("{other:?}"),
    }
    // An abandoned stream is answered too.
    let request_id = writer.next_request_id();
    writer
        .send(
            request_id,
            Flags::empty(),
            &Packet::Publish(Publish {
                channel: "files".into(),
                body: Bytes::from(vec![1u8; 10]),
                stream: Some(StreamStart {
                    stream_id: 3,
                    total_len: 50,
                }),
                ..Publish::default()
            }),
        )
        .await;
    writer
        .send(
            request_id,
            Flags::empty(),
            &Packet::StreamAbort(StreamAbort {
                stream_id: 3,
                code: ErrorCode::StreamAborted,
                reason: "changed my mind".into(),
            }),
        )
        .await;
    match answer(&mut writer, request_id).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::StreamAborted),
        other => panic!("{other:?}"),
    }
    match writer
        .request(Packet::GetMessage(GetMessage {
            channel: "files".into(),
            ..GetMessage::default()
        }))
        .await
    {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::NotFound, "nothing was stored"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_sent() {
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.max_body = 1024 * 1024)
        .start()
        .await
        .unwrap();
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let request_id = writer.next_request_id();
    writer
        .send(
            request_id,
            Flags::empty(),
            &Packet::Publish(Publish {
                channel: "files".into(),
                stream: Some(StreamStart {
                    stream_id: 1,
                    total_len: 1024 * 1024 + 1,
                }),
                ..Publish::default()
            }),
        )
        .await;
    match answer(&mut writer, request_id).await {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::TooLarge),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_broken_transfer_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    writer
        .send(
            1,
            Flags::empty(),
            &Packet::Publish(Publish {
                channel: "files".into(),
                body: Bytes::from(vec![1u8; 1000]),
                stream: Some(StreamStart {
                    stream_id: 1,
                    total_len: 10_000_000,
                }),
                ..Publish::default()
            }),
        )
        .await;
    writer.request(Packet::Identify(Default::default())).await;
    let spool = dir.path().join("blobs").join("spool");
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        1,
        "the upload is spooling"
    );
    drop(writer);
    let (mut other, _) = RawClient::connect_session(&server, "other").await;
    for _ in 0..100 {
        if std::fs::read_dir(&spool).unwrap().count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "the partial upload is gone"
    );
    match other
        .request(Packet::GetMessage(GetMessage {
            channel: "files".into(),
            ..GetMessage::default()
        }))
        .await
    {
        Packet::Error(error) => assert_eq!(error.code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn streamed_bodies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Server::builder()
            .listen_tcp("127.0.0.1:0")
            .data_dir(dir.path())
            .start()
    };
    let server = start().await.unwrap();
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    let data = body(2 * 1024 * 1024 + 5);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let request_id = send_stream(&mut writer, "files", 1, &data, digest).await;
    assert!(matches!(
        answer(&mut writer, request_id).await,
        Packet::PublishAck(_)
    ));
    drop(writer);
    server.shutdown().await;
    drop(server);

    let server = start().await.unwrap();
    let (mut reader, _) = RawClient::connect_session(&server, "reader").await;
    reader
        .send(
            1,
            Flags::empty(),
            &Packet::GetMessage(GetMessage {
                channel: "files".into(),
                ..GetMessage::default()
            }),
        )
        .await;
    assert_eq!(receive_stream(&mut reader).await, data);
    server.shutdown().await;
}

/// Every message of `channel` as (seq, id), in the order the server lists them.
async fn seqs_and_ids(client: &mut RawClient, channel: &str) -> Vec<(u64, uuid::Uuid)> {
    let request_id = client.next_request_id();
    let get = Packet::GetMessages(GetMessages {
        channel: channel.into(),
        since: Since::All,
        ..GetMessages::default()
    });
    client.send(request_id, Flags::empty(), &get).await;
    let mut listed = Vec::new();
    loop {
        let frame = client.next_frame().await.expect("an answer");
        if frame.request_id != request_id {
            continue;
        }
        match Packet::from_frame(&frame).expect("packet") {
            Packet::Message(message) => listed.push((message.seq, message.id)),
            Packet::Chunk(_) => {}
            Packet::MessagesEnd(_) => return listed,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Publishes `data` in one frame; returns its request id.
async fn send_publish(client: &mut RawClient, channel: &str, data: &[u8]) -> u32 {
    let request_id = client.next_request_id();
    let publish = Packet::Publish(Publish {
        channel: channel.into(),
        content_type: "application/octet-stream".into(),
        body: Bytes::copy_from_slice(data),
        ..Publish::default()
    });
    client.send(request_id, Flags::empty(), &publish).await;
    request_id
}

fn assert_ids_follow_seqs(channel: &str, mut listed: Vec<(u64, uuid::Uuid)>) {
    listed.sort_by_key(|(seq, _)| *seq);
    for pair in listed.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "in {channel}, message {} has id {} but message {} has id {}",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
}

#[tokio::test]
async fn ids_of_streamed_and_framed_messages_sort_in_publish_order() {
    let server = memory_server().await;
    let (mut writer, _) = RawClient::connect_session(&server, "writer").await;
    // A streamed publish is two writes; without this the second waits for a delayed ACK.
    writer.stream.set_nodelay(true).unwrap();
    let data = body(100);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    // Each publish is answered before the next is sent, so publish order is the order
    // below, across both channels.
    let mut acks = Vec::new();
    for round in 0..40u64 {
        let channel = if round % 3 == 0 { "ids.b" } else { "ids.a" };
        let request_id = if round % 2 == 0 {
            send_stream(&mut writer, channel, round + 1, &data, digest).await
        } else {
            send_publish(&mut writer, channel, &data).await
        };
        match answer(&mut writer, request_id).await {
            Packet::PublishAck(ack) => acks.push((round, ack.id)),
            other => panic!("{other:?}"),
        }
    }
    for pair in acks.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "publish {} got id {} but the later publish {} got id {}",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
    for channel in ["ids.a", "ids.b"] {
        let listed = seqs_and_ids(&mut writer, channel).await;
        assert!(listed.len() > 10);
        assert_ids_follow_seqs(channel, listed);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_streamed_and_framed_publishes_to_one_channel_get_ids_in_seq_order() {
    let server = memory_server().await;
    let (mut streamer, _) = RawClient::connect_session(&server, "streamer").await;
    let (mut framer, _) = RawClient::connect_session(&server, "framer").await;
    // A streamed publish is two writes; without this the second waits for a delayed ACK.
    streamer.stream.set_nodelay(true).unwrap();
    framer.stream.set_nodelay(true).unwrap();
    let data = body(100);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    const EACH: u64 = 100;
    let streaming = async {
        for stream_id in 1..=EACH {
            let request_id =
                send_stream(&mut streamer, "ids.mixed", stream_id, &data, digest).await;
            assert!(matches!(
                answer(&mut streamer, request_id).await,
                Packet::PublishAck(_)
            ));
        }
    };
    let framing = async {
        for _ in 0..EACH {
            let request_id = send_publish(&mut framer, "ids.mixed", &data).await;
            assert!(matches!(
                answer(&mut framer, request_id).await,
                Packet::PublishAck(_)
            ));
        }
    };
    // Each waits for its answer before its next publish, so the two interleave.
    tokio::join!(streaming, framing);
    let listed = seqs_and_ids(&mut framer, "ids.mixed").await;
    assert_eq!(listed.len() as u64, 2 * EACH);
    assert_ids_follow_seqs("ids.mixed", listed);
    server.shutdown().await;
}
