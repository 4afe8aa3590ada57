//! The supervisor and the subscriber behind Sentinel: a failover moves both to the new
//! master, bumps the backplane generation, and live messages flow again; then the new
//! master is killed and the Sentinels bring back the first one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_cluster_redis::BackplaneError;
use switchboard_cluster_redis::subscriber::{Subscriber, SubscriberEvent, Topic};
use switchboard_cluster_redis::supervisor::{Supervisor, SupervisorConfig};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc, SentinelSet};
use switchboard_cluster_redis::url;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TEST_BOUND: Duration = Duration::from_secs(60);
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
const MASTER_NAME: &str = "sbmaster";
const TOPIC: &str = "sb:c:failover";

fn redis(options: RedisOptions) -> RedisProc {
    match RedisProc::start(options) {
        Ok(redis) => redis,
        Err(error) => panic!("redis-server did not start: {error}"),
    }
}

/// Waits until the replica has copied the master and says its link is up.
fn wait_replicating(replica: &RedisProc, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let info: String = replica
            .command(&["INFO", "replication"])
            .unwrap_or_default();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not sync: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn set(supervisor: &Supervisor, value: &str) -> Result<(), BackplaneError> {
    let value = value.to_owned();
    supervisor
        .run(move |connection| {
            Box::pin(async move {
                Ok(redis::cmd("SET")
                    .arg("sb:probe-write")
                    .arg(value)
                    .query_async(connection)
                    .await?)
            })
        })
        .await
}

/// Writes until a write succeeds on the master at `port` (the supervisor notices the
/// failover through failing writes and its reconnection), within the failover bound.
async fn wait_for_master(supervisor: &Supervisor, port: u16) -> Duration {
    let started = Instant::now();
    let wanted = format!("redis://127.0.0.1:{port}");
    loop {
        let written = set(supervisor, "x").await;
        let health = supervisor.health();
        if written.is_ok() && health.master.as_deref() == Some(wanted.as_str()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < FAILOVER_BOUND,
            "not on {wanted} within {FAILOVER_BOUND:?}: {written:?}, {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes on the master at `master` until the subscriber delivers it (it may still
/// be moving to that master when this starts).
async fn wait_delivered(
    events: &mut mpsc::Receiver<SubscriberEvent>,
    master: &RedisProc,
    payload: &str,
) {
    let started = Instant::now();
    loop {
        let published: redis::RedisResult<u64> = master.command(&["PUBLISH", TOPIC, payload]);
        assert!(published.is_ok(), "publish: {published:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if let SubscriberEvent::Push(push) = event
                && push.payload.as_ref() == payload.as_bytes()
            {
                assert_eq!(push.topic, TOPIC);
                return;
            }
        }
        assert!(
            started.elapsed() < FAILOVER_BOUND,
            "`{payload}` was not delivered within {FAILOVER_BOUND:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_the_supervisor_and_the_subscriber_to_the_new_master() {
    let test = async {
        let mut first = redis(RedisOptions::default());
        let mut second = redis(RedisOptions {
            replica_of: Some(first.port()),
            ..RedisOptions::default()
        });
        wait_replicating(&second, Duration::from_secs(10));
        let sentinels = SentinelSet::start(MASTER_NAME, first.port(), 3).expect("sentinels");
        sentinels
            .wait_settled(1, Duration::from_secs(20))
            .expect("sentinels settle");

        let target = url::parse(&sentinels.url()).expect("sentinel url");
        let mut config = SupervisorConfig::new(target);
        config.op_timeout = Duration::from_secs(1);
        config.connect_timeout = Duration::from_secs(1);
        let shutdown = CancellationToken::new();
        let (supervisor, supervising) = Supervisor::start(config, shutdown.clone());
        supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects through the sentinels");
        set(&supervisor, "before").await.expect("a write works");
        let first_url = format!("redis://127.0.0.1:{}", first.port());
        assert_eq!(
            supervisor.health().master.as_deref(),
            Some(first_url.as_str())
        );
        let generation = supervisor.generation();
        assert_eq!(generation, 1);

        let (subscriber, mut events, subscribing) =
            Subscriber::start(Arc::clone(&supervisor), 64, shutdown.clone());
        subscriber
            .follow(Topic::Exact(TOPIC.to_owned()))
            .await
            .expect("follow");
        wait_delivered(&mut events, &first, "on the first master").await;

        // A failover by hand: the replica becomes the master, the first one its replica.
        let answer: String = sentinels.sentinels()[0]
            .command(&["SENTINEL", "FAILOVER", MASTER_NAME])
            .expect("failover");
        assert_eq!(answer, "OK");
        let took = wait_for_master(&supervisor, second.port()).await;
        tracing::info!(?took, "moved to the promoted replica");
        assert_eq!(
            supervisor.generation(),
            generation + 1,
            "a promotion bumps the generation"
        );
        wait_delivered(&mut events, &second, "on the second master").await;
        assert!(subscriber.health().resubscribes >= 1);

        // The promoted master dies; the Sentinels promote the first one again. Sentinel
        // waits twice the failover timeout (10 s) before it fails the same master over
        // again, which this bound allows for.
        wait_replicating(&first, Duration::from_secs(10));
        second.kill();
        let deadline = Instant::now() + Duration::from_secs(25);
        let first_port = first.port();
        loop {
            let written = set(&supervisor, "y").await;
            let health = supervisor.health();
            if written.is_ok() && health.master.as_deref() == Some(first_url.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not back on {first_port}: {written:?}, {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(supervisor.generation(), generation + 2);
        wait_delivered(&mut events, &first, "on the first master again").await;

        shutdown.cancel();
        for task in [subscribing, supervising] {
            let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
            assert!(stopped.is_ok(), "a task did not stop");
        }
        first.kill();
    };
    match tokio::time::timeout(TEST_BOUND, test).await {
        Ok(()) => {}
        Err(_) => panic!("the test did not end within {TEST_BOUND:?}"),
    }
}
