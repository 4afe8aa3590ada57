//! Joining a large group (robustness finding 11, "group joins slow down as a group
//! grows"): a real durable server, measured by what it hands its store per join.

use std::path::Path;

use switchboard_client::Client;
use switchboard_server::{FjallStorage, ServerHandle, Storage, SyncPolicy};

mod support;
use support::library::client;

/// Members already in the large group before the server starts.
const LARGE: usize = 20_000;
/// Joins measured in each group.
const JOINS: usize = 100;

async fn store_bytes(client: &Client) -> u64 {
    let stats = client.stats().await.unwrap();
    stats
        .stats
        .iter()
        .find(|stat| stat.name == "store_bytes_queued")
        .expect("STATS reports store_bytes_queued")
        .value
}

/// The size of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() {
            disk_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// What `JOINS` new members joining `group` cost: bytes handed to the store, and growth
/// of the data directory.
async fn cost_of_joins(
    server: &ServerHandle,
    observer: &Client,
    dir: &Path,
    group: &str,
) -> (u64, i64) {
    let before = (store_bytes(observer).await, disk_bytes(dir));
    for i in 0..JOINS {
        let member = client(server, &format!("{group}-joiner-{i:04}")).await;
        member.join_group(group).await.unwrap();
        member.close().await.unwrap();
    }
    // What was queued is on disk (or in the journal's file) before measuring.
    observer.stats().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let grown = disk_bytes(dir) as i64 - before.1 as i64;
    (store_bytes(observer).await - before.0, grown)
}

/// Finding 11: a join costs the store the same few bytes in a group of 20,000 members as
/// in an empty one (it used to rewrite the whole member list: 433 MB for 12,000 joins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_costs_the_same_in_a_group_of_twenty_thousand_as_in_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The large group, written straight to the store as a server would have.
        let store = FjallStorage::open(dir.path(), SyncPolicy::Never).unwrap();
        store.load().unwrap();
        store.put_group("large", "").unwrap();
        store.put_group("small", "").unwrap();
        for i in 0..LARGE {
            store
                .add_member("large", &format!("member-{i:05}"))
                .unwrap();
        }
        store.close(&[]);
    }
    let server = support::library::durable_server(dir.path(), SyncPolicy::Never).await;
    let observer = client(&server, "observer").await;
    assert_eq!(observer.group_members("large").await.unwrap().len(), LARGE);

    let (small, _) = cost_of_joins(&server, &observer, dir.path(), "small").await;
    let (large, disk_growth) = cost_of_joins(&server, &observer, dir.path(), "large").await;
    eprintln!(
        "{JOINS} joins in the large group: {large} bytes queued, data directory grew {disk_growth} bytes"
    );
    // Rewriting the whole list would write about 20 bytes per member per join: 40 MB.
    assert!(
        disk_growth < 1 << 20,
        "{JOINS} joins grew the data directory by {disk_growth} bytes"
    );
    let per_join = large / JOINS as u64;
    assert!(
        per_join < 256,
        "a join in a group of {LARGE} members cost the store {per_join} bytes"
    );
    assert_eq!(small, large, "a join costs what it costs in an empty group");
    assert_eq!(
        observer.group_members("large").await.unwrap().len(),
        LARGE + JOINS
    );
    observer.close().await.unwrap();
    server.shutdown().await;
}
