//! Three servers as one hub on a real Redis: cross-node fan-out (exact, wildcard,
//! hashtag), history from any node, replay then live while others publish, unique
//! client ids; and the faults: Redis killed and restarted without persistence (a new
//! epoch, which subscribers are told of) and with `appendfsync always` (nothing
//! acknowledged lost), Redis paused (requests refused within the bound, never hung),
//! and the pub/sub connections killed (the nodes catch up).

mod common;

use common::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchboard_client::{Client, ErrorCode, Payload, Replay, Since};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

/// Publishes until one is acknowledged (the cluster is back after a fault).
async fn publish_when_back(client: &Client, channel: &str, text: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.publish(channel, Payload::text(text)).await {
            Ok(ack) => return ack.seq,
            Err(error) if Instant::now() < deadline => {
                assert_eq!(
                    error.code(),
                    Some(ErrorCode::BackplaneUnavailable),
                    "{error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the cluster did not come back: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_node_once_exact_wildcard_and_hashtag() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let publisher = client(&nodes[0], "pub").await;
    let on_b = client(&nodes[1], "b").await;
    let on_c = client(&nodes[2], "c").await;
    let mut exact = on_b
        .subscribe("news.world", Replay::None)
        .await
        .expect("subscribe");
    let mut both = on_c
        .subscribe("news.*", Replay::None)
        .pattern("#breaking")
        .await
        .expect("subscribe");
    let mut tag = on_b
        .subscribe("#breaking", Replay::None)
        .await
        .expect("subscribe");
    publisher
        .publish("news.world", Payload::text("one #breaking"))
        .await
        .expect("published");
    publisher
        .publish("sport", Payload::text("two #breaking"))
        .await
        .expect("published");
    publisher
        .publish("news.world", Payload::text("three"))
        .await
        .expect("published");
    assert_eq!(next(&mut exact).await, (1, "one #breaking".to_owned()));
    assert_eq!(next(&mut exact).await, (2, "three".to_owned()));
    assert_eq!(next(&mut both).await, (1, "one #breaking".to_owned()));
    assert_eq!(next(&mut both).await, (1, "two #breaking".to_owned()));
    assert_eq!(next(&mut both).await, (2, "three".to_owned()));
    assert_eq!(next(&mut tag).await, (1, "one #breaking".to_owned()));
    assert_eq!(next(&mut tag).await, (1, "two #breaking".to_owned()));
    // One Redis subscription per channel per node, whatever the number of clients.
    let more = client(&nodes[1], "b2").await;
    let _again = more
        .subscribe("news.world", Replay::None)
        .await
        .expect("subscribe");
    let counts: Vec<redis::Value> = redis
        .command(&["PUBSUB", "NUMSUB", "sb:c:news.world"])
        .expect("numsub");
    assert_eq!(
        counts.get(1),
        Some(&redis::Value::Int(1)),
        "node B follows news.world once: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_any_node_and_replay_then_live_without_gap() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let clients = [
        client(&nodes[0], "a").await,
        client(&nodes[1], "b").await,
        client(&nodes[2], "c").await,
    ];
    for i in 0..30 {
        let ack = clients[i % 3]
            .publish("log", Payload::text(&format!("m{i}")))
            .await
            .expect("published");
        assert_eq!(ack.seq, i as u64 + 1);
    }
    for client in &clients {
        let all = client
            .get_messages("log", Since::All, None)
            .await
            .expect("history");
        assert_eq!(
            all.iter()
                .map(|m| m.text().unwrap_or("").to_owned())
                .collect::<Vec<_>>(),
            (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>()
        );
        let newest = client
            .get_messages("log", Since::All, Some(3))
            .await
            .expect("history");
        assert_eq!(
            newest.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            [28, 29, 30]
        );
        assert_eq!(
            client
                .get_message("log", None)
                .await
                .expect("latest")
                .map(|m| m.seq()),
            Some(30)
        );
    }
    // Replay then live while two nodes publish.
    const EACH: u64 = 150;
    let mut publishers = Vec::new();
    for (i, node) in nodes.iter().take(2).enumerate() {
        let client = client(node, &format!("racer{i}")).await;
        publishers.push(tokio::spawn(async move {
            for n in 0..EACH {
                client
                    .publish("race", Payload::text(&format!("{i}-{n}")))
                    .await
                    .expect("published");
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut subscription = clients[2]
        .subscribe("race", Replay::SinceSeq(1))
        .await
        .expect("subscribe");
    let mut seqs = Vec::new();
    while seqs.len() < (2 * EACH) as usize {
        seqs.push(next(&mut subscription).await.0);
    }
    assert_eq!(seqs, (1..=2 * EACH).collect::<Vec<_>>());
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_are_unique_across_nodes() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let mut ids = BTreeSet::new();
    for node in &nodes {
        for i in 0..10 {
            let client = client(node, &format!("c{i}")).await;
            let id = client.identity().await.expect("identity").client_id;
            assert_eq!(id >> 32, node.backplane.incarnation());
            assert!(ids.insert(id), "id {id} given twice");
        }
    }
    let incarnations: BTreeSet<u64> = nodes.iter().map(|n| n.backplane.incarnation()).collect();
    assert_eq!(incarnations.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_starts_a_new_epoch_subscribers_are_told_of() {
    let mut redis = redis();
    let nodes = cluster(&redis, 2).await;
    let publisher = client(&nodes[0], "pub").await;
    let reader = client(&nodes[1], "reader").await;
    let mut subscription = reader
        .subscribe("ledger", Replay::None)
        .await
        .expect("subscribe");
    for i in 1..=3 {
        publisher
            .publish("ledger", Payload::text(&format!("old {i}")))
            .await
            .expect("published");
        assert_eq!(next(&mut subscription).await.0, i);
    }
    redis.restart().expect("restart");
    let seq = publish_when_back(&publisher, "ledger", "new").await;
    assert_eq!(seq, 1, "the history was lost: the channel starts again");
    assert_eq!(next(&mut subscription).await, (1, "new".to_owned()));
    let changes = reader.epoch_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].channel, "ledger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_appendfsync_always_nothing_acknowledged_is_lost_across_a_kill() {
    let mut redis = RedisProc::start(RedisOptions::durable()).expect("redis-server starts");
    let nodes = cluster(&redis, 2).await;
    let publisher = client(&nodes[0], "pub").await;
    let watcher = client(&nodes[1], "watcher").await;
    let mut live = watcher
        .subscribe("durable", Replay::None)
        .await
        .expect("subscribe");
    let mut acked = Vec::new();
    for i in 0..50 {
        let ack = publisher
            .publish("durable", Payload::text(&format!("m{i}")))
            .await
            .expect("published");
        acked.push(ack.seq);
    }
    for seq in 1..=50 {
        assert_eq!(next(&mut live).await.0, seq);
    }
    redis.kill();
    redis.restart().expect("restart");
    let after = publish_when_back(&publisher, "durable", "after").await;
    assert_eq!(after, 51, "the history went on where it was");
    // Nothing was lost, so the same epoch goes on: no announcement.
    assert_eq!(next(&mut live).await, (51, "after".to_owned()));
    assert!(
        watcher.epoch_changes().is_empty(),
        "{:?}",
        watcher.epoch_changes()
    );
    let reader = client(&nodes[1], "reader").await;
    let history = reader
        .get_messages("durable", Since::All, None)
        .await
        .expect("history");
    let seqs: Vec<u64> = history.iter().map(|m| m.seq()).collect();
    for seq in &acked {
        assert!(seqs.contains(seq), "acknowledged seq {seq} lost: {seqs:?}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_gets_requests_refused_within_the_bound_then_serves_again() {
    let redis = redis();
    let nodes = cluster(&redis, 1).await;
    let publisher = client(&nodes[0], "pub").await;
    publisher
        .publish("p", Payload::text("before"))
        .await
        .expect("published");
    redis.pause().expect("pause");
    for _ in 0..3 {
        let started = Instant::now();
        let refused = publisher.publish("p", Payload::text("paused")).await;
        let took = started.elapsed();
        assert_eq!(
            refused.err().and_then(|e| e.code()),
            Some(ErrorCode::BackplaneUnavailable)
        );
        assert!(took < Duration::from_millis(2500), "refused after {took:?}");
    }
    redis.resume().expect("resume");
    publish_when_back(&publisher, "p", "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_connections_are_replaced_and_nothing_is_missed() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let publisher = client(&nodes[0], "pub").await;
    let reader = client(&nodes[1], "reader").await;
    let mut subscription = reader
        .subscribe("feed", Replay::None)
        .await
        .expect("subscribe");
    publisher
        .publish("feed", Payload::text("m1"))
        .await
        .expect("published");
    assert_eq!(next(&mut subscription).await.0, 1);
    redis.kill_pubsub_clients().expect("client kill");
    for i in 2..=20 {
        publisher
            .publish("feed", Payload::text(&format!("m{i}")))
            .await
            .expect("published");
    }
    let mut seqs = Vec::new();
    while seqs.len() < 19 {
        seqs.push(next(&mut subscription).await.0);
    }
    assert_eq!(seqs, (2..=20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashtag_history_is_the_same_from_every_node() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let a = client(&nodes[0], "a").await;
    let b = client(&nodes[1], "b").await;
    a.publish("one", Payload::text("first #rust"))
        .await
        .expect("published");
    b.publish("two", Payload::text("second #Rust"))
        .await
        .expect("published");
    a.publish("one", Payload::text("untagged"))
        .await
        .expect("published");
    for client in [&a, &b] {
        let tagged = client
            .tag_messages("#rust", Since::All, None)
            .await
            .expect("tag history");
        let seen: Vec<(String, String)> = tagged
            .iter()
            .map(|m| (m.channel().to_owned(), m.text().unwrap_or("").to_owned()))
            .collect();
        assert_eq!(
            seen,
            [
                ("one".to_owned(), "first #rust".to_owned()),
                ("two".to_owned(), "second #Rust".to_owned())
            ]
        );
        let newest = client
            .tag_messages("rust", Since::All, Some(1))
            .await
            .expect("tag history");
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].channel(), "two");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_their_age_are_never_served_and_are_trimmed_from_redis() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let a = client(&nodes[0], "a").await;
    let b = client(&nodes[1], "b").await;
    let options = switchboard_client::ChannelOptions {
        max_age_ms: Some(300),
        ..Default::default()
    };
    a.create_channel("fleeting", options)
        .await
        .expect("created");
    a.publish("fleeting", Payload::text("soon gone"))
        .await
        .expect("published");
    let fresh = b
        .get_messages("fleeting", Since::All, None)
        .await
        .expect("history");
    assert_eq!(fresh.len(), 1);
    // The age is time itself: wait past it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for client in [&a, &b] {
        let aged = client
            .get_messages("fleeting", Since::All, None)
            .await
            .expect("history");
        assert!(aged.is_empty(), "an expired message was served");
        assert!(
            client
                .get_message("fleeting", None)
                .await
                .expect("latest")
                .is_none()
        );
    }
    // The node that knows the channel trims it within its period (1 s).
    let deadline = Instant::now() + WAIT;
    loop {
        let length: u64 = redis.command(&["XLEN", "sb:{c:fleeting}:s"]).expect("xlen");
        if length == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never trimmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `count` publishes of "0", "1", ... from one connection without waiting for
/// their acknowledgements (flushing Redis' scripts half way when asked), then waits for
/// them all.
async fn pipelined_burst(
    redis: &RedisProc,
    publisher: &Client,
    channel: &str,
    count: usize,
    flush_scripts: bool,
) -> Vec<Result<u64, switchboard_client::ClientError>> {
    let options = switchboard_client::ChannelOptions {
        history: Some(count as u64),
        ..Default::default()
    };
    publisher
        .create_channel(channel, options)
        .await
        .expect("created");
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        if flush_scripts && i == count / 2 {
            // Every script call after this one first fails with NOSCRIPT and is sent
            // again (after the ones before it): the retries must not overtake each other.
            let _: () = redis.command(&["SCRIPT", "FLUSH"]).expect("script flush");
        }
        let sent = publisher
            .publish(channel, Payload::text(&i.to_string()))
            .pipelined()
            .await
            .expect("sent");
        pending.push(sent);
    }
    let mut results = Vec::with_capacity(count);
    for sent in pending {
        results.push(sent.await.map(|ack| ack.seq));
    }
    results
}

/// The texts of a channel's history, as numbers.
async fn numbers(reader: &Client, channel: &str) -> Vec<usize> {
    reader
        .get_messages(channel, Since::All, None)
        .await
        .expect("history")
        .iter()
        .map(|m| m.text().unwrap_or("").parse().expect("a number"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_pipelined_publishes_are_stored_and_delivered_in_order() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let publisher = client(&nodes[0], "pub").await;
    let reader = client(&nodes[1], "reader").await;
    let mut live = reader
        .subscribe("ordered", Replay::None)
        .await
        .expect("subscribe");
    const COUNT: usize = 3000;
    let results = pipelined_burst(&redis, &publisher, "ordered", COUNT, false).await;
    let seqs: Vec<u64> = results
        .into_iter()
        .map(|result| result.expect("acknowledged"))
        .collect();
    assert_eq!(seqs, (1..=COUNT as u64).collect::<Vec<_>>());
    assert_eq!(
        numbers(&reader, "ordered").await,
        (0..COUNT).collect::<Vec<_>>()
    );
    for (seq, text) in (1..=COUNT as u64).zip(0..COUNT) {
        assert_eq!(next(&mut live).await, (seq, text.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_publishes_share_round_trips_and_what_follows_them_sees_them_stored() {
    let redis = redis();
    let nodes = cluster(&redis, 1).await;
    let publisher = client(&nodes[0], "pub").await;
    const COUNT: usize = 2000;
    let options = switchboard_client::ChannelOptions {
        history: Some(COUNT as u64),
        ..Default::default()
    };
    publisher
        .create_channel("batched", options)
        .await
        .expect("created");
    for i in 0..COUNT {
        publisher
            .publish("batched", Payload::text(&i.to_string()))
            .no_reply()
            .await
            .expect("queued");
    }
    // Read on the same connection right behind the publishes, with no flush: the
    // session answers it only once every publish before it is stored.
    assert_eq!(
        numbers(&publisher, "batched").await,
        (0..COUNT).collect::<Vec<_>>()
    );
    let stats = publisher.stats().await.expect("stats");
    let stat = |name: &str| {
        stats
            .stats
            .iter()
            .find(|stat| stat.name == name)
            .map(|stat| stat.value)
            .unwrap_or_else(|| panic!("no stat {name}"))
    };
    let (batches, appends) = (
        stat("backplane_append_batches"),
        stat("backplane_appends_batched"),
    );
    assert!(appends >= COUNT as u64, "{appends} appends sent");
    // The session read on while its publishes were out, so they went to Redis together.
    assert!(
        appends >= 4 * batches,
        "{appends} appends in {batches} round trips"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_publishes_never_reorder_when_redis_forgets_its_scripts_mid_burst() {
    let redis = redis();
    let nodes = cluster(&redis, 1).await;
    let publisher = client(&nodes[0], "pub").await;
    const COUNT: usize = 2000;
    let results = pipelined_burst(&redis, &publisher, "flushed", COUNT, true).await;
    // Some may be refused (their retries came after the bound); none out of order.
    let mut last = 0;
    for result in &results {
        match result {
            Ok(seq) => {
                assert!(*seq > last, "seq {seq} acknowledged after {last}");
                last = *seq;
            }
            Err(error) => assert_eq!(error.code(), Some(ErrorCode::BackplaneUnavailable)),
        }
    }
    let stored = numbers(&client(&nodes[0], "reader").await, "flushed").await;
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "stored out of order"
    );
    assert!(stored.len() >= results.iter().filter(|r| r.is_ok()).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashtag_subscription_replays_the_clusters_recent_messages_then_live() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let a = client(&nodes[0], "a").await;
    let b = client(&nodes[1], "b").await;
    for (channel, text) in [
        ("one", "first #news"),
        ("two", "second #news"),
        ("one", "untagged"),
    ] {
        a.publish(channel, Payload::text(text))
            .await
            .expect("published");
    }
    // Node B never followed #news: its replay comes from the cluster.
    let mut tagged = b
        .subscribe("#news", Replay::Last(10))
        .await
        .expect("subscribe");
    assert_eq!(tagged.replay_count(), 2);
    assert_eq!(next(&mut tagged).await, (1, "first #news".to_owned()));
    assert_eq!(next(&mut tagged).await, (1, "second #news".to_owned()));
    a.publish("three", Payload::text("third #news"))
        .await
        .expect("published");
    assert_eq!(next(&mut tagged).await, (1, "third #news".to_owned()));
}
