//! What the cluster tests share: in-process nodes on a real Redis (or Sentinel URL),
//! clients of them, and the next message of a subscription within a bound.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, Subscription};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};
use switchboard_cluster_redis::{RedisBackplane, RedisConfig};
use switchboard_server::{Server, ServerHandle};

/// How long a test waits for a message it expects.
pub const WAIT: Duration = Duration::from_secs(15);

/// One server of a cluster, with its backplane.
pub struct Node {
    pub server: ServerHandle,
    pub backplane: Arc<RedisBackplane>,
}

/// A Redis without persistence, on a free port.
pub fn redis() -> RedisProc {
    RedisProc::start(RedisOptions::default()).expect("redis-server starts")
}

/// A node on the Redis at `url` (a `redis://` or `redis+sentinel://` URL), whose
/// operations are bounded by 1 s.
pub async fn node_at(url: &str) -> Node {
    let mut config = RedisConfig::new(url);
    config.op_timeout = Duration::from_millis(1000);
    let backplane = RedisBackplane::start(config).await.expect("node joins");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.clone())
        .start()
        .await
        .expect("node starts");
    Node { server, backplane }
}

/// A node on `redis`.
pub async fn node(redis: &RedisProc) -> Node {
    node_at(&redis.url()).await
}

/// `nodes` nodes on `redis`.
pub async fn cluster(redis: &RedisProc, nodes: usize) -> Vec<Node> {
    let mut started = Vec::new();
    for _ in 0..nodes {
        started.push(node(redis).await);
    }
    started
}

/// A client of `node`, named `name`.
pub async fn client(node: &Node, name: &str) -> Client {
    let addr = node.server.tcp_addr().expect("tcp address");
    let config =
        ClientConfig::new(addr.to_string(), name).with_request_timeout(Duration::from_secs(10));
    Client::connect(config).await.expect("client connects")
}

/// The next message's seq and text, within [`WAIT`].
pub async fn next(subscription: &mut Subscription) -> (u64, String) {
    let message = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription goes on")
        .expect("a message, not an error");
    (message.seq(), message.text().unwrap_or_default().to_owned())
}

/// A node on `redis` that answers for its streamed bodies on a node link of its own
/// (bound first, so that the node registers the address other nodes fetch from).
pub async fn node_with_link(redis: &RedisProc) -> Node {
    let link = std::net::TcpListener::bind("127.0.0.1:0").expect("node link binds");
    let link_addr = link.local_addr().expect("node link address");
    let mut config = RedisConfig::new(redis.url());
    config.op_timeout = Duration::from_millis(1000);
    config.link_addr = link_addr.to_string();
    let backplane = RedisBackplane::start(config).await.expect("node joins");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.clone())
        .node_link(link)
        .start()
        .await
        .expect("node starts");
    Node { server, backplane }
}
