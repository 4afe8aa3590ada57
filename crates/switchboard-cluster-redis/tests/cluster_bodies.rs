//! Streamed bodies across a cluster, on a real Redis: the body stays on the node that
//! received it and other nodes read it over the node link, live and from history; an
//! origin that is gone or a link cut mid-body ends the stream with BODY_UNAVAILABLE,
//! never a short body; the node link refuses requests not signed with the cluster's key.

mod common;
use common::*;

use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use switchboard_client::{Payload, ReceivedMessage, Replay};
use switchboard_cluster_redis::testing::RedisProc;
use switchboard_cluster_redis::{RedisBackplane, RedisConfig};
use switchboard_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1024 * 1024;
const BODY_LEN: u64 = 16 * MIB;

/// A body of `len` bytes no two MiB of which are alike, and its SHA-256.
fn body(len: u64) -> (Vec<u8>, [u8; 32]) {
    let body: Vec<u8> = (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect();
    let digest = Sha256::digest(&body).into();
    (body, digest)
}

/// Reads a message's whole body (the client checks its digest); the digest of what was
/// read, or the error that ended it.
async fn read_body(message: ReceivedMessage) -> std::io::Result<[u8; 32]> {
    assert!(message.is_streamed(), "the body comes streamed");
    let mut reader = message.body_reader();
    let mut hasher = Sha256::new();
    let reading = async {
        while let Some(part) = reader.chunk().await? {
            hasher.update(&part);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(WAIT, reading)
        .await
        .expect("the body ends within the wait")?;
    Ok(hasher.finalize().into())
}

async fn next_message(subscription: &mut switchboard_client::Subscription) -> ReceivedMessage {
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription goes on")
        .expect("a message, not an error")
}

async fn publish_body(node: &Node, channel: &str, data: &[u8]) {
    let publisher = client(node, "publisher").await;
    publisher
        .publish(channel, Payload::default())
        .stream_from(data, data.len() as u64)
        .await
        .expect("the streamed publish is taken");
}

/// A counter of `node`'s stats.
fn stat(node: &Node, name: &str) -> u64 {
    node.server
        .stats()
        .into_iter()
        .find(|(stat, _)| stat == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no stat {name}"))
}

fn assert_unavailable(result: std::io::Result<[u8; 32]>) {
    let error = result.expect_err("the body must not be handed over");
    assert!(
        error.to_string().contains("BODY_UNAVAILABLE"),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn a_large_body_is_read_live_and_from_history_on_other_nodes() {
    let redis = redis();
    let a = node_with_link(&redis).await;
    let b = node_with_link(&redis).await;
    let c = node_with_link(&redis).await;
    let on_b = client(&b, "reader-b").await;
    let mut live = on_b
        .subscribe("files.big", Replay::None)
        .await
        .expect("subscribe");
    let (data, digest) = body(BODY_LEN);
    publish_body(&a, "files.big", &data).await;

    let message = next_message(&mut live).await;
    assert_eq!(message.body_len(), BODY_LEN);
    assert_eq!(read_body(message).await.expect("the whole body"), digest);

    let on_c = client(&c, "reader-c").await;
    let stored = on_c
        .get_message("files.big", None)
        .await
        .expect("get_message")
        .expect("the message is in the history");
    assert_eq!(read_body(stored).await.expect("the whole body"), digest);

    // The origin's own sessions read it too.
    let on_a = client(&a, "reader-a").await;
    let own = on_a
        .get_message("files.big", None)
        .await
        .expect("get_message")
        .expect("the message is in the history");
    assert_eq!(read_body(own).await.expect("the whole body"), digest);

    assert_eq!(stat(&a, "cluster_bodies_kept"), 1);
    assert_eq!(stat(&a, "cluster_bodies_served"), 2);
    assert_eq!(stat(&b, "cluster_bodies_fetched"), 1);
    assert_eq!(stat(&c, "cluster_bodies_fetched"), 1);
    assert_eq!(
        stat(&a, "cluster_bodies_fetched"),
        0,
        "read from its own file"
    );
}

#[tokio::test]
async fn a_body_whose_node_is_gone_is_unavailable_and_the_session_goes_on() {
    let redis = redis();
    let a = node_with_link(&redis).await;
    let b = node_with_link(&redis).await;
    let (data, _) = body(2 * MIB);
    publish_body(&a, "files.gone", &data).await;
    a.server.shutdown().await;

    let on_b = client(&b, "reader").await;
    let stored = on_b
        .get_message("files.gone", None)
        .await
        .expect("get_message")
        .expect("the message is in the history");
    assert_unavailable(read_body(stored).await);
    assert_eq!(stat(&b, "cluster_bodies_unavailable"), 1);

    // The session is still good for the next request.
    on_b.publish("files.gone", Payload::text("after"))
        .await
        .expect("publish after the failed body");
}

/// Forwards connections to `target`, cutting each after `limit` bytes from the target.
async fn cutting_proxy(listener: TcpListener, target: std::net::SocketAddr, limit: u64) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let (mut from_reader, mut to_reader) = inbound.split();
            let (from_origin, mut to_origin) = outbound.into_split();
            let upstream = tokio::io::copy(&mut from_reader, &mut to_origin);
            let mut limited = from_origin.take(limit);
            let downstream = tokio::io::copy(&mut limited, &mut to_reader);
            tokio::select! {
                _ = upstream => {}
                _ = downstream => {}
            }
            // Dropped here: the reader sees the connection end mid-body.
        });
    }
}

#[tokio::test]
async fn a_link_cut_mid_body_aborts_the_stream_instead_of_a_short_body() {
    let redis = redis();
    // Node A advertises a proxy that cuts the body off after 3 MiB.
    let link = std::net::TcpListener::bind("127.0.0.1:0").expect("link binds");
    let link_addr = link.local_addr().expect("link address");
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
    let proxy_addr = proxy.local_addr().expect("proxy address");
    let proxying = tokio::spawn(cutting_proxy(proxy, link_addr, 3 * MIB));
    let mut config = RedisConfig::new(redis.url());
    config.op_timeout = Duration::from_millis(1000);
    config.link_addr = proxy_addr.to_string();
    let backplane = RedisBackplane::start(config).await.expect("node joins");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.clone())
        .node_link(link)
        .start()
        .await
        .expect("node starts");
    let a = Node { server, backplane };
    let b = node_with_link(&redis).await;

    let on_b = client(&b, "reader").await;
    let mut live = on_b
        .subscribe("files.cut", Replay::None)
        .await
        .expect("subscribe");
    let (data, _) = body(8 * MIB);
    publish_body(&a, "files.cut", &data).await;
    let message = next_message(&mut live).await;
    assert_unavailable(read_body(message).await);
    on_b.publish("files.cut", Payload::text("after"))
        .await
        .expect("publish after the failed body");
    proxying.abort();
}

#[tokio::test]
async fn a_node_link_that_never_answers_is_given_up_within_its_bound() {
    let redis = redis();
    // Node A advertises a listener that takes connections and says nothing.
    let link = std::net::TcpListener::bind("127.0.0.1:0").expect("link binds");
    let silent = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("silent binds");
    let silent_addr = silent.local_addr().expect("silent address");
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let mut config = RedisConfig::new(redis.url());
    config.op_timeout = Duration::from_millis(1000);
    config.link_addr = silent_addr.to_string();
    let backplane = RedisBackplane::start(config).await.expect("node joins");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.clone())
        .node_link(link)
        .start()
        .await
        .expect("node starts");
    let a = Node { server, backplane };
    let b = node_with_link(&redis).await;
    let (data, _) = body(2 * MIB);
    publish_body(&a, "files.silent", &data).await;

    let on_b = client(&b, "reader").await;
    let stored = on_b
        .get_message("files.silent", None)
        .await
        .expect("get_message")
        .expect("the message is in the history");
    let started = std::time::Instant::now();
    assert_unavailable(read_body(stored).await);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a silent origin held the reader for {took:?}"
    );
    holding.abort();
}

