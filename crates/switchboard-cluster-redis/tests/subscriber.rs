//! The pub/sub subscriber against real Redis processes: it follows exact topics and
//! globs, confirms a follow before returning, stops on unfollow, and comes back with
//! every topic (announcing `Resubscribed`) after its connection is killed, after Redis
//! restarts, and after its connection silently stops carrying anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_cluster_redis::subscriber::{
    Push, Subscriber, SubscriberEvent, SubscriberHealth, Topic,
};
use switchboard_cluster_redis::supervisor::{Supervisor, SupervisorConfig};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};
use switchboard_cluster_redis::url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const TEST_BOUND: Duration = Duration::from_secs(60);
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a message published now may take to be pushed.
const DELIVERY: Duration = Duration::from_secs(2);

struct Node {
    supervisor: Arc<Supervisor>,
    subscriber: Arc<Subscriber>,
    events: mpsc::Receiver<SubscriberEvent>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(redis_url: &str) -> Node {
        let target = match url::parse(redis_url) {
            Ok(target) => target,
            Err(error) => panic!("{redis_url}: {error}"),
        };
        let mut config = SupervisorConfig::new(target);
        config.op_timeout = OP_TIMEOUT;
        config.connect_timeout = OP_TIMEOUT;
        let shutdown = CancellationToken::new();
        let (supervisor, supervising) = Supervisor::start(config, shutdown.clone());
        supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects");
        let (subscriber, events, subscribing) =
            Subscriber::start(Arc::clone(&supervisor), 64, shutdown.clone());
        Node {
            supervisor,
            subscriber,
            events,
            shutdown,
            tasks: vec![subscribing, supervising],
        }
    }

    async fn follow(&self, topic: Topic) {
        if let Err(error) = self.subscriber.follow(topic.clone()).await {
            panic!("follow {topic:?}: {error}");
        }
    }

    async fn next_event(&mut self, bound: Duration) -> SubscriberEvent {
        match tokio::time::timeout(bound, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the subscriber stopped"),
            Err(_) => panic!("no event within {bound:?}; {:?}", self.subscriber.health()),
        }
    }

    async fn next_push(&mut self) -> Push {
        match self.next_event(DELIVERY).await {
            SubscriberEvent::Push(push) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    /// Waits for `Resubscribed`, skipping pushes; returns how long it took.
    async fn resubscribed(&mut self, bound: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let left = bound.saturating_sub(started.elapsed());
            if let SubscriberEvent::Resubscribed = self.next_event(left).await {
                return started.elapsed();
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
            assert!(stopped.is_ok(), "a task did not stop");
        }
        let health: SubscriberHealth = self.subscriber.health();
        assert!(!health.connected);
    }
}

fn redis(options: RedisOptions) -> RedisProc {
    match RedisProc::start(options) {
        Ok(redis) => redis,
        Err(error) => panic!("redis-server did not start: {error}"),
    }
}

async fn publisher(redis_url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url).expect("client");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("publisher connects in time")
    .expect("publisher connects")
}

async fn publish(publisher: &mut redis::aio::MultiplexedConnection, topic: &str, payload: &str) {
    let sent = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("PUBLISH")
            .arg(topic)
            .arg(payload)
            .query_async::<u64>(publisher),
    )
    .await;
    assert!(matches!(sent, Ok(Ok(_))), "publish failed: {sent:?}");
}

async fn bounded<F: Future>(test: F) -> F::Output {
    match tokio::time::timeout(TEST_BOUND, test).await {
        Ok(output) => output,
        Err(_) => panic!("the test did not end within {TEST_BOUND:?}"),
    }
}

fn exact(name: &str) -> Topic {
    Topic::Exact(name.to_owned())
}

