//! The client directory and relays across nodes, with three servers on a real Redis:
//! LIST_CLIENTS on any node shows every node's clients in id order and in pages; client
//! ids stay distinct across thousands of sessions on three nodes; a relay reaches
//! receivers on this node and on others with one outcome each; a receiver that left,
//! or on no live node, is unknown; one whose node does not answer in time, or does not
//! follow its topic at the moment, is dropped; relay rules hold across nodes; a node
//! that registers again lists its clients again.

mod common;

use common::*;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchboard_client::{Client, ErrorCode, RelayStatus};
use switchboard_cluster_redis::nodes::{self, ClientRecord, NodeInfo};
use switchboard_cluster_redis::testing::RedisProc;
use switchboard_cluster_redis::{RedisBackplane, RedisConfig};
use switchboard_server::Server;
use switchboard_server::security::RoleSpec;
use switchboard_server::security::permissions::Rule;

fn id(client: &Client) -> u64 {
    client.session().client_id
}

/// The ids `observer` lists, once they are `expected` (the directory is written a
/// moment after a session starts or ends).
async fn listed_when(observer: &Client, expected: &[u64]) -> Vec<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let listed: Vec<u64> = observer
            .list_clients()
            .await
            .expect("list clients")
            .iter()
            .map(|client| client.client_id)
            .collect();
        let as_set: BTreeSet<u64> = listed.iter().copied().collect();
        if as_set == expected.iter().copied().collect() || Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_every_nodes_clients_in_id_order_and_in_pages() {
    let redis = redis();
    let nodes = cluster(&redis, 3).await;
    let mut everyone = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for i in 0..4 {
            everyone.push(client(node, &format!("n{index}-c{i}")).await);
        }
    }
    let mut all_ids: Vec<u64> = everyone.iter().map(id).collect();
    all_ids.sort_unstable();
    for observer in [&everyone[0], &everyone[5], &everyone[11]] {
        let others: Vec<u64> = all_ids
            .iter()
            .copied()
            .filter(|other| *other != id(observer))
            .collect();
        let listed = listed_when(observer, &others).await;
        assert_eq!(listed, others, "every other client, in id order");
        // Pages of 3, each at most 3, together the same list in the same order.
        let mut paged = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = observer
                .clients_page(cursor.take(), Some(3))
                .await
                .expect("a page");
            assert!(page.entries.len() <= 3, "{} entries", page.entries.len());
            paged.extend(page.entries.iter().map(|client| client.client_id));
            pages += 1;
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(pages < 20, "the pages never end");
        }
        assert_eq!(paged, others);
        assert!(pages >= 4, "11 clients in pages of 3: {pages} pages");
    }
    let names: BTreeSet<String> = everyone[0]
        .list_clients()
        .await
        .expect("list")
        .into_iter()
        .map(|client| client.name.to_string())
        .collect();
    assert!(
        names.contains("n2-c3") && names.contains("n1-c0"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_client_ids_across_three_nodes_are_distinct_and_name_their_node() {
    const SESSIONS: usize = 10_000;
    const AT_ONCE: usize = 48;
    let redis = redis();
    let nodes = Arc::new(cluster(&redis, 3).await);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..AT_ONCE {
        let nodes = nodes.clone();
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut session = worker;
            while session < SESSIONS {
                let node = session % nodes.len();
                let client = client(&nodes[node], "short").await;
                ids.push((node, id(&client)));
                client.close().await.expect("close");
                session += AT_ONCE;
            }
            ids
        }));
    }
    let mut ids = BTreeSet::new();
    for worker in workers {
        for (node, client_id) in worker.await.expect("worker") {
            assert_eq!(
                client_id >> 32,
                nodes[node].backplane.incarnation(),
                "client {client_id} names its node"
            );
            assert!(ids.insert(client_id), "id {client_id} given twice");
        }
    }
    assert_eq!(ids.len(), SESSIONS);
    eprintln!("{SESSIONS} sessions in {:?}", started.elapsed());
    // Every session that closed left the directory too.
    let observer = client(&nodes[0], "observer").await;
    assert_eq!(listed_when(&observer, &[]).await, Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_reach_receivers_on_every_node_with_one_outcome_each() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let a1 = client(&nodes[0], "a1").await;
    let a2 = client(&nodes[0], "a2").await;
    let b1 = client(&nodes[1], "b1").await;
    let b2 = client(&nodes[1], "b2").await;
    let mut feeds = [&a1, &a2, &b1, &b2].map(|c| c.direct_feed().expect("direct feed"));
    let expected: Vec<u64> = [&a2, &b1, &b2].map(id).to_vec();
    assert_eq!(listed_when(&a1, &expected).await.len(), 3);
    let node_b = nodes[1].backplane.incarnation();
    let not_connected_on_b = node_b << 32 | 0xFFFF_FF00;
    let on_no_node = 1_000_000u64 << 32 | 1;
    let receivers = [id(&a2), id(&b1), not_connected_on_b, id(&b2), on_no_node];
    let outcomes = a1
        .relay(&receivers, "from a", "text/plain")
        .await
        .expect("relay");
    let statuses: Vec<(u64, RelayStatus)> = outcomes
        .iter()
        .map(|outcome| (outcome.client_id, outcome.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (id(&a2), RelayStatus::Delivered),
            (id(&b1), RelayStatus::Delivered),
            (not_connected_on_b, RelayStatus::Unknown),
            (id(&b2), RelayStatus::Delivered),
            (on_no_node, RelayStatus::Unknown),
        ]
    );
    for feed in &mut feeds[1..] {
        let direct = tokio::time::timeout(WAIT, feed.next())
            .await
            .expect("the body within the wait")
            .expect("the feed goes on");
        assert_eq!(direct.text(), Some("from a"));
        assert_eq!(direct.sender_id(), id(&a1));
        assert_eq!(direct.sender_name(), "a1");
    }
    // And back, from B to a client of A and one of B.
    let outcomes = b2
        .relay(&[id(&a1), id(&b1)], "from b", "text/plain")
        .await
        .expect("relay");
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.status == RelayStatus::Delivered),
        "{outcomes:?}"
    );
    for feed in [0, 2] {
        let direct = tokio::time::timeout(WAIT, feeds[feed].next())
            .await
            .expect("the body within the wait")
            .expect("the feed goes on");
        assert_eq!(direct.text(), Some("from b"));
        assert_eq!(direct.sender_id(), id(&b2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_to_a_client_that_left_is_unknown() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let sender = client(&nodes[0], "sender").await;
    let leaving = client(&nodes[1], "leaving").await;
    let leaving_id = id(&leaving);
    assert_eq!(listed_when(&sender, &[leaving_id]).await, vec![leaving_id]);
    leaving.close().await.expect("close");
    assert_eq!(listed_when(&sender, &[]).await, Vec::<u64>::new());
    let outcomes = sender
        .relay(&[leaving_id], "too late", "text/plain")
        .await
        .expect("relay");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, RelayStatus::Unknown);
    // Its record written again, as if its removal had not reached Redis yet: its node,
    // which no longer has it, still answers unknown.
    let redis_client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = tokio::time::timeout(WAIT, redis_client.get_multiplexed_async_connection())
        .await
        .expect("connects in time")
        .expect("connects");
    let lingering = ClientRecord {
        id: leaving_id,
        name: "leaving".to_owned(),
        user: String::new(),
        connected_us: 1,
        receives_relay: true,
    };
    let node_b = nodes[1].backplane.incarnation();
    let keys = nodes[1].backplane.keys();
    nodes::add_clients(
        &mut conn,
        keys,
        node_b,
        &[lingering],
        Duration::from_secs(5),
    )
    .await
    .expect("record written");
    assert_eq!(listed_when(&sender, &[leaving_id]).await, vec![leaving_id]);
    let outcomes = sender
        .relay(&[leaving_id], "still too late", "text/plain")
        .await
        .expect("relay");
    assert_eq!(outcomes[0].status, RelayStatus::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_of_a_node_that_does_not_answer_are_dropped_within_the_bound() {
    let redis = redis();
    let nodes = cluster(&redis, 1).await;
    let sender = client(&nodes[0], "sender").await;
    let redis_client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = tokio::time::timeout(WAIT, redis_client.get_multiplexed_async_connection())
        .await
        .expect("connects in time")
        .expect("connects");
    // A node that registered, listed a client and follows its topic, but never answers.
    let keys = nodes[0].backplane.keys();
    let silent = 1_000u64;
    let info = NodeInfo {
        link_addr: String::new(),
        started_us: 1,
        version: "0".to_owned(),
    };
    nodes::reregister(&mut conn, keys, silent, &info, Duration::from_secs(30))
        .await
        .expect("registered");
    let receiver = silent << 32 | 1;
    let record = ClientRecord {
        id: receiver,
        name: "silent".to_owned(),
        user: String::new(),
        connected_us: 1,
        receives_relay: true,
    };
    nodes::add_clients(&mut conn, keys, silent, &[record], Duration::from_secs(30))
        .await
        .expect("record written");
    let mut pubsub = redis_client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(keys.node_topic(silent))
        .await
        .expect("subscribed");
    let started = Instant::now();
    let outcomes = sender
        .relay(&[receiver], "anyone there?", "text/plain")
        .await
        .expect("relay");
    let waited = started.elapsed();
    assert_eq!(outcomes[0].status, RelayStatus::Dropped);
    // The node bound is 1 s in these tests.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    let mut messages = pubsub.on_message();
    let request = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("the relay reached the silent node")
        .expect("a message");
    let payload: Vec<u8> = request.get_payload().expect("bytes");
    assert!(
        payload.ends_with(b"anyone there?"),
        "the request carries the body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_of_a_live_node_not_following_its_topic_are_dropped_not_unknown() {
    // What a node looks like while its pub/sub connection is made again after Redis
    // restarted: registered, its clients listed, but nothing follows its topic yet.
    let redis = redis();
    let nodes = cluster(&redis, 1).await;
    let sender = client(&nodes[0], "sender").await;
    let redis_client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = tokio::time::timeout(WAIT, redis_client.get_multiplexed_async_connection())
        .await
        .expect("connects in time")
        .expect("connects");
    let keys = nodes[0].backplane.keys();
    let deaf = 1_001u64;
    let info = NodeInfo {
        link_addr: String::new(),
        started_us: 1,
        version: "0".to_owned(),
    };
    nodes::reregister(&mut conn, keys, deaf, &info, Duration::from_secs(30))
        .await
        .expect("registered");
    let receiver = deaf << 32 | 1;
    let record = ClientRecord {
        id: receiver,
        name: "between-connections".to_owned(),
        user: String::new(),
        connected_us: 1,
        receives_relay: true,
    };
    nodes::add_clients(&mut conn, keys, deaf, &[record], Duration::from_secs(30))
        .await
        .expect("record written");
    let outcomes = sender
        .relay(&[receiver], "are you back?", "text/plain")
        .await
        .expect("relay");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, RelayStatus::Dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_registration_expired_lists_its_clients_again_when_it_comes_back() {
    let redis = redis();
    let nodes = cluster(&redis, 2).await;
    let observer = client(&nodes[0], "observer").await;
    let on_b = [client(&nodes[1], "b1").await, client(&nodes[1], "b2").await];
    let expected: Vec<u64> = on_b.iter().map(id).collect();
    assert_eq!(listed_when(&observer, &expected).await, expected);
    // What Redis forgets when the node's registration expires.
    let node_b = nodes[1].backplane.incarnation();
    let keys = nodes[1].backplane.keys();
    let node_b_text = node_b.to_string();
    let (info, ids, records) = (
        keys.node_info(node_b),
        keys.node_clients(node_b),
        keys.node_client_info(node_b),
    );
    let _: redis::Value = redis
        .command(&["ZREM", &keys.nodes(), &node_b_text])
        .expect("zrem");
    let _: redis::Value = redis.command(&["DEL", &info, &ids, &records]).expect("del");
    // The next heartbeat registers the node again, and every client with it (their
    // records are gone: only the node can write them again).
    assert_eq!(listed_when(&observer, &expected).await, expected);
}

/// A node whose anonymous sessions take `role`.
async fn node_with_role(redis: &RedisProc, role: RoleSpec) -> Node {
    let mut config = RedisConfig::new(redis.url());
    config.op_timeout = Duration::from_millis(1000);
    let backplane = RedisBackplane::start(config).await.expect("node joins");
    let server = Server::builder()
        .listen_tcp("127.0.0.1:0")
        .backplane(backplane.clone())
        .configure(|config| {
            config.security.roles.insert("guest".into(), role);
            config.security.anonymous_role = Some("guest".into());
        })
        .start()
        .await
        .expect("node starts");
    Node { server, backplane }
}

fn relay_to(users: &[&str]) -> Rule {
    Rule {
        allow: users.iter().map(|user| (*user).to_owned()).collect(),
        deny: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_rules_hold_for_receivers_on_other_nodes() {
    let redis = redis();
    // A's sessions may relay to no anonymous user; B's may; C's take no relays.
    let a = node_with_role(
        &redis,
        RoleSpec {
            relay: relay_to(&["someone"]),
            ..RoleSpec::default()
        },
    )
    .await;
    let b = node_with_role(
        &redis,
        RoleSpec {
            relay: relay_to(&["anonymous"]),
            ..RoleSpec::default()
        },
    )
    .await;
    let c = node_with_role(
        &redis,
        RoleSpec {
            relay: relay_to(&["anonymous"]),
            receive_relay: false,
            ..RoleSpec::default()
        },
    )
    .await;
    let on_a = client(&a, "on-a").await;
    let on_b = client(&b, "on-b").await;
    let on_c = client(&c, "on-c").await;
    let mut feed_a = on_a.direct_feed().expect("direct feed");
    let mut feed_b = on_b.direct_feed().expect("direct feed");
    // B lists only those it may relay to: A's client, not C's (it takes no relays)...
    assert_eq!(listed_when(&on_b, &[id(&on_a)]).await, vec![id(&on_a)]);
    // ...once C's record is there for sure (C lists A and B).
    let both = [id(&on_a), id(&on_b)];
    assert_eq!(listed_when(&on_c, &both).await, both.to_vec());
    assert_eq!(
        on_b.list_clients().await.expect("list").len(),
        1,
        "C's client is not listed to B"
    );
    // A lists nobody: it may relay to no anonymous user.
    assert!(on_a.list_clients().await.expect("list").is_empty());

    let refused = on_a
        .relay(&[id(&on_b)], "psst", "text/plain")
        .await
        .expect_err("A may not relay to B's anonymous client");
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("relay to anonymous is not permitted"),
        "{refused}"
    );
    let refused = on_b
        .relay(&[id(&on_a), id(&on_c)], "psst", "text/plain")
        .await
        .expect_err("C's client takes no relays");
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");
    assert!(
        refused.to_string().contains("does not take relays"),
        "{refused}"
    );
    // Nothing was delivered to anyone; what B may send arrives.
    let outcomes = on_b
        .relay(&[id(&on_a)], "hello", "text/plain")
        .await
        .expect("relay");
    assert_eq!(outcomes[0].status, RelayStatus::Delivered);
    let direct = tokio::time::timeout(WAIT, feed_a.next())
        .await
        .expect("the body within the wait")
        .expect("the feed goes on");
    assert_eq!(
        direct.text(),
        Some("hello"),
        "the refused relays never came"
    );
    let outcomes = on_c
        .relay(&[id(&on_b)], "to b", "text/plain")
        .await
        .expect("relay");
    assert_eq!(outcomes[0].status, RelayStatus::Delivered);
    let direct = tokio::time::timeout(WAIT, feed_b.next())
        .await
        .expect("the body within the wait")
        .expect("the feed goes on");
    assert_eq!(direct.text(), Some("to b"), "the refused relay never came");
}
