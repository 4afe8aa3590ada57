//! Cluster mode's node logic, with three servers sharing an in-process backplane: a
//! message published on any node reaches subscribers on every node once, in order;
//! history reads agree on every node; replay then live has no gap and no duplicate while
//! other nodes publish; a node cut off catches up in order; a backplane that lost its
//! data starts a new epoch that subscribers are told of; client ids are unique.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use switchboard_client::{Client, ClientConfig, ErrorCode, Payload, Replay, Since, Subscription};
use switchboard_server::cluster::memory::{MemoryBackplane, MemoryNode};
use switchboard_server::{Server, ServerHandle};

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    server: ServerHandle,
    backplane: Arc<MemoryNode>,
}

async fn cluster(nodes: usize) -> (Arc<MemoryBackplane>, Vec<Node>) {
    let backplane = MemoryBackplane::new();
    let mut started = Vec::new();
    for _ in 0..nodes {
        let node = backplane.node();
        let server = Server::builder()
            .listen_tcp("127.0.0.1:0")
            .backplane(node.clone())
            .start()
            .await
            .expect("node starts");
        started.push(Node {
            server,
            backplane: node,
        });
    }
    (backplane, started)
}

async fn client(node: &Node, name: &str) -> Client {
    let addr = node.server.tcp_addr().expect("tcp address");
    Client::connect(ClientConfig::new(addr.to_string(), name))
        .await
        .expect("client connects")
}

