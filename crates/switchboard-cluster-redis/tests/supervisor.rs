//! The supervised command connection against real Redis processes: it connects and
//! runs operations, fails fast and recovers when Redis is killed or stopped, keeps the
//! backplane generation honest across restarts, and refuses a Redis that does not fit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_cluster_redis::BackplaneError;
use switchboard_cluster_redis::supervisor::{Fsync, MismatchPolicy, Supervisor, SupervisorConfig};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};
use switchboard_cluster_redis::url;
use tokio_util::sync::CancellationToken;

/// Every test ends within this, whatever happens.
const TEST_BOUND: Duration = Duration::from_secs(60);
/// A shorter operation bound than the default, to keep the tests quick.
const OP_TIMEOUT: Duration = Duration::from_millis(800);
/// What an operation may take beyond its bound (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(100);

fn config(redis_url: &str) -> SupervisorConfig {
    let target = match url::parse(redis_url) {
        Ok(target) => target,
        Err(error) => panic!("{redis_url}: {error}"),
    };
    let mut config = SupervisorConfig::new(target);
    config.op_timeout = OP_TIMEOUT;
    config.connect_timeout = OP_TIMEOUT;
    config
}

struct Running {
    supervisor: Arc<Supervisor>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(config: SupervisorConfig) -> Running {
        let shutdown = CancellationToken::new();
        let (supervisor, task) = Supervisor::start(config, shutdown.clone());
        Running {
            supervisor,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        assert!(stopped.is_ok(), "the supervisor did not stop");
        assert!(!self.supervisor.health().connected);
    }
}

async fn ping(supervisor: &Supervisor) -> Result<String, BackplaneError> {
    supervisor
        .run(|connection| {
            Box::pin(async move { Ok(redis::cmd("PING").query_async(connection).await?) })
        })
        .await
}

/// Pings until one answers, for at most `bound`.
async fn ping_until_ok(supervisor: &Supervisor, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        match ping(supervisor).await {
            Ok(_) => return,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "not yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no answer within {bound:?}: {error}"),
        }
    }
}

/// The failure of an operation while Redis is gone: refused at once, timed out, or the
/// connection broke under it; never anything else.
fn assert_outage_error(error: &BackplaneError) {
    assert!(
        matches!(
            error,
            BackplaneError::Unavailable(_) | BackplaneError::Timeout(_)
        ) || error.breaks_connection(),
        "unexpected error while Redis is down: {error:?}"
    );
}

fn redis(options: RedisOptions) -> RedisProc {
    match RedisProc::start(options) {
        Ok(redis) => redis,
        Err(error) => panic!("redis-server did not start: {error}"),
    }
}

async fn bounded<F: Future>(test: F) -> F::Output {
    match tokio::time::timeout(TEST_BOUND, test).await {
        Ok(output) => output,
        Err(_) => panic!("the test did not end within {TEST_BOUND:?}"),
    }
}

