//! Cluster mode with real `switchboard serve --cluster` processes on a real Redis: a
//! node killed with SIGKILL says nothing on its way out, and its clients leave the
//! other nodes' LIST_CLIENTS when its registration expires (5 s), not later.

#![cfg(unix)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use switchboard_client::{Client, ClientConfig};
use switchboard_cluster_redis::testing::{RedisOptions, RedisProc};

mod support;

/// How long a node's registration lives without a heartbeat.
const NODE_TTL: Duration = Duration::from_secs(5);

fn serve_node(redis: &RedisProc, dir: &std::path::Path) -> (support::KillOnDrop, String) {
    let url = redis.url();
    support::serve_process(&[
        "--no-unix".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--cluster".as_ref(),
        url.as_ref(),
        // The test Redis promises no fsync.
        "--sync".as_ref(),
        "never".as_ref(),
    ])
}

async fn connect(addr: &str, name: &str) -> Client {
    let config = ClientConfig::new(addr, name).with_request_timeout(Duration::from_secs(10));
    Client::connect(config).await.expect("client connects")
}

async fn listed(observer: &Client) -> BTreeSet<u64> {
    observer
        .list_clients()
        .await
        .expect("list clients")
        .iter()
        .map(|client| client.client_id)
        .collect()
}

/// Waits until `observer` lists exactly `expected`; returns when it did, or fails.
async fn until_listed(observer: &Client, expected: &BTreeSet<u64>, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let now = listed(observer).await;
        if &now == expected {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "listed {now:?}, expected {expected:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_leave_every_listing_within_its_registration_ttl() {
    let redis = RedisProc::start(RedisOptions::default()).expect("redis-server starts");
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut nodes: Vec<(support::KillOnDrop, String)> = dirs
        .iter()
        .map(|dir| serve_node(&redis, dir.path()))
        .collect();
    let mut clients = Vec::new();
    for (index, (_, addr)) in nodes.iter().enumerate() {
        for i in 0..2 {
            clients.push((index, connect(addr, &format!("n{index}-{i}")).await));
        }
    }
    let ids = |keep: &dyn Fn(usize) -> bool, except: &Client| -> BTreeSet<u64> {
        clients
            .iter()
            .filter(|(node, client)| {
                keep(*node) && client.session().client_id != except.session().client_id
            })
            .map(|(_, client)| client.session().client_id)
            .collect()
    };
    let observers = [&clients[0].1, &clients[2].1];
    for observer in observers {
        until_listed(observer, &ids(&|_| true, observer), Duration::from_secs(10)).await;
    }
    let (killed, _) = &mut nodes[2];
    killed.kill().expect("SIGKILL");
    let killed_at = Instant::now();
    killed.wait().expect("reaped");
    for observer in observers {
        let gone = until_listed(
            observer,
            &ids(&|node| node != 2, observer),
            NODE_TTL + Duration::from_secs(3),
        )
        .await;
        let after = gone.duration_since(killed_at);
        assert!(
            after <= NODE_TTL + Duration::from_secs(1),
            "the killed node's clients were listed {after:?} after it died"
        );
    }
}
