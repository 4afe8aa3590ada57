//! Allocations per message on the client's hot paths, counted by a global allocator that
//! counts only on the thread the client runs on (the server runs on threads of its own).
//!
//! In steady state a publish sent without reply allocates nothing (it is encoded straight
//! into the send queue), and a received message allocates at most itself.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, Payload, Replay, Text};

mod common;
use common::{client_runtime, counted_during, start_server};

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

fn body() -> Payload {
    Payload {
        content_type: Text::from_static(switchboard_client::OCTET_STREAM),
        body: Bytes::from_static(b"sixteen bytes..."),
        headers: Vec::new(),
    }
}

/// Allocations made on this thread while `work` runs.
async fn allocations_during(work: impl std::future::Future<Output = ()>) -> u64 {
    counted_during(work).await.allocations
}

/// Receives `count` messages of 16 bytes.
async fn receive(subscription: &mut switchboard_client::Subscription, count: u64) {
    for _ in 0..count {
        let message = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("a message in time")
            .expect("subscription open")
            .expect("a message");
        assert_eq!(message.body().len(), 16);
    }
}

const MESSAGES: u64 = 20_000;
const BATCH: u64 = 500;

#[test]
fn a_publish_without_reply_allocates_nothing_in_steady_state() {
    let (address, stop) = start_server();
    client_runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new(address.to_string(), "publisher"))
            .await
            .expect("connects");
        let publish_batches = |batches: u64| {
            let client = client.clone();
            async move {
                for _ in 0..batches {
                    for _ in 0..BATCH {
                        client
                            .publish("alloc.publish", body())
                            .no_reply()
                            .await
                            .expect("queued");
                    }
                    // Lets the writer write the batch.
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        };
        // Warm up: buffers grow to their working size.
        publish_batches(4).await;
        client.flush().await.expect("flushed");
        let allocations = allocations_during(publish_batches(MESSAGES / BATCH)).await;
        client.flush().await.expect("flushed");
        client.close().await.expect("closed");
        println!("{allocations} allocations for {MESSAGES} publishes");
        // A few are allowed for what is not per message (a read buffer refilled, a timer).
        assert!(
            allocations <= MESSAGES / 1000,
            "{allocations} allocations for {MESSAGES} publishes"
        );
    });
    let _ = stop.send(());
}

#[test]
fn a_received_message_allocates_at_most_itself() {
    let (address, stop) = start_server();
    // The publisher runs on a thread of its own, so that only receiving is counted.
    let (go_tx, go_rx) = std_mpsc::channel::<u64>();
    let publisher = std::thread::spawn(move || {
        let runtime = client_runtime();
        runtime.block_on(async move {
            let client = Client::connect(ClientConfig::new(address.to_string(), "publisher"))
                .await
                .expect("connects");
            while let Ok(count) = go_rx.recv() {
                for _ in 0..count {
                    client
                        .publish("alloc.receive", body())
                        .no_reply()
                        .await
                        .expect("queued");
                }
                client.flush().await.expect("flushed");
            }
            client.close().await.expect("closed");
        });
    });
    client_runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new(address.to_string(), "subscriber"))
            .await
            .expect("connects");
        let mut subscription = client
            .subscribe("alloc.receive", Replay::None)
            .await
            .expect("subscribed");
        go_tx.send(2_000).expect("publisher runs");
        receive(&mut subscription, 2_000).await;
        go_tx.send(MESSAGES).expect("publisher runs");
        let allocations = allocations_during(receive(&mut subscription, MESSAGES)).await;
        drop(go_tx);
        // At most the message itself; in fact far less (queues and buffers are reused).
        assert!(
            allocations <= MESSAGES / 10,
            "{allocations} allocations for {MESSAGES} received messages"
        );
        println!("{allocations} allocations for {MESSAGES} received messages");
        drop(subscription);
        client.close().await.expect("closed");
    });
    publisher.join().expect("publisher ends");
    let _ = stop.send(());
}
