//! A restart loads a durable history without holding it whole: the store streams its
//! messages into the history, which lets the older ones go as it fills, so the heap never
//! grows at start much past what the server keeps once started, however long the history.
//!
//! Memory is counted by a global allocator (the most bytes allocated and not yet freed
//! at once), so the bound does not depend on the allocator's caches. This file holds one
//! test, so that nothing else allocates while it measures.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use switchboard_proto::packet::{Packet, Publish, Scope, Since};
use switchboard_server::{Server, ServerHandle, SyncPolicy};

mod common;
#[path = "common/live_bytes.rs"]
mod live_bytes;

use common::RawClient;
use live_bytes::{LIVE_BYTES, PEAK_BYTES, reset_peak};

/// Messages published, and the size of each body: 96 MiB in all, well over what a
/// history keeps in memory (8 MiB of frames).
const COUNT: u64 = 12_000;
const BODY: usize = 8 * 1024;

fn body(n: u64) -> Bytes {
    let line = format!("message {n:08} ");
    Bytes::from(line.repeat(BODY / line.len() + 1)[..BODY].to_owned())
}

async fn start(dir: &std::path::Path) -> ServerHandle {
    Server::builder()
        .listen_tcp("127.0.0.1:0")
        .data_dir(dir)
        .sync(SyncPolicy::default())
        .start()
        .await
        .expect("server starts on the data directory")
}

/// GET_MESSAGES of channel `log` from `since`, at most `limit`, as (seq, body).
async fn fetch(client: &mut RawClient, since: Since, limit: u64) -> Vec<(u64, Bytes)> {
    let messages = client
        .fetch_messages(Scope::Channel, "log", since, Some(limit))
        .await;
    messages.into_iter().map(|m| (m.seq, m.body)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_a_long_history_without_holding_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (mut alice, _) = RawClient::connect_session(&server, "alice").await;
    alice.create_channel("log", 20_000).await;
    for n in 1..=COUNT {
        let reply = alice
            .request(Packet::Publish(Publish {
                channel: "log".into(),
                content_type: "application/octet-stream".into(),
                body: body(n),
                ..Publish::default()
            }))
            .await;
        assert!(matches!(reply, Packet::PublishAck(_)), "{reply:?}");
    }
    drop(alice);
    server.shutdown().await;
    drop(server);

    let before = LIVE_BYTES.load(Ordering::Relaxed);
    reset_peak();
    let server = start(dir.path()).await;
    let peak = PEAK_BYTES.load(Ordering::Relaxed) - before;
    // What the server keeps once started: the history's newest messages, and what the
    // store holds in its own memory (its memtables, rebuilt from the journal).
    let kept = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let stored = (COUNT as usize * BODY) as isize;
    eprintln!(
        "heap while loading {} MiB of bodies: {} MiB at the peak, {} MiB kept",
        stored >> 20,
        peak >> 20,
        kept >> 20
    );
    // Loaded whole, the peak was the bodies twice over (decoded, then encoded as frames)
    // above what is kept; streamed, it is a chunk or two.
    assert!(
        peak - kept < stored / 4,
        "loading took {} MiB at its peak, {} MiB more than it kept, for {} MiB of bodies",
        peak >> 20,
        (peak - kept) >> 20,
        stored >> 20
    );

    // All of it is there, the oldest read back from the store.
    let (mut bob, _) = RawClient::connect_session(&server, "bob").await;
    assert_eq!(
        fetch(&mut bob, Since::Seq(1), 2).await,
        [(1, body(1)), (2, body(2))]
    );
    assert_eq!(fetch(&mut bob, Since::All, 1).await, [(COUNT, body(COUNT))]);
    assert!(common::stat(&server, "history_messages_read_back") >= 2);
    drop(bob);
    server.shutdown().await;
}
