//! Publishes without reply against a real server, which takes them in batches: a run of
//! them arrives in order, live and in history, each with its own id and seq; one that
//! fails fails alone and is reported by `flush`; a server that does not announce batches
//! gets the same publishes one frame each.

use std::time::Duration;

use futures::StreamExt;
use switchboard_client::{
    ChannelOptions, Client, ClientConfig, ErrorCode, ErrorKind, Payload, Replay, Since,
};
use switchboard_server::{Server, ServerHandle};

const WAIT: Duration = Duration::from_secs(10);
/// As many as a channel keeps by default.
const COUNT: usize = 1000;

async fn server(publish_batches: bool) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .configure(|config| config.publish_batches = publish_batches)
        .start()
        .await
        .expect("server starts")
}

async fn client(server: &ServerHandle, name: &str) -> Client {
    let address = server.tcp_addr().expect("a TCP address").to_string();
    Client::connect(ClientConfig::new(address, name))
        .await
        .expect("connects")
}

/// The server's count of bytes received.
fn bytes_received(server: &ServerHandle) -> u64 {
    server.hub().metrics().bytes_received
}

/// Publishes `COUNT` texts without reply on one client, received live by another and
/// read back from history; returns the bytes the server received for them.
async fn run_of_publishes(server: &ServerHandle) -> u64 {
    let reader = client(server, "reader").await;
    let mut live = reader
        .subscribe("ticks", Replay::None)
        .await
        .expect("subscribed");
    let writer = client(server, "writer").await;
    writer.flush().await.expect("flushed");
    let before = bytes_received(server);
    for n in 0..COUNT {
        writer
            .publish("ticks", Payload::text(&n.to_string()))
            .no_reply()
            .await
            .expect("queued");
    }
    writer.flush().await.expect("flushed");
    let received = bytes_received(server) - before;
    let mut ids = Vec::new();
    for n in 0..COUNT {
        let message = tokio::time::timeout(WAIT, live.next())
            .await
            .expect("a message in time")
            .expect("the subscription goes on")
            .expect("a message");
        assert_eq!(message.text(), Some(n.to_string().as_str()));
        assert_eq!(message.seq(), n as u64 + 1);
        ids.push(message.id());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids in order");
    let history = writer
        .get_messages("ticks", Since::Seq(1), Some(COUNT as u64))
        .await
        .expect("history");
    assert_eq!(history.len(), COUNT);
    for (n, message) in history.iter().enumerate() {
        assert_eq!(message.text(), Some(n.to_string().as_str()));
        assert_eq!(message.id(), ids[n]);
    }
    received
}

#[tokio::test]
async fn a_run_of_publishes_without_reply_arrives_in_order_in_fewer_bytes() {
    let batched = run_of_publishes(&server(true).await).await;
    let alone = run_of_publishes(&server(false).await).await;
    // A publish of its own costs a frame's prefix and header block; in a batch, the
    // length of its body.
    assert!(
        batched * 3 < alone,
        "{batched} bytes in batches, {alone} one frame each"
    );
}

#[tokio::test]
async fn a_publish_of_a_batch_over_a_limit_fails_alone_and_is_reported_by_flush() {
    let server = server(true).await;
    let writer = client(&server, "writer").await;
    let options = ChannelOptions {
        max_bytes: Some(8),
        ..ChannelOptions::default()
    };
    writer
        .create_channel("small", options)
        .await
        .expect("created");
    let reader = client(&server, "reader").await;
    let mut live = reader
        .subscribe("small", Replay::None)
        .await
        .expect("subscribed");
    for n in 0..100 {
        let text = if n == 50 {
            "far too long".to_owned()
        } else {
            n.to_string()
        };
        writer
            .publish("small", Payload::text(&text))
            .no_reply()
            .await
            .expect("queued");
    }
    match writer.flush().await {
        Err(error) if error.kind() == ErrorKind::NoReplyFailures => {
            assert!(error.to_string().starts_with("1 publish(es)"), "{error}");
            assert_eq!(error.code(), Some(ErrorCode::TooLarge));
        }
        other => panic!("expected the failed publish, got {other:?}"),
    }
    for n in (0..100).filter(|&n| n != 50) {
        let message = tokio::time::timeout(WAIT, live.next())
            .await
            .expect("a message in time")
            .expect("the subscription goes on")
            .expect("a message");
        assert_eq!(message.text(), Some(n.to_string().as_str()));
    }
}
