//! A server whose frames are smaller than the client's streaming chunk: bodies over its
//! `max_frame` are streamed both ways in chunks that fit its frames, and come back whole
//! through GET_MESSAGE, a live subscription and a replay.

use std::time::Duration;

use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, Payload, ReceivedMessage, Replay};
use switchboard_server::{Server, ServerHandle};

const WAIT: Duration = Duration::from_secs(20);
const MAX_FRAME: u32 = 16 * 1024;
const SIZES: [usize; 2] = [100 * 1024, 3 * 1024 * 1024];

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn small_frame_server() -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.max_frame = MAX_FRAME)
        .start()
        .await
        .unwrap()
}

async fn connect(server: &ServerHandle, name: &str) -> Client {
    let address = server.tcp_addr().unwrap().to_string();
    Client::connect(ClientConfig::new(address, name).with_request_timeout(WAIT))
        .await
        .unwrap()
}

/// Reads a message's body through its reader, failing if it stalls.
async fn read_body(message: ReceivedMessage) -> Vec<u8> {
    let mut reader = message.body_reader();
    let mut received = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, reader.chunk())
        .await
        .expect("the next piece of the body in time")
        .expect("the body arrives")
    {
        received.extend_from_slice(&chunk);
    }
    received
}

async fn next_message<S>(subscription: &mut S) -> ReceivedMessage
where
    S: futures::Stream<Item = switchboard_client::Result<ReceivedMessage>> + Unpin,
{
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message in time")
        .expect("the subscription goes on")
        .expect("a message")
}

#[tokio::test]
async fn streamed_bodies_come_back_whole_from_a_server_with_small_frames() {
    let server = small_frame_server().await;
    let publisher = connect(&server, "publisher").await;
    assert_eq!(publisher.session().limits.max_frame, MAX_FRAME);
    let reader = connect(&server, "reader").await;
    let mut live = reader.subscribe("files", Replay::None).await.unwrap();

    let bodies: Vec<Vec<u8>> = SIZES.iter().map(|&len| body(len)).collect();
    let mut ids = Vec::new();
    for (index, data) in bodies.iter().enumerate() {
        let payload = Payload::default();
        let ack = if index == 0 {
            // A large body given whole is streamed like one read from a reader.
            publisher
                .publish("files", Payload::bytes(data.clone()))
                .await
        } else {
            publisher
                .publish("files", payload)
                .stream_from(&data[..], data.len() as u64)
                .await
        }
        .unwrap();
        ids.push(ack.id);

        let message = next_message(&mut live).await;
        assert_eq!(message.id(), ack.id);
        assert!(
            read_body(message).await == *data,
            "live: body {index} whole"
        );
    }

    for (data, id) in bodies.iter().zip(&ids) {
        let message = tokio::time::timeout(WAIT, reader.get_message("files", Some(*id)))
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("the message is stored");
        assert!(read_body(message).await == *data, "fetched: body whole");
    }

    let mut replay = reader.subscribe("files", Replay::Last(2)).await.unwrap();
    for (data, id) in bodies.iter().zip(&ids) {
        let message = next_message(&mut replay).await;
        assert_eq!(message.id(), *id);
        assert!(read_body(message).await == *data, "replayed: body whole");
    }
    server.shutdown().await;
}
