//! The test harness itself works: Redis starts, is killed and restarts with its AOF,
//! pauses and resumes.

use std::time::Duration;

use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

#[test]
fn aof_always_survives_kill_and_restart_and_memory_only_does_not() {
    let mut durable = RedisProc::start(RedisOptions::durable()).expect("redis starts");
    let mut volatile = RedisProc::start(RedisOptions::default()).expect("redis starts");
    for redis in [&durable, &volatile] {
        let _: () = redis.command(&["SET", "k", "v"]).expect("set");
    }
    durable.restart().expect("restart");
    volatile.restart().expect("restart");
    let kept: Option<String> = durable.command(&["GET", "k"]).expect("get");
    let lost: Option<String> = volatile.command(&["GET", "k"]).expect("get");
    assert_eq!(kept.as_deref(), Some("v"));
    assert_eq!(lost, None);
}

#[cfg(unix)]
#[test]
fn a_paused_redis_answers_nothing_until_resumed() {
    let redis = RedisProc::start(RedisOptions::default()).expect("redis starts");
    redis.pause().expect("pause");
    // Connecting includes a handshake the paused server never answers.
    let paused: redis::RedisResult<String> = redis::Client::open(redis.url())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut connection| redis::cmd("PING").query(&mut connection));
    assert!(paused.is_err(), "a stopped redis answered: {paused:?}");
    redis.resume().expect("resume");
    let pong: String = redis.command(&["PING"]).expect("ping");
    assert_eq!(pong, "PONG");
}
