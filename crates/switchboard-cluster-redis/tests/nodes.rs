//! The node registry and client directory on a real Redis: incarnations, heartbeats and
//! expiry, listing many clients by pages, and looking clients up by id.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use switchboard_cluster_redis::Keys;
use switchboard_cluster_redis::nodes::{
    self, ClientRecord, INCARNATION_LIMIT, NodeError, NodeInfo,
};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

/// Bound of every wait in these tests; generous for a busy machine.
const WAIT: Duration = Duration::from_secs(30);
/// A TTL for tests that need none to pass.
const LONG_TTL: Duration = Duration::from_secs(60);
/// A TTL short enough to watch a node expire.
const SHORT_TTL: Duration = Duration::from_millis(500);
/// The TTL of a node that heartbeats every 100 ms in a test: long enough that a busy
/// machine does not make it miss one, short beside how long the test watches it.
const HEARTBEAT_TTL: Duration = Duration::from_secs(1);

async fn start() -> (RedisProc, MultiplexedConnection, Keys) {
    let redis = RedisProc::start(RedisOptions::default()).expect("redis starts");
    let client = redis::Client::open(redis.url()).expect("url");
    let conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("connect in time")
        .expect("connect");
    (redis, conn, Keys::default())
}

fn info(n: u64) -> NodeInfo {
    NodeInfo {
        link_addr: format!("127.0.0.1:{}", 7000 + n),
        started_us: 1_700_000_000_000_000 + n,
        version: format!("1.{n}"),
    }
}

fn client(incarnation: u64, n: u64) -> ClientRecord {
    ClientRecord {
        id: incarnation << 32 | n,
        name: format!("client:{n}"),
        user: format!("user{}", n % 7),
        connected_us: 1_700_000_000_000_000 + n,
        receives_relay: !n.is_multiple_of(3),
    }
}

fn incarnations(nodes: &[(u64, NodeInfo)]) -> Vec<u64> {
    nodes.iter().map(|(incarnation, _)| *incarnation).collect()
}

/// Polls `done` until it holds, or fails after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn registrations_take_distinct_increasing_incarnations() {
    let (_redis, mut conn, keys) = start().await;
    let mut taken = Vec::new();
    for n in 0..3 {
        taken.push(
            nodes::register(&mut conn, &keys, &info(n), LONG_TTL)
                .await
                .unwrap(),
        );
    }
    assert!(taken.windows(2).all(|pair| pair[0] < pair[1]), "{taken:?}");
    assert!(taken[0] >= 1);
    let live = nodes::live_nodes(&mut conn, &keys).await.unwrap();
    assert_eq!(incarnations(&live), taken);
    for (n, (_, node)) in live.iter().enumerate() {
        assert_eq!(*node, info(n as u64));
    }

    nodes::deregister(&mut conn, &keys, taken[1]).await.unwrap();
    let live = nodes::live_nodes(&mut conn, &keys).await.unwrap();
    assert_eq!(incarnations(&live), [taken[0], taken[2]]);
}

