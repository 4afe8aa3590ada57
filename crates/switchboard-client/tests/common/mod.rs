//! What the client's counting tests share: a global allocator that counts, on the thread
//! that asks for it, the allocations made and their bytes; a server on a runtime and
//! threads of its own (so that its allocations are not counted); and a current-thread
//! runtime for the client, whose tasks then run on the counting thread.
//!
//! A test file installs the allocator with
//! `#[global_allocator] static GLOBAL: common::Counting = common::Counting;`.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use switchboard_server::Server;

/// What was allocated on the counting thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub allocations: u64,
    pub bytes: u64,
}

pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count(bytes: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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

fn counted_so_far() -> Counted {
    Counted {
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        bytes: ALLOCATED_BYTES.load(Ordering::Relaxed),
    }
}

/// What this thread allocated while `work` ran.
pub async fn counted_during(work: impl Future<Output = ()>) -> Counted {
    let before = counted_so_far();
    COUNTING.with(|counting| counting.set(true));
    work.await;
    COUNTING.with(|counting| counting.set(false));
    let after = counted_so_far();
    Counted {
        allocations: after.allocations - before.allocations,
        bytes: after.bytes - before.bytes,
    }
}

/// A server on its own runtime and threads; returns its address and a sender that stops
/// it.
pub fn start_server() -> (std::net::SocketAddr, std_mpsc::Sender<()>) {
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

/// The client on the test's thread (a current-thread runtime): its tasks run here, so
/// their allocations are the ones counted.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}