fn pushed(topic: &str, pattern: Option<&str>, payload: &str) -> Push {
    Push {
        topic: topic.to_owned(),
        pattern: pattern.map(str::to_owned),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_topics_and_globs_are_delivered() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        let mut publisher = publisher(&redis.url()).await;
        node.follow(exact("sb:c:a")).await;
        node.follow(Topic::Glob("sb:c:b.*".to_owned())).await;
        assert_eq!(node.subscriber.health().followed, 2);
        publish(&mut publisher, "sb:c:a", "one").await;
        publish(&mut publisher, "sb:c:other", "not followed").await;
        publish(&mut publisher, "sb:c:b.x", "two").await;
        assert_eq!(node.next_push().await, pushed("sb:c:a", None, "one"));
        assert_eq!(
            node.next_push().await,
            pushed("sb:c:b.x", Some("sb:c:b.*"), "two")
        );
        // Following twice is harmless: one subscription, one delivery.
        node.follow(exact("sb:c:a")).await;
        publish(&mut publisher, "sb:c:a", "three").await;
        assert_eq!(node.next_push().await, pushed("sb:c:a", None, "three"));
        publish(&mut publisher, "sb:c:b.y", "four").await;
        assert_eq!(
            node.next_push().await,
            pushed("sb:c:b.y", Some("sb:c:b.*"), "four")
        );
        let health = node.subscriber.health();
        assert!(health.connected);
        assert_eq!(health.connects, 1);
        assert_eq!(health.resubscribes, 0);
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_right_after_follow_is_always_delivered() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        let mut publisher = publisher(&redis.url()).await;
        for round in 0..200 {
            let topic = format!("sb:c:round{round}");
            node.follow(exact(&topic)).await;
            let payload = round.to_string();
            publish(&mut publisher, &topic, &payload).await;
            assert_eq!(node.next_push().await, pushed(&topic, None, &payload));
        }
        assert_eq!(node.subscriber.health().followed, 200);
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfollow_stops_delivery() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        let mut publisher = publisher(&redis.url()).await;
        node.follow(exact("sb:c:gone")).await;
        node.follow(Topic::Glob("sb:c:glob.*".to_owned())).await;
        node.follow(exact("sb:c:kept")).await;
        node.subscriber.unfollow(exact("sb:c:gone"));
        node.subscriber
            .unfollow(Topic::Glob("sb:c:glob.*".to_owned()));
        // A follow confirmed after the unfollows were queued: they were applied before.
        node.follow(exact("sb:c:marker")).await;
        let numsub: Vec<redis::Value> = redis
            .command(&["PUBSUB", "NUMSUB", "sb:c:gone"])
            .expect("numsub");
        assert_eq!(numsub.get(1), Some(&redis::Value::Int(0)));
        let numpat: u64 = redis.command(&["PUBSUB", "NUMPAT"]).expect("numpat");
        assert_eq!(numpat, 0);
        publish(&mut publisher, "sb:c:gone", "late").await;
        publish(&mut publisher, "sb:c:glob.x", "late").await;
        publish(&mut publisher, "sb:c:kept", "kept").await;
        assert_eq!(node.next_push().await, pushed("sb:c:kept", None, "kept"));
        assert_eq!(node.subscriber.health().followed, 2);
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_connection_is_made_again_with_every_topic() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        let mut publisher = publisher(&redis.url()).await;
        node.follow(exact("sb:c:a")).await;
        node.follow(Topic::Glob("sb:c:g.*".to_owned())).await;
        let killed = redis.kill_pubsub_clients().expect("client kill");
        assert_eq!(killed, 1);
        node.resubscribed(Duration::from_secs(5)).await;
        publish(&mut publisher, "sb:c:a", "again").await;
        publish(&mut publisher, "sb:c:g.1", "glob again").await;
        assert_eq!(node.next_push().await, pushed("sb:c:a", None, "again"));
        assert_eq!(
            node.next_push().await,
            pushed("sb:c:g.1", Some("sb:c:g.*"), "glob again")
        );
        assert!(node.subscriber.health().resubscribes >= 1);
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_redis_is_followed_again() {
    bounded(async {
        let mut redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        node.follow(exact("sb:c:a")).await;
        redis.restart().expect("redis restarts");
        node.resubscribed(Duration::from_secs(10)).await;
        // The supervisor may make its connection again after the subscriber did, and
        // the subscriber follows it to the (same) master once more.
        node.supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("reconnects");
        let mut publisher = publisher(&redis.url()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            publish(&mut publisher, "sb:c:a", "after restart").await;
            match tokio::time::timeout(Duration::from_millis(500), node.events.recv()).await {
                Ok(Some(SubscriberEvent::Push(push))) => {
                    assert_eq!(push, pushed("sb:c:a", None, "after restart"));
                    break;
                }
                Ok(Some(SubscriberEvent::Resubscribed)) | Err(_) => {
                    assert!(Instant::now() < deadline, "{:?}", node.subscriber.health());
                }
                Ok(None) => panic!("the subscriber stopped"),
            }
        }
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_caught_by_the_probe() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let proxy = Proxy::start(redis.port()).await;
        let mut node = Node::start(&proxy.url()).await;
        node.follow(exact("sb:c:a")).await;
        // The supervisor's connection came first, the subscriber's second.
        assert_eq!(proxy.accepted(), 2);
        // The probe has been seen at least once before the fault.
        let seen = Instant::now();
        while node.subscriber.health().last_probe_rtt.is_none() {
            assert!(seen.elapsed() < Duration::from_secs(3), "no probe seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy.stall(1);
        let took = node.resubscribed(Duration::from_secs(6)).await;
        assert!(
            took <= Duration::from_millis(4500),
            "the silent connection was noticed after {took:?}"
        );
        let health = node.subscriber.health();
        assert_eq!(health.probe_failures, 1, "{health:?}");
        assert!(health.connected);
        // The command connection was never affected.
        assert_eq!(node.supervisor.health().connects, 1);
        let mut publisher = publisher(&redis.url()).await;
        publish(&mut publisher, "sb:c:a", "through the new connection").await;
        assert_eq!(
            node.next_push().await,
            pushed("sb:c:a", None, "through the new connection")
        );
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_followed_at_once_are_batched_and_all_confirmed() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        let mut publisher = publisher(&redis.url()).await;
        let topics: Vec<Topic> = (0..1200).map(|n| exact(&format!("sb:c:many{n}"))).collect();
        let follows = topics
            .iter()
            .map(|topic| node.subscriber.follow(topic.clone()));
        for result in futures::future::join_all(follows).await {
            assert!(result.is_ok(), "{result:?}");
        }
        assert_eq!(node.subscriber.health().followed, 1200);
        let numsub: Vec<redis::Value> = redis
            .command(&["PUBSUB", "NUMSUB", "sb:c:many0", "sb:c:many1199"])
            .expect("numsub");
        assert_eq!(numsub.get(1), Some(&redis::Value::Int(1)));
        assert_eq!(numsub.get(3), Some(&redis::Value::Int(1)));
        publish(&mut publisher, "sb:c:many1199", "last").await;
        assert_eq!(
            node.next_push().await,
            pushed("sb:c:many1199", None, "last")
        );
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_while_redis_is_down_fails_in_time_and_takes_effect_later() {
    bounded(async {
        let mut redis = redis(RedisOptions::default());
        let mut node = Node::start(&redis.url()).await;
        node.follow(exact("sb:c:before")).await;
        redis.kill();
        let started = Instant::now();
        let result = node.subscriber.follow(exact("sb:c:during")).await;
        assert!(started.elapsed() <= OP_TIMEOUT + Duration::from_millis(100));
        assert!(result.is_err(), "a follow was confirmed by a dead Redis");
        redis.restart().expect("redis restarts");
        node.resubscribed(Duration::from_secs(10)).await;
        let mut publisher = publisher(&redis.url()).await;
        publish(&mut publisher, "sb:c:during", "late follow").await;
        publish(&mut publisher, "sb:c:before", "early follow").await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match node.next_event(DELIVERY).await {
                SubscriberEvent::Push(push) => seen.push(push),
                SubscriberEvent::Resubscribed => {}
            }
        }
        assert_eq!(
            seen,
            vec![
                pushed("sb:c:during", None, "late follow"),
                pushed("sb:c:before", None, "early follow"),
            ]
        );
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_keep_up_is_cut_off_by_redis_and_resubscribed() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let _: () = redis
            .command(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "pubsub 1mb 0 0",
            ])
            .expect("config set");
        let mut node = Node::start(&redis.url()).await;
        node.follow(exact("sb:c:flood")).await;
        // Nobody reads the events while far more than every buffer on the way is sent,
        // at a pace a reader that kept up would follow: the backlog must stay in
        // Redis, which then closes the connection.
        let mut publisher = publisher(&redis.url()).await;
        let payload = "x".repeat(16 * 1024);
        for _ in 0..64 {
            let mut pipeline = redis::pipe();
            for _ in 0..32 {
                pipeline
                    .cmd("PUBLISH")
                    .arg("sb:c:flood")
                    .arg(&payload)
                    .ignore();
            }
            let flooded = tokio::time::timeout(
                Duration::from_secs(5),
                pipeline.query_async::<()>(&mut publisher),
            )
            .await;
            assert!(matches!(flooded, Ok(Ok(()))), "{flooded:?}");
            // A pause, so that a reader that keeps up stays under the limit.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut pushes = 0;
        // Ends at `Resubscribed` (or fails the test if it never comes).
        while let SubscriberEvent::Push(_) = node.next_event(Duration::from_secs(5)).await {
            pushes += 1;
        }
        assert!(
            pushes < 2048,
            "every message arrived: nothing was left in Redis"
        );
        assert_eq!(node.subscriber.health().resubscribes, 1);
        publish(&mut publisher, "sb:c:flood", "after").await;
        loop {
            // Messages read before the cut may still be queued ahead of this one.
            let push = node.next_push().await;
            if push.payload.as_ref() == b"after" {
                break;
            }
        }
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_url_are_used_by_both_connections() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let _: () = redis
            .command(&[
                "ACL", "SETUSER", "node", "on", ">n0de-pw", "~*", "&*", "+@all",
            ])
            .expect("acl setuser");
        let _: () = redis
            .command(&["CONFIG", "SET", "requirepass", "default-pw"])
            .expect("requirepass");
        for url in [
            format!("redis://node:n0de-pw@127.0.0.1:{}", redis.port()),
            format!("redis://:default-pw@127.0.0.1:{}", redis.port()),
        ] {
            let mut node = Node::start(&url).await;
            node.follow(exact("sb:c:auth")).await;
            let mut publisher = publisher(&url).await;
            publish(&mut publisher, "sb:c:auth", "authenticated").await;
            assert_eq!(
                node.next_push().await,
                pushed("sb:c:auth", None, "authenticated")
            );
            node.stop().await;
        }
    })
    .await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_url_serves_both_connections() {
    bounded(async {
        let socket_dir = tempfile::tempdir().expect("temp dir");
        let socket = socket_dir.path().join("redis.sock");
        let redis = redis(RedisOptions {
            extra: vec![
                "--unixsocket".to_owned(),
                socket.display().to_string(),
                "--unixsocketperm".to_owned(),
                "700".to_owned(),
            ],
            ..RedisOptions::default()
        });
        let url = format!("unix://{}", socket.display());
        let mut node = Node::start(&url).await;
        node.follow(exact("sb:c:local")).await;
        let mut publisher = publisher(&redis.url()).await;
        publish(&mut publisher, "sb:c:local", "over the socket").await;
        assert_eq!(
            node.next_push().await,
            pushed("sb:c:local", None, "over the socket")
        );
        node.stop().await;
    })
    .await;
}

/// A TCP proxy whose connections can be frozen one by one: a frozen connection stays
/// open and carries nothing either way, like a peer behind a dead network path.
struct Proxy {
    port: u16,
    links: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let links: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let stop = CancellationToken::new();
        tokio::spawn(Self::accept(
            listener,
            upstream,
            Arc::clone(&links),
            stop.clone(),
        ));
        Proxy { port, links, stop }
    }

    async fn accept(
        listener: TcpListener,
        upstream: u16,
        links: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
        stop: CancellationToken,
    ) {
        let mut pipes = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((client, _)) = accepted else { continue };
            let Ok(Ok(server)) = tokio::time::timeout(
                Duration::from_secs(2),
                TcpStream::connect(("127.0.0.1", upstream)),
            )
            .await
            else {
                continue;
            };
            let frozen = Arc::new(AtomicBool::new(false));
            if let Ok(mut links) = links.lock() {
                links.push(Arc::clone(&frozen));
            }
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            pipes.spawn(Self::pipe(client_read, server_write, Arc::clone(&frozen)));
            pipes.spawn(Self::pipe(server_read, client_write, frozen));
        }
        pipes.abort_all();
    }

    /// Copies one direction until either side closes; once frozen, it holds both ends
    /// open and moves nothing (until the proxy stops).
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        frozen: Arc<AtomicBool>,
    ) {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if frozen.load(Ordering::SeqCst) {
                // Holding the halves keeps both sockets open; the task is aborted when
                // the proxy stops.
                std::future::pending::<()>().await;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    /// Freezes the connection accepted `index`th (from 0).
    fn stall(&self, index: usize) {
        let links = self.links.lock().expect("links");
        links[index].store(true, Ordering::SeqCst);
    }

    fn accepted(&self) -> usize {
        self.links.lock().map(|links| links.len()).unwrap_or(0)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
