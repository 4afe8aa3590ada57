//! Receiving large messages: a large frame is read into a buffer of its own, so that its
//! body is neither copied when the read buffer grows around it nor allocated twice, and
//! that buffer is read into again once the application has dropped its message.
//! Counted by a global allocator that counts the bytes allocated on the thread the
//! receiving client runs on (the server and the publisher run on threads of their own).

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, Payload, Replay, Text};

mod common;
use common::{client_runtime, counted_during, start_server};

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

/// The allocator's counts are global: the tests of this file count one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A body of `len` bytes that differs with `seed`.
fn body(len: usize, seed: u64) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u64).wrapping_mul(7).wrapping_add(seed) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Sizes published in turn: small, around the size from which a frame gets a buffer of
/// its own, large, and past the largest such frame.
const SIZES: [usize; 7] = [
    100,
    16 * 1024 - 100,
    16 * 1024,
    64 * 1024,
    70_000,
    2 << 20,
    10,
];

/// Publishes `rounds` rounds of [`SIZES`] (or 64 KiB bodies only) from a thread of its
/// own, without waiting for acks.
fn publisher(address: std::net::SocketAddr, go: std_mpsc::Receiver<(u64, bool)>) {
    client_runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new(address.to_string(), "publisher"))
            .await
            .expect("connects");
        while let Ok((rounds, mixed)) = go.recv() {
            for round in 0..rounds {
                let sizes: &[usize] = if mixed { &SIZES } else { &[64 * 1024] };
                for (index, len) in sizes.iter().enumerate() {
                    let payload = Payload {
                        content_type: Text::from_static(switchboard_client::OCTET_STREAM),
                        body: body(*len, round * 16 + index as u64),
                        headers: Vec::new(),
                    };
                    client
                        .publish("large.frames", payload)
                        .no_reply()
                        .await
                        .expect("queued");
                }
            }
            client.flush().await.expect("flushed");
        }
        client.close().await.expect("closed");
    });
}

async fn next_body(subscription: &mut switchboard_client::Subscription) -> Bytes {
    tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
        .expect("a message")
        .body()
        .clone()
}

#[test]
fn large_frames_arrive_whole_and_are_allocated_once() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    const ROUNDS: u64 = 3;
    const LARGE: u64 = 400;
    let (address, stop) = start_server();
    let (go_tx, go_rx) = std_mpsc::channel();
    let publishing = std::thread::spawn(move || publisher(address, go_rx));
    client_runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new(address.to_string(), "subscriber"))
            .await
            .expect("connects");
        let mut subscription = client
            .subscribe("large.frames", Replay::None)
            .await
            .expect("subscribed");
        // Every size arrives whole, in order, around every threshold.
        go_tx.send((ROUNDS, true)).expect("publisher runs");
        for round in 0..ROUNDS {
            for (index, len) in SIZES.iter().enumerate() {
                let received = next_body(&mut subscription).await;
                assert_eq!(received.len(), *len);
                assert!(
                    received == body(*len, round * 16 + index as u64),
                    "the body of {len} bytes of round {round} arrived changed"
                );
            }
        }
        // 64 KiB messages: each is allocated once, in a buffer of its size.
        go_tx.send((LARGE, false)).expect("publisher runs");
        let counted = counted_during(async {
            for _ in 0..LARGE {
                assert_eq!(next_body(&mut subscription).await.len(), 64 * 1024);
            }
        })
        .await;
        let per_message = counted.bytes / LARGE;
        println!("{per_message} bytes allocated per 64 KiB message received");
        let bound = 64 * 1024 + 8 * 1024;
        assert!(
            per_message <= bound,
            "{per_message} bytes allocated per 64 KiB message received (bound {bound})"
        );
        drop(go_tx);
        drop(subscription);
        client.close().await.expect("closed");
    });
    publishing.join().expect("publisher ends");
    let _ = stop.send(());
}

#[test]
fn the_buffer_of_a_large_frame_is_used_again_once_its_message_is_dropped() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    const LARGE: u64 = 400;
    let (address, stop) = start_server();
    let (go_tx, go_rx) = std_mpsc::channel();
    let publishing = std::thread::spawn(move || publisher(address, go_rx));
    client_runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new(address.to_string(), "subscriber"))
            .await
            .expect("connects");
        let mut subscription = client
            .subscribe("large.frames", Replay::None)
            .await
            .expect("subscribed");
        // One message at a time, each dropped before the next is published: every
        // large frame after the first can be read into the buffer of the one before.
        let expected = body(64 * 1024, 0);
        go_tx.send((1, false)).expect("publisher runs");
        assert!(next_body(&mut subscription).await == expected);
        let counted = counted_during(async {
            for round in 0..LARGE {
                go_tx.send((1, false)).expect("publisher runs");
                let received = next_body(&mut subscription).await;
                assert!(
                    received == expected,
                    "the body of message {round} arrived changed"
                );
            }
        })
        .await;
        let per_message = counted.bytes / LARGE;
        println!("{per_message} bytes allocated per 64 KiB message received and dropped");
        let bound = 8 * 1024;
        assert!(
            per_message <= bound,
            "{per_message} bytes allocated per 64 KiB message received and dropped (bound {bound})"
        );
        drop(go_tx);
        drop(subscription);
        client.close().await.expect("closed");
    });
    publishing.join().expect("publisher ends");
    let _ = stop.send(());
}