#[tokio::test]
async fn incarnations_from_2_to_the_21_are_refused() {
    let (redis, mut conn, keys) = start().await;
    let below = (INCARNATION_LIMIT - 2).to_string();
    let _: () = redis
        .command(&["SET", &keys.incarnation(), &below])
        .unwrap();
    let last = nodes::register(&mut conn, &keys, &info(0), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(last, INCARNATION_LIMIT - 1);
    let refused = nodes::register(&mut conn, &keys, &info(1), LONG_TTL).await;
    assert!(
        matches!(refused, Err(NodeError::IncarnationsExhausted { incarnation }) if incarnation == INCARNATION_LIMIT),
        "{refused:?}"
    );
    // The refused node is not registered.
    let live = nodes::live_nodes(&mut conn, &keys).await.unwrap();
    assert_eq!(incarnations(&live), [last]);
}

/// Time-based by nature: a node stays registered only while it heartbeats within its
/// TTL, so these waits are real time, bounded well past the TTL.
#[tokio::test]
async fn a_node_lives_while_it_heartbeats_and_expires_with_its_clients_when_it_stops() {
    let (redis, mut conn, keys) = start().await;
    let kept = nodes::register(&mut conn, &keys, &info(0), HEARTBEAT_TTL)
        .await
        .unwrap();
    let silent = nodes::register(&mut conn, &keys, &info(1), SHORT_TTL)
        .await
        .unwrap();
    let kept_clients = [client(kept, 1), client(kept, 2)];
    let silent_clients = [client(silent, 1), client(silent, 2)];
    nodes::add_clients(&mut conn, &keys, kept, &kept_clients, HEARTBEAT_TTL)
        .await
        .unwrap();
    nodes::add_clients(&mut conn, &keys, silent, &silent_clients, SHORT_TTL)
        .await
        .unwrap();
    assert_eq!(
        nodes::list_clients(&mut conn, &keys, None, 10)
            .await
            .unwrap()
            .len(),
        4
    );

    // Heartbeats every 100 ms keep `kept` alive over three of its TTLs; `silent` sends
    // none.
    let started = Instant::now();
    let mut silent_gone_after = None;
    while started.elapsed() < HEARTBEAT_TTL * 3 {
        assert!(
            nodes::heartbeat(&mut conn, &keys, kept, HEARTBEAT_TTL)
                .await
                .unwrap()
        );
        let live = incarnations(&nodes::live_nodes(&mut conn, &keys).await.unwrap());
        assert!(live.contains(&kept), "the heartbeating node expired");
        if silent_gone_after.is_none() && !live.contains(&silent) {
            silent_gone_after = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone_after = silent_gone_after.expect("the silent node expired");
    // Registered just before `started`: gone once its TTL ran out, seen within the
    // loop's period (plus a busy machine's delay).
    assert!(gone_after >= SHORT_TTL / 2, "expired after {gone_after:?}");
    assert!(
        gone_after < SHORT_TTL + Duration::from_secs(1),
        "expired after {gone_after:?}"
    );
    let listed = nodes::list_clients(&mut conn, &keys, None, 10)
        .await
        .unwrap();
    assert_eq!(listed, kept_clients);
    let found = nodes::client_records(
        &mut conn,
        &keys,
        &[silent_clients[0].id, kept_clients[0].id],
    )
    .await
    .unwrap();
    assert_eq!(found, [None, Some(kept_clients[0].clone())]);

    // Its keys are gone too, by their own expiry.
    eventually(WAIT, "the silent node's keys expire", || {
        let exists: redis::RedisResult<u64> = redis.command(&[
            "EXISTS",
            &keys.node_info(silent),
            &keys.node_clients(silent),
            &keys.node_client_info(silent),
        ]);
        async move { exists.unwrap() == 0 }
    })
    .await;

    // Its next heartbeat says so; it registers again under the same incarnation and
    // publishes its clients again.
    assert!(
        !nodes::heartbeat(&mut conn, &keys, silent, SHORT_TTL)
            .await
            .unwrap()
    );
    nodes::reregister(&mut conn, &keys, silent, &info(1), LONG_TTL)
        .await
        .unwrap();
    nodes::add_clients(&mut conn, &keys, silent, &silent_clients, LONG_TTL)
        .await
        .unwrap();
    assert!(
        nodes::heartbeat(&mut conn, &keys, silent, LONG_TTL)
            .await
            .unwrap()
    );
    let live = nodes::live_nodes(&mut conn, &keys).await.unwrap();
    assert!(live.contains(&(silent, info(1))), "{live:?}");
    let listed = nodes::list_clients(&mut conn, &keys, Some(kept << 32 | u64::from(u32::MAX)), 10)
        .await
        .unwrap();
    assert_eq!(listed, silent_clients);
}

#[tokio::test]
async fn ten_thousand_clients_over_three_nodes_list_completely_by_pages_in_id_order() {
    let (redis, mut conn, keys) = start().await;
    let mut all = Vec::new();
    for n in 0..3 {
        let incarnation = nodes::register(&mut conn, &keys, &info(n), LONG_TTL)
            .await
            .unwrap();
        // Low parts spread over the whole 32 bits, added out of order, in batches.
        let count = [3334, 3333, 3333][n as usize];
        let clients: Vec<ClientRecord> = (0..count)
            .rev()
            .map(|i: u64| client(incarnation, (i * 1_288_490_188 + 7) % (1 << 32)))
            .collect();
        for batch in clients.chunks(1000) {
            nodes::add_clients(&mut conn, &keys, incarnation, batch, LONG_TTL)
                .await
                .unwrap();
        }
        all.extend(clients);
    }
    // A node that died without deregistering: its registration is past (its score set
    // in the past stands for the TTL running out), its keys not yet expired. Never listed.
    let dead = nodes::register(&mut conn, &keys, &info(9), LONG_TTL)
        .await
        .unwrap();
    nodes::add_clients(&mut conn, &keys, dead, &[client(dead, 1)], LONG_TTL)
        .await
        .unwrap();
    let _: () = redis
        .command(&["ZADD", &keys.nodes(), "1", &dead.to_string()])
        .unwrap();
    all.sort_by_key(|client| client.id);
    assert_eq!(all.len(), 10_000);
    let unique: HashSet<u64> = all.iter().map(|client| client.id).collect();
    assert_eq!(unique.len(), 10_000);

    let mut listed = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = tokio::time::timeout(WAIT, nodes::list_clients(&mut conn, &keys, after, 100))
            .await
            .expect("in time")
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 100);
        pages += 1;
        after = page.last().map(|client| client.id);
        listed.extend(page);
    }
    assert_eq!(pages, 100);
    assert_eq!(listed, all);

    // A page that spans two nodes.
    let boundary = all
        .iter()
        .position(|c| c.id >> 32 != all[0].id >> 32)
        .unwrap();
    let page = nodes::list_clients(&mut conn, &keys, Some(all[boundary - 3].id), 5)
        .await
        .unwrap();
    assert_eq!(page, all[boundary - 2..boundary + 3]);

    // Removed clients are no longer listed.
    let removed: Vec<u64> = all.iter().step_by(2).map(|client| client.id).collect();
    for node in removed.chunk_by(|a, b| a >> 32 == b >> 32) {
        nodes::remove_clients(&mut conn, &keys, node[0] >> 32, node)
            .await
            .unwrap();
    }
    let rest = nodes::list_clients(&mut conn, &keys, None, 20_000)
        .await
        .unwrap();
    let expected: Vec<ClientRecord> = all.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(rest, expected);
}

#[tokio::test]
async fn client_records_for_present_removed_and_dead_node_ids() {
    let (_redis, mut conn, keys) = start().await;
    let a = nodes::register(&mut conn, &keys, &info(0), LONG_TTL)
        .await
        .unwrap();
    let b = nodes::register(&mut conn, &keys, &info(1), LONG_TTL)
        .await
        .unwrap();
    let a_clients = [client(a, 1), client(a, 2), client(a, 3)];
    let b_clients = [client(b, 1)];
    nodes::add_clients(&mut conn, &keys, a, &a_clients, LONG_TTL)
        .await
        .unwrap();
    nodes::add_clients(&mut conn, &keys, b, &b_clients, LONG_TTL)
        .await
        .unwrap();
    nodes::remove_clients(&mut conn, &keys, a, &[a_clients[1].id])
        .await
        .unwrap();
    nodes::deregister(&mut conn, &keys, b).await.unwrap();
    let never = (b + 100) << 32 | 1;

    let asked = [
        a_clients[2].id,
        a_clients[1].id,
        b_clients[0].id,
        never,
        a_clients[0].id,
        a_clients[2].id,
    ];
    let found = nodes::client_records(&mut conn, &keys, &asked)
        .await
        .unwrap();
    assert_eq!(
        found,
        [
            Some(a_clients[2].clone()),
            None,
            None,
            None,
            Some(a_clients[0].clone()),
            Some(a_clients[2].clone()),
        ]
    );
    assert!(
        nodes::client_records(&mut conn, &keys, &[])
            .await
            .unwrap()
            .is_empty()
    );

    // A node only publishes its own clients.
    let foreign = nodes::add_clients(&mut conn, &keys, a, &[client(b, 5)], LONG_TTL).await;
    assert!(
        matches!(foreign, Err(NodeError::ForeignClient { id, incarnation }) if id == b << 32 | 5 && incarnation == a),
        "{foreign:?}"
    );
}
