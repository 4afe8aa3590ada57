//! Streamed bodies between real `switchboard serve --cluster` processes: a body published
//! on one node is read whole on another over the node link (`--cluster-node-addr`), and
//! once its node is killed the reader gets BODY_UNAVAILABLE, not a short body.

#![cfg(unix)]

use std::time::Duration;

use switchboard_client::{Client, ClientConfig, Payload, ReceivedMessage};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

mod support;

const WAIT: Duration = Duration::from_secs(15);

fn serve_node(redis: &RedisProc, dir: &std::path::Path) -> (support::KillOnDrop, String) {
    let url = redis.url();
    support::serve_process(&[
        "--no-unix".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--cluster".as_ref(),
        url.as_ref(),
        "--cluster-node-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        // The test Redis promises no fsync.
        "--sync".as_ref(),
        "never".as_ref(),
    ])
}

async fn connect(addr: &str, name: &str) -> Client {
    let config = ClientConfig::new(addr, name).with_request_timeout(Duration::from_secs(10));
    Client::connect(config).await.expect("client connects")
}

/// The whole body of a message (its digest checked by the client), or the error that
/// ended it.
async fn read_body(message: ReceivedMessage) -> std::io::Result<Vec<u8>> {
    let mut reader = message.body_reader();
    let mut body = Vec::new();
    let reading = async {
        while let Some(part) = reader.chunk().await? {
            body.extend_from_slice(&part);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(WAIT, reading)
        .await
        .expect("the body ends within the wait")?;
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_read_from_its_node_and_is_unavailable_once_that_node_is_killed() {
    let redis = RedisProc::start(RedisOptions::default()).expect("redis-server starts");
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let (mut origin, origin_addr) = serve_node(&redis, dirs[0].path());
    let (_reader_node, reader_addr) = serve_node(&redis, dirs[1].path());

    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let publisher = connect(&origin_addr, "publisher").await;
    publisher
        .publish("files.big", Payload::default())
        .stream_from(&body[..], body.len() as u64)
        .await
        .expect("the streamed publish is taken");

    let reader = connect(&reader_addr, "reader").await;
    let message = reader
        .get_message("files.big", None)
        .await
        .expect("get_message")
        .expect("the message is in the history");
    assert!(message.is_streamed());
    assert!(read_body(message).await.expect("the whole body") == body);

    origin.kill().expect("SIGKILL");
    origin.wait().expect("reaped");
    let message = reader
        .get_message("files.big", None)
        .await
        .expect("get_message")
        .expect("the message is still in the history");
    let error = read_body(message)
        .await
        .expect_err("the body's node is gone");
    assert!(
        error.to_string().contains("BODY_UNAVAILABLE"),
        "unexpected error: {error}"
    );
}