#[tokio::test]
async fn the_node_link_refuses_a_request_without_the_clusters_key() {
    let redis: RedisProc = redis();
    let link = std::net::TcpListener::bind("127.0.0.1:0").expect("link binds");
    let link_addr = link.local_addr().expect("link address");
    let mut config = RedisConfig::new(redis.url());
    config.link_addr = link_addr.to_string();
    let backplane = RedisBackplane::start(config).await.expect("node joins");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.clone())
        .node_link(link)
        .start()
        .await
        .expect("node starts");

    let ask = |key: Vec<u8>| async move {
        let mut stream = TcpStream::connect(link_addr).await.expect("connects");
        let mut hello = [0u8; 37];
        stream.read_exact(&mut hello).await.expect("hello");
        assert_eq!(&hello[..4], b"SBNL");
        let id = [9u8; 16];
        let tag = switchboard_proto::MacKey::new(&key).tag(&[&hello[5..], &id]);
        stream.write_all(&id).await.expect("asks");
        stream.write_all(&tag).await.expect("asks");
        tokio::time::timeout(WAIT, stream.read_u8())
            .await
            .expect("an answer")
            .expect("a status")
    };
    // Signed with another key: refused.
    assert_eq!(ask(vec![7; 32]).await, 2);
    let node = Node { server, backplane };
    assert_eq!(stat(&node, "cluster_link_refused"), 1);
    // Signed with the cluster's key: accepted, and the body is simply unknown.
    let mut redis_conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key: Vec<u8> = redis::cmd("GET")
        .arg("sb:node-link-key")
        .query_async(&mut redis_conn)
        .await
        .expect("the key is there once a node served");
    assert_eq!(ask(key).await, 1);
}

#[tokio::test]
async fn a_large_group_post_reaches_members_on_other_nodes_whole() {
    let redis = redis();
    let a = node_with_link(&redis).await;
    let b = node_with_link(&redis).await;
    let poster = client(&a, "poster").await;
    let member = client(&b, "member").await;
    poster.create_group("crew", "").await.expect("created");
    poster.join_group("crew").await.expect("joined");
    member.join_group("crew").await.expect("joined");
    let mut feed = member.group_feed().expect("feed");
    let (data, digest) = body(3 * MIB);
    poster
        .post("crew", Payload::default())
        .stream_from(&data[..], data.len() as u64)
        .await
        .expect("the streamed post is taken");
    let post = loop {
        let item = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("an item within the wait")
            .expect("the feed goes on");
        if let switchboard_client::GroupItem::Message(message) = item {
            break message;
        }
    };
    assert_eq!(post.body_len(), 3 * MIB);
    assert_eq!(read_body(post).await.expect("the whole body"), digest);
    let history = member
        .group_messages("crew", switchboard_client::Since::All, None)
        .await
        .expect("group history");
    let stored = history
        .into_iter()
        .last()
        .expect("the post is in the history");
    assert_eq!(read_body(stored).await.expect("the whole body"), digest);
    // A streamed post from someone who is not a member is refused.
    let outsider = client(&b, "outsider").await;
    let refused = outsider
        .post("crew", Payload::default())
        .stream_from(&data[..], data.len() as u64)
        .await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(switchboard_client::ErrorCode::Forbidden)
    );
}