/// The next message's seq and text, within the wait.
async fn next(subscription: &mut Subscription) -> (u64, String) {
    let message = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription goes on")
        .expect("a message, not an error");
    (message.seq(), message.text().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_message_published_on_one_node_reaches_every_node_once() {
    let (_backplane, nodes) = cluster(3).await;
    let publisher = client(&nodes[0], "pub").await;
    let on_a = client(&nodes[0], "a").await;
    let on_b = client(&nodes[1], "b").await;
    let on_c = client(&nodes[2], "c").await;
    let mut exact_a = on_a
        .subscribe("news.world", Replay::None)
        .await
        .expect("subscribe");
    let mut exact_b = on_b
        .subscribe("news.world", Replay::None)
        .await
        .expect("subscribe");
    // Both a wildcard and a hashtag match: delivered once all the same.
    let mut both_c = on_c
        .subscribe("news.*", Replay::None)
        .pattern("#breaking")
        .await
        .expect("subscribe");
    let mut tag_b = on_b
        .subscribe("#breaking", Replay::None)
        .await
        .expect("subscribe");
    for text in ["one #breaking", "two"] {
        publisher
            .publish("news.world", Payload::text(text))
            .await
            .expect("published");
    }
    for subscription in [&mut exact_a, &mut exact_b, &mut both_c] {
        assert_eq!(next(subscription).await, (1, "one #breaking".to_owned()));
        assert_eq!(next(subscription).await, (2, "two".to_owned()));
    }
    assert_eq!(next(&mut tag_b).await, (1, "one #breaking".to_owned()));
    // A hashtag on a channel nobody here follows.
    publisher
        .publish("sport", Payload::text("three #breaking"))
        .await
        .expect("published");
    assert_eq!(next(&mut tag_b).await, (1, "three #breaking".to_owned()));
    assert_eq!(next(&mut both_c).await, (1, "three #breaking".to_owned()));
    // Nothing more came: a marker published last arrives next.
    publisher
        .publish("news.world", Payload::text("marker"))
        .await
        .expect("published");
    assert_eq!(next(&mut exact_b).await, (3, "marker".to_owned()));
    assert_eq!(next(&mut both_c).await, (3, "marker".to_owned()));
}

#[tokio::test]
async fn history_reads_agree_on_every_node() {
    let (_backplane, nodes) = cluster(3).await;
    let clients = [
        client(&nodes[0], "a").await,
        client(&nodes[1], "b").await,
        client(&nodes[2], "c").await,
    ];
    let mut acks = Vec::new();
    for i in 0..30 {
        let ack = clients[i % 3]
            .publish("log", Payload::text(&format!("m{i}")))
            .await
            .expect("published");
        acks.push(ack);
    }
    assert_eq!(
        acks.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    for client in &clients {
        let all = client
            .get_messages("log", Since::All, None)
            .await
            .expect("history");
        let texts: Vec<_> = all
            .iter()
            .map(|m| m.text().unwrap_or("").to_owned())
            .collect();
        assert_eq!(texts, (0..30).map(|i| format!("m{i}")).collect::<Vec<_>>());
        let last = client
            .get_messages("log", Since::All, Some(5))
            .await
            .expect("history");
        assert_eq!(
            last.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            [26, 27, 28, 29, 30]
        );
        let since = client
            .get_messages("log", Since::Seq(10), Some(3))
            .await
            .expect("history");
        assert_eq!(
            since.iter().map(|m| m.seq()).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        let latest = client.get_message("log", None).await.expect("latest");
        assert_eq!(latest.map(|m| m.seq()), Some(30));
        let by_id = client
            .get_message("log", Some(acks[4].id))
            .await
            .expect("by id");
        assert_eq!(
            by_id.map(|m| m.text().unwrap_or("").to_owned()),
            Some("m4".to_owned())
        );
    }
    let missing = clients[1]
        .get_messages("nothing.here", Since::All, None)
        .await;
    assert_eq!(
        missing.err().and_then(|e| e.code()),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_while_others_publish() {
    let (_backplane, nodes) = cluster(3).await;
    const EACH: u64 = 300;
    let mut publishers = Vec::new();
    for (i, node) in nodes.iter().take(2).enumerate() {
        let client = client(node, &format!("pub{i}")).await;
        publishers.push(tokio::spawn(async move {
            for n in 0..EACH {
                client
                    .publish("race", Payload::text(&format!("{i}-{n}")))
                    .await
                    .expect("published");
            }
        }));
    }
    // Subscribe while the publishers run.
    let reader = client(&nodes[2], "reader").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut subscription = reader
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

#[tokio::test]
async fn a_feed_running_late_behind_a_replay_delivers_nothing_twice() {
    let (_backplane, nodes) = cluster(2).await;
    let publisher = client(&nodes[0], "pub").await;
    let first = client(&nodes[1], "first").await;
    let second = client(&nodes[1], "second").await;
    let mut live = first
        .subscribe("late", Replay::None)
        .await
        .expect("subscribe");
    nodes[1].backplane.hold_feed(true);
    for i in 1..=5 {
        publisher
            .publish("late", Payload::text(&format!("m{i}")))
            .await
            .expect("published");
    }
    // The replay reads 1..=5 from the backplane before the feed brings them.
    let mut replayed = second
        .subscribe("late", Replay::SinceSeq(1))
        .await
        .expect("subscribe");
    nodes[1].backplane.hold_feed(false);
    publisher
        .publish("late", Payload::text("marker"))
        .await
        .expect("published");
    for subscription in [&mut live, &mut replayed] {
        let mut seqs = Vec::new();
        while seqs.len() < 6 {
            seqs.push(next(subscription).await.0);
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    }
}

#[tokio::test]
async fn a_node_cut_off_refuses_in_time_and_catches_up_in_order() {
    let (_backplane, nodes) = cluster(2).await;
    let publisher = client(&nodes[0], "pub").await;
    let reader = client(&nodes[1], "reader").await;
    let mut subscription = reader
        .subscribe("feed", Replay::None)
        .await
        .expect("subscribe");
    publisher
        .publish("feed", Payload::text("before"))
        .await
        .expect("published");
    assert_eq!(next(&mut subscription).await.0, 1);
    nodes[1].backplane.set_cut(true);
    let refused = reader.publish("feed", Payload::text("cut")).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::BackplaneUnavailable)
    );
    for i in 0..50 {
        publisher
            .publish("feed", Payload::text(&format!("while cut {i}")))
            .await
            .expect("published");
    }
    nodes[1].backplane.set_cut(false);
    publisher
        .publish("feed", Payload::text("after"))
        .await
        .expect("published");
    let mut seqs = Vec::new();
    while seqs.len() < 51 {
        seqs.push(next(&mut subscription).await.0);
    }
    assert_eq!(seqs, (2..=52).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_backplane_that_lost_its_data_starts_a_new_epoch_subscribers_are_told_of() {
    let (backplane, nodes) = cluster(2).await;
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
    }
    for seq in 1..=3 {
        assert_eq!(next(&mut subscription).await.0, seq);
    }
    backplane.lose_everything();
    publisher
        .publish("ledger", Payload::text("new 1"))
        .await
        .expect("published");
    assert_eq!(next(&mut subscription).await, (1, "new 1".to_owned()));
    let changes = reader.epoch_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].channel, "ledger");
    assert_eq!(changes[0].first_seq, 1);
}

#[tokio::test]
async fn client_ids_are_unique_across_nodes_and_name_their_node() {
    let (_backplane, nodes) = cluster(3).await;
    let mut ids = BTreeSet::new();
    for node in &nodes {
        for i in 0..20 {
            let client = client(node, &format!("c{i}")).await;
            let id = client.identity().await.expect("identity").client_id;
            assert_eq!(id >> 32, node.backplane.node_id_for_tests());
            assert!(ids.insert(id), "id {id} given twice");
        }
    }
}

#[tokio::test]
async fn channels_created_listed_and_deleted_on_any_node() {
    let (_backplane, nodes) = cluster(2).await;
    let a = client(&nodes[0], "a").await;
    let b = client(&nodes[1], "b").await;
    a.create_channel("made.on.a", Default::default())
        .await
        .expect("created");
    let listed: Vec<_> = b
        .list_channels()
        .await
        .expect("listed")
        .into_iter()
        .map(|info| info.name.to_string())
        .collect();
    assert_eq!(listed, ["made.on.a"]);
    let mut watching = a
        .subscribe("made.on.a", Replay::None)
        .await
        .expect("subscribe");
    b.publish("made.on.a", Payload::text("hello"))
        .await
        .expect("published");
    assert_eq!(next(&mut watching).await.0, 1);
    b.delete_channel("made.on.a").await.expect("deleted");
    // The subscription to the deleted channel ends on the other node.
    let ended = tokio::time::timeout(WAIT, watching.next())
        .await
        .expect("ends in time");
    assert!(matches!(ended, None | Some(Err(_))), "{ended:?}");
    assert!(b.list_channels().await.expect("listed").is_empty());
    // Created again: a new channel, from seq 1.
    let ack = a
        .publish("made.on.a", Payload::text("again"))
        .await
        .expect("published");
    assert_eq!(ack.seq, 1);
}
