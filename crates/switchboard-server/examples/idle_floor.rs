//! The floor under an idle connection's memory on this runtime: what an accepted socket
//! costs the process when nothing but tokio holds it, before any session state.
//!
//! Accepts `--connections N` (default 5 000) loopback sockets in each of a few shapes
//! and prints, per connection, the heap bytes allocated and not freed (a counting
//! global allocator) and the growth of the process's resident set:
//!
//! * `registered`: a tokio `TcpStream` kept in a vector, no task (the I/O registration
//!   alone);
//! * `task`: one task per connection awaiting the stream's readability;
//! * `task+timer`: the same, the wait bounded by a deadline as a heartbeat would be;
//! * `task+timer+token`: the same, also racing a child cancellation token (what a
//!   session's kill switch was before it became a flag).
//!
//! The client ends are blocking standard sockets, which hold no heap of their own.
//!
//! ```sh
//! cargo run --release -p switchboard-server --example idle_floor -- --connections 5000
//! cargo run --release -p switchboard-server --example idle_floor -- --shape task
//! ```

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/live_bytes.rs"]
mod live_bytes;

use live_bytes::LIVE_BYTES;

/// The shapes measured, in the order they run.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Registered,
    Task,
    TaskTimer,
    TaskTimerToken,
}

impl Shape {
    const ALL: [Shape; 4] = [
        Shape::Registered,
        Shape::Task,
        Shape::TaskTimer,
        Shape::TaskTimerToken,
    ];

    fn named(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|shape| shape.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Registered => "registered",
            Shape::Task => "task",
            Shape::TaskTimer => "task+timer",
            Shape::TaskTimerToken => "task+timer+token",
        }
    }
}

/// The process's resident set in bytes, where the platform tells it.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Waits until the peer sends something or goes (readiness alone can be reported before
/// any byte is there, as it is for a socket just registered).
async fn wait_for_bytes(stream: &TcpStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut [0u8; 1]) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
}

/// Holds one accepted connection as `shape` says, until `stop` is cancelled.
fn hold(
    shape: Shape,
    stream: TcpStream,
    stop: &CancellationToken,
    held: &mut Vec<TcpStream>,
    tasks: &tokio_util::task::TaskTracker,
) {
    match shape {
        Shape::Registered => held.push(stream),
        Shape::Task => {
            let stop = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = wait_for_bytes(&stream) => {}
                }
            });
        }
        Shape::TaskTimer => {
            let stop = stop.clone();
            tasks.spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = tokio::time::timeout_at(deadline, wait_for_bytes(&stream)) => {}
                }
            });
        }
        Shape::TaskTimerToken => {
            let kill_switch = stop.child_token();
            tasks.spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
                tokio::select! {
                    () = kill_switch.cancelled() => {}
                    _ = tokio::time::timeout_at(deadline, wait_for_bytes(&stream)) => {}
                }
            });
        }
    }
}

async fn measure(shape: Shape, connections: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let mut held = Vec::with_capacity(connections);
    let mut clients = Vec::with_capacity(connections);
    // Warm up: the runtime's and the allocator's first-use costs are not per connection.
    for _ in 0..64 {
        let client = std::net::TcpStream::connect(addr)?;
        let (stream, _) = listener.accept().await?;
        drop((client, stream));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    let rss_before = resident_bytes();
    for _ in 0..connections {
        clients.push(std::net::TcpStream::connect(addr)?);
        let (stream, _) = listener.accept().await?;
        hold(shape, stream, &stop, &mut held, &tasks);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A task that ended would make the figure a lie: every one must still be waiting.
    if !matches!(shape, Shape::Registered) && tasks.len() != connections {
        return Err(std::io::Error::other(format!(
            "{} of {connections} tasks still wait",
            tasks.len()
        )));
    }
    let heap = LIVE_BYTES.load(Ordering::Relaxed) - heap_before;
    let per_connection = heap as f64 / connections as f64;
    let rss = match (rss_before, resident_bytes()) {
        (Some(before), Some(after)) => format!(
            "{:.0} B",
            after.saturating_sub(before) as f64 / connections as f64
        ),
        _ => "unknown".to_owned(),
    };
    println!(
        "{:<18} heap {per_connection:>6.0} B per connection, RSS {rss:>8} per connection",
        shape.name()
    );
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    drop(held);
    drop(clients);
    Ok(())
}

fn main() -> std::io::Result<()> {
    let usage = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: idle_floor [--connections N] [--shape registered|task|task+timer|task+timer+token]",
        )
    };
    let mut args = std::env::args().skip(1);
    let mut connections: usize = 5000;
    let mut shape = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--connections", Some(value)) => {
                connections = value.parse().map_err(|_| usage())?;
            }
            ("--shape", Some(value)) => shape = Some(Shape::named(&value).ok_or_else(usage)?),
            _ => return Err(usage()),
        }
    }
    let Some(shape) = shape else {
        // Each shape in a process of its own: memory freed by one would otherwise be
        // reused by the next, and its resident set would not grow.
        let program = std::env::current_exe()?;
        for shape in Shape::ALL {
            let status = std::process::Command::new(&program)
                .args(["--connections", &connections.to_string()])
                .args(["--shape", shape.name()])
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other(format!("{} failed", shape.name())));
            }
        }
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(measure(shape, connections))
}
