//! Receiving large messages: a large frame is read into a buffer of its own, so that its
//! body is neither copied when the read buffer grows around it nor allocated twice.
//! Counted by a global allocator that counts the bytes allocated on the thread the
//! receiving client runs on (the server and the publisher run on threads of their own).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use switchboard_client::{Client, ClientConfig, Payload, Text};
use switchboard_server::Server;

struct Counting;

static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count(bytes: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    // A reallocation may move: counted as a new allocation of its new size.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A server on its own runtime and threads; returns its address and a sender that stops
/// it.
fn start_server() -> (std::net::SocketAddr, std_mpsc::Sender<()>) {
    let (address_tx, address_rx) = std_mpsc::channel();
    let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let server = Server::builder()
                .listen_tcp("127.0.0.1:0")
                .start()
                .await
                .expect("server starts");
            address_tx
                .send(server.tcp_addr().expect("a TCP address"))
                .expect("test waits");
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            server.shutdown().await;
        });
    });
    let address = address_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server started");
    (address, stop_tx)
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

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
    const ROUNDS: u64 = 3;
    const LARGE: u64 = 400;
    let (address, stop) = start_server();
    let (go_tx, go_rx) = std_mpsc::channel();
    let publishing = std::thread::spawn(move || publisher(address, go_rx));
    client_runtime().block_on(async move {
        let client = Client::connect(ClientConfig::new(address.to_string(), "subscriber"))
            .await
            .expect("connects");
        let mut subscription = client.subscribe("large.frames").await.expect("subscribed");
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
        let before = ALLOCATED_BYTES.load(Ordering::Relaxed);
        COUNTING.with(|counting| counting.set(true));
        for _ in 0..LARGE {
            assert_eq!(next_body(&mut subscription).await.len(), 64 * 1024);
        }
        COUNTING.with(|counting| counting.set(false));
        let per_message = (ALLOCATED_BYTES.load(Ordering::Relaxed) - before) / LARGE;
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
