//! Two servers as one hub behind Sentinel: a publisher on one node, a subscriber on the
//! other, and a failover by hand. The publisher gets acks again from the promoted
//! replica within the failover bound, the subscriber receives the new messages, and —
//! since a failover may lose writes the replica had not received — the channel begins a
//! new epoch that the subscriber is told of.

mod common;

use common::*;

use std::time::{Duration, Instant};

use switchboard_client::{Client, ErrorCode, Payload, Replay, Since};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc, SentinelSet};

const TEST_BOUND: Duration = Duration::from_secs(40);
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
const MASTER_NAME: &str = "sbnodes";
const CHANNEL: &str = "ledger";

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

/// Waits until the replica holds everything the master wrote so far, so that the
/// failover below loses nothing and what the epoch change says is only that it might.
fn wait_caught_up(master: &RedisProc, replica: &RedisProc, bound: Duration) {
    let offset = |redis: &RedisProc, field: &str| -> Option<u64> {
        let info: String = redis.command(&["INFO", "replication"]).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().parse().ok())
    };
    let deadline = Instant::now() + bound;
    loop {
        let wrote = offset(master, "master_repl_offset:");
        let copied = offset(replica, "master_repl_offset:");
        if wrote.is_some() && wrote == copied {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: {copied:?} of {wrote:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the Sentinels name the replica as the master and the first master has
/// become its replica.
fn wait_switched(sentinels: &SentinelSet, first: &RedisProc, second: &RedisProc, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let promoted = sentinels.master_port().ok() == Some(second.port());
        let demoted = first
            .command::<String>(&["INFO", "replication"])
            .is_ok_and(|info| info.contains("role:slave"));
        if promoted && demoted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no switch within {bound:?} (promoted {promoted}, demoted {demoted})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Publishes until one is acknowledged; every refusal on the way must be the
/// backplane's (never a hang: the client's request timeout bounds each try).
async fn publish_when_back(client: &Client, text: &str) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        match client.publish(CHANNEL, Payload::text(text)).await {
            Ok(ack) => return (ack.seq, started.elapsed()),
            Err(error) if started.elapsed() < FAILOVER_BOUND => {
                assert!(
                    error.code() == Some(ErrorCode::BackplaneUnavailable) || error.is_timeout(),
                    "refused for another reason: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no ack within {FAILOVER_BOUND:?} of the failover: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_two_nodes_brings_acks_back_and_tells_the_subscriber_of_a_new_epoch() {
    let test = async {
        let first = RedisProc::start(RedisOptions::default()).expect("master starts");
        let second = RedisProc::start(RedisOptions {
            replica_of: Some(first.port()),
            ..RedisOptions::default()
        })
        .expect("replica starts");
        wait_replicating(&second, Duration::from_secs(10));
        let sentinels = SentinelSet::start(MASTER_NAME, first.port(), 3).expect("sentinels");
        sentinels
            .wait_settled(1, Duration::from_secs(20))
            .expect("sentinels settle");

        let url = sentinels.url();
        let publishing = node_at(&url).await;
        let subscribing = node_at(&url).await;
        let publisher = client(&publishing, "publisher").await;
        let reader = client(&subscribing, "reader").await;
        let mut subscription = reader
            .subscribe(CHANNEL, Replay::None)
            .await
            .expect("subscribe");
        for i in 1..=5 {
            let ack = publisher
                .publish(CHANNEL, Payload::text(&format!("before {i}")))
                .await
                .expect("published on the first master");
            assert_eq!(ack.seq, i);
            assert_eq!(next(&mut subscription).await, (i, format!("before {i}")));
        }
        assert!(reader.epoch_changes().is_empty());

        wait_caught_up(&first, &second, Duration::from_secs(10));
        let answer: String = sentinels.sentinels()[0]
            .command(&["SENTINEL", "FAILOVER", MASTER_NAME])
            .expect("failover");
        assert_eq!(answer, "OK");
        // The first master takes writes until the Sentinels turn it into a replica; one
        // that lands in between is lost with it. Publishing after the switch keeps this
        // test's history exact.
        wait_switched(&sentinels, &first, &second, FAILOVER_BOUND);
        let (seq, took) = publish_when_back(&publisher, "after").await;
        tracing::info!(?took, seq, "acknowledged again after the failover");

        // The replica had every write (waited for above), so the history goes on where
        // it was. But the nodes cannot know that: a promotion bumps the backplane
        // generation, and a channel written under an older generation begins a new epoch
        // at its next append. The generation rule makes the whole kept history that
        // epoch, so the subscriber is told the new series starts at seq 1 and is given
        // it again from there, before the first message published after the failover.
        assert_eq!(seq, 6, "the promoted replica kept the history");
        let mut after_failover = Vec::new();
        while after_failover
            .last()
            .is_none_or(|(_, text)| text != "after")
        {
            after_failover.push(next(&mut subscription).await);
        }
        let expected: Vec<(u64, String)> = (1..=5)
            .map(|i| (i, format!("before {i}")))
            .chain([(6, "after".to_owned())])
            .collect();
        assert_eq!(after_failover, expected);
        let changes = reader.epoch_changes();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].channel, CHANNEL);
        assert_eq!(changes[0].first_seq, 1, "{changes:?}");

        for i in 7..=9 {
            let ack = publisher
                .publish(CHANNEL, Payload::text(&format!("more {i}")))
                .await
                .expect("published on the promoted replica");
            assert_eq!(ack.seq, i);
            assert_eq!(next(&mut subscription).await, (i, format!("more {i}")));
        }
        assert_eq!(reader.epoch_changes().len(), 1, "one failover, one epoch");
        let history = reader
            .get_messages(CHANNEL, Since::All, None)
            .await
            .expect("history from the promoted replica");
        assert_eq!(
            history.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            (1..=9).collect::<Vec<_>>()
        );
    };
    match tokio::time::timeout(TEST_BOUND, test).await {
        Ok(()) => {}
        Err(_) => panic!("the test did not end within {TEST_BOUND:?}"),
    }
}