/// The generation a supervisor gets after `redis` was killed and started again.
async fn generation_across_restart(options: RedisOptions) -> (u64, u64) {
    let mut redis = redis(options);
    let running = Running::start(config(&redis.url()));
    let supervisor = Arc::clone(&running.supervisor);
    supervisor
        .wait_connected(Duration::from_secs(5))
        .await
        .expect("connects");
    let before = supervisor.generation();
    redis.restart().expect("redis restarts");
    ping_until_ok(&supervisor, Duration::from_secs(10)).await;
    let after = supervisor.generation();
    assert_eq!(supervisor.health().connects, 2);
    running.stop().await;
    (before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_and_runs_an_operation() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let running = Running::start(config(&redis.url()));
        let supervisor = Arc::clone(&running.supervisor);
        supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects");
        assert_eq!(ping(&supervisor).await.expect("ping"), "PONG");
        let health = supervisor.health();
        assert!(health.connected);
        assert_eq!(health.connects, 1);
        assert_eq!(health.generation, 1, "a fresh Redis starts generation 1");
        assert_eq!(supervisor.generation(), 1);
        assert_eq!(health.fsync, Some(Fsync::No));
        assert_eq!(health.master.as_deref(), Some(redis.url().as_str()));
        assert!(supervisor.client_info().is_some());
        let stored: String = redis.command(&["GET", "sb:gen"]).expect("get");
        assert_eq!(stored, "1");
        running.stop().await;
        assert!(matches!(
            ping(&supervisor).await,
            Err(BackplaneError::Unavailable(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_operations_fast_and_a_restart_is_picked_up() {
    bounded(async {
        let mut redis = redis(RedisOptions::default());
        let running = Running::start(config(&redis.url()));
        let supervisor = Arc::clone(&running.supervisor);
        let mut connections = supervisor.connections();
        supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects");
        connections.borrow_and_update();
        redis.kill();
        // Each operation while Redis is gone ends within its bound.
        let mut failures = 0;
        let outage = Instant::now();
        while outage.elapsed() < Duration::from_secs(2) {
            let started = Instant::now();
            let result = ping(&supervisor).await;
            let took = started.elapsed();
            assert!(took <= OP_TIMEOUT + SLACK, "an operation took {took:?}");
            match result {
                Ok(pong) => panic!("a killed Redis answered {pong}"),
                Err(error) => assert_outage_error(&error),
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(failures > 10);
        let health = supervisor.health();
        assert!(!health.connected);
        assert!(health.last_error.is_some());
        assert!(health.failed_attempts > 0);

        redis.restart().expect("redis restarts");
        // Nothing runs operations now: the supervisor comes back by itself.
        supervisor
            .wait_connected(Duration::from_secs(7))
            .await
            .expect("reconnects");
        assert!(*connections.borrow_and_update() >= 2);
        assert_eq!(ping(&supervisor).await.expect("ping"), "PONG");
        let health = supervisor.health();
        assert_eq!(health.reconnects, health.connects - 1);
        assert!(health.reconnects >= 1);
        running.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_bumps_on_a_restart_without_persistence() {
    bounded(async {
        let (before, after) = generation_across_restart(RedisOptions::default()).await;
        assert_eq!((before, after), (1, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_stays_on_a_restart_with_aof_always() {
    bounded(async {
        let (before, after) = generation_across_restart(RedisOptions::durable()).await;
        assert_eq!((before, after), (1, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_bumps_on_a_restart_with_aof_everysec() {
    bounded(async {
        let (before, after) = generation_across_restart(RedisOptions {
            aof: Some("everysec"),
            ..RedisOptions::default()
        })
        .await;
        assert_eq!((before, after), (1, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_never_goes_back_when_redis_lost_it() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        // What a node would hold after earlier generations on another life of this Redis.
        let _: () = redis.command(&["SET", "sb:gen", "7"]).expect("set");
        let running = Running::start(config(&redis.url()));
        let supervisor = Arc::clone(&running.supervisor);
        supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects");
        assert_eq!(supervisor.generation(), 8);
        // Redis loses everything while the node keeps going.
        let _: () = redis.command(&["FLUSHALL"]).expect("flush");
        let _: () = redis
            .command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            .expect("kill clients");
        ping_until_ok(&supervisor, Duration::from_secs(10)).await;
        assert_eq!(supervisor.generation(), 9);
        running.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_supervisors_agree_on_one_generation_after_a_restart() {
    bounded(async {
        let mut redis = redis(RedisOptions::default());
        let nodes: Vec<Running> = (0..3)
            .map(|_| Running::start(config(&redis.url())))
            .collect();
        for node in &nodes {
            node.supervisor
                .wait_connected(Duration::from_secs(5))
                .await
                .expect("connects");
        }
        let first: Vec<u64> = nodes.iter().map(|n| n.supervisor.generation()).collect();
        assert_eq!(first, vec![1, 1, 1]);
        redis.restart().expect("redis restarts");
        // All three notice at once and race through their handshakes.
        let pings = nodes
            .iter()
            .map(|node| ping_until_ok(&node.supervisor, Duration::from_secs(10)));
        futures::future::join_all(pings).await;
        let second: Vec<u64> = nodes.iter().map(|n| n.supervisor.generation()).collect();
        assert_eq!(second, vec![2, 2, 2]);
        let stored: String = redis.command(&["GET", "sb:gen"]).expect("get");
        assert_eq!(stored, "2");
        for node in nodes {
            node.stop().await;
        }
    })
    .await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_redis_times_operations_out_and_recovery_follows_resume() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let running = Running::start(config(&redis.url()));
        let supervisor = Arc::clone(&running.supervisor);
        supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects");
        redis.pause().expect("SIGSTOP");
        let mut timeouts = 0;
        let paused = Instant::now();
        // Long enough for several reconnection attempts to hang on the stopped server.
        while paused.elapsed() < Duration::from_secs(3) {
            let started = Instant::now();
            let result = ping(&supervisor).await;
            let took = started.elapsed();
            assert!(took <= OP_TIMEOUT + SLACK, "an operation took {took:?}");
            match result {
                Ok(pong) => panic!("a stopped Redis answered {pong}"),
                Err(BackplaneError::Timeout(_)) => timeouts += 1,
                Err(error) => assert_outage_error(&error),
            }
        }
        assert!(timeouts >= 1, "the first operation should have timed out");
        assert!(supervisor.health().timeouts >= 1);
        redis.resume().expect("SIGCONT");
        // Every operation is still answered within its bound while the supervisor comes back.
        let resumed = Instant::now();
        loop {
            let started = Instant::now();
            let result = ping(&supervisor).await;
            let took = started.elapsed();
            assert!(took <= OP_TIMEOUT + SLACK, "an operation took {took:?}");
            match result {
                Ok(_) => break,
                Err(error) => assert_outage_error(&error),
            }
            assert!(
                resumed.elapsed() < Duration::from_secs(8),
                "no recovery after SIGCONT: {:?}",
                supervisor.health()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(supervisor.health().connected);
        running.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_mismatch_is_refused_or_warned_as_configured() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let mut strict = config(&redis.url());
        strict.required_fsync = Some(Fsync::Always);
        strict.on_fsync_mismatch = MismatchPolicy::Refuse;
        let refused = Running::start(strict);
        let result = refused
            .supervisor
            .wait_connected(Duration::from_millis(1500))
            .await;
        assert!(
            matches!(result, Err(BackplaneError::Unavailable(_))),
            "{result:?}"
        );
        let health = refused.supervisor.health();
        assert!(!health.connected);
        let why = health.last_error.unwrap_or_default();
        assert!(
            why.contains("promises no fsync") && why.contains("needs appendfsync always"),
            "{why}"
        );
        assert!(matches!(
            ping(&refused.supervisor).await,
            Err(BackplaneError::Unavailable(message)) if message.contains("needs appendfsync always")
        ));
        refused.stop().await;

        let mut lenient = config(&redis.url());
        lenient.required_fsync = Some(Fsync::Always);
        lenient.on_fsync_mismatch = MismatchPolicy::Warn;
        let warned = Running::start(lenient);
        warned
            .supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects despite the mismatch");
        assert_eq!(warned.supervisor.health().fsync, Some(Fsync::No));
        warned.stop().await;

        // A Redis that promises enough is used under the strict policy.
        let durable = self::redis(RedisOptions::durable());
        let mut strict = config(&durable.url());
        strict.required_fsync = Some(Fsync::EverySec);
        let accepted = Running::start(strict);
        accepted
            .supervisor
            .wait_connected(Duration::from_secs(5))
            .await
            .expect("connects");
        assert_eq!(accepted.supervisor.health().fsync, Some(Fsync::Always));
        accepted.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_given_as_the_address_is_refused() {
    bounded(async {
        let master = redis(RedisOptions::default());
        let replica = redis(RedisOptions {
            replica_of: Some(master.port()),
            ..RedisOptions::default()
        });
        let running = Running::start(config(&replica.url()));
        let result = running
            .supervisor
            .wait_connected(Duration::from_millis(1500))
            .await;
        assert!(result.is_err(), "connected to a replica");
        let why = running.supervisor.health().last_error.unwrap_or_default();
        assert!(why.contains("is not a master (role slave)"), "{why}");
        running.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_without_showing_it() {
    bounded(async {
        let redis = redis(RedisOptions::default());
        let _: () = redis
            .command(&["CONFIG", "SET", "requirepass", "right-pw"])
            .expect("requirepass");
        let running = Running::start(config(&format!(
            "redis://:wrong-pw@127.0.0.1:{}",
            redis.port()
        )));
        let result = running
            .supervisor
            .wait_connected(Duration::from_millis(1500))
            .await;
        assert!(result.is_err(), "connected with a wrong password");
        let why = running.supervisor.health().last_error.unwrap_or_default();
        assert!(why.to_lowercase().contains("pass"), "{why}");
        assert!(!why.contains("wrong-pw"), "{why}");
        assert!(!running.supervisor.target().to_string().contains("wrong-pw"));
        running.stop().await;
    })
    .await;
}
