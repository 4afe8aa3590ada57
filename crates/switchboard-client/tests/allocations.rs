//! Allocations per message on the client's hot paths, counted by a global allocator that
//! counts only on the thread the client runs on (the server runs on threads of its own).
//!
//! In steady state a publish sent without reply allocates nothing (it is encoded straight
//! into the send queue), and a received message allocates at most itself.

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

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `work` runs.
async fn allocations_during(work: impl std::future::Future<Output = ()>) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|counting| counting.set(true));
    work.await;
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// A server on its own runtime and threads, so that its allocations are not counted;
/// returns its address and a sender that stops it.
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

fn body() -> Payload {
    Payload {
        content_type: Text::from_static(switchboard_client::OCTET_STREAM),
        body: Bytes::from_static(b"sixteen bytes..."),
        headers: Vec::new(),
    }
}

/// The client on the test's thread (a current-thread runtime): its tasks run here, so
/// their allocations are the ones counted.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
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
        let mut subscription = client.subscribe("alloc.receive").await.expect("subscribed");
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
