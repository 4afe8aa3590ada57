//! The listen backlog: a burst of connections arriving while the server is busy must be
//! queued by the kernel, not stalled. With a backlog of 128, connects beyond it waited
//! a second for the SYN to be sent again; the default is now 1024, and configurable.
//!
//! The server runs on a runtime of one thread of its own, which the tests keep busy for a
//! while: nothing is accepted then, so what completes is exactly what the backlog holds.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchboard_server::{Server, ServerConfig};

/// Connections of the burst: well over the old backlog of 128, well under the new 1024
/// (and the sockets of both ends stay under the usual limit of 1024 open files).
const BURST: usize = 400;
/// How long the server's only thread is kept busy.
const BUSY: Duration = Duration::from_millis(1500);
/// Connects that complete within this are queued by the kernel; the others wait for the
/// SYN to be sent again after a second.
const PROMPT: Duration = Duration::from_millis(800);

enum Listener {
    Tcp(std::net::SocketAddr),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// Starts a server on a thread and runtime of its own; returns where it listens, a way
/// to keep its thread busy for `BUSY`, and a way to stop it.
fn start_on_own_thread(
    change: impl FnOnce(&mut ServerConfig) + Send + 'static,
) -> (
    Listener,
    tokio::runtime::Handle,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let server = Server::builder()
                .configure(change)
                .start()
                .await
                .expect("server starts");
            let listener = match (server.tcp_addr(), server.unix_path()) {
                (Some(addr), _) => Listener::Tcp(addr),
                #[cfg(unix)]
                (None, Some(path)) => Listener::Unix(path.to_owned()),
                _ => panic!("no listener"),
            };
            ready_tx
                .send((listener, tokio::runtime::Handle::current()))
                .expect("test waits");
            let _ = stop_rx.await;
            server.shutdown().await;
        });
    });
    let (listener, handle) = ready_rx.recv().expect("server started");
    (listener, handle, stop_tx, thread)
}

/// Keeps the server's only thread busy: nothing is accepted meanwhile.
fn keep_busy(server: &tokio::runtime::Handle) {
    server.spawn(async {
        std::thread::sleep(BUSY);
    });
}

/// Opens `BURST` TCP connections at once while the server is busy; returns how many
/// completed within `PROMPT`.
async fn tcp_burst(addr: std::net::SocketAddr) -> usize {
    let started = Instant::now();
    let connects: Vec<_> = (0..BURST)
        .map(|_| {
            tokio::spawn(async move {
                let connect = tokio::net::TcpStream::connect(addr);
                match tokio::time::timeout(PROMPT, connect).await {
                    // Held until the burst is over, so the backlog stays full.
                    Ok(Ok(stream)) => Some(stream),
                    _ => None,
                }
            })
        })
        .collect();
    let mut streams = Vec::new();
    for connect in connects {
        if let Some(stream) = connect.await.expect("connect task") {
            streams.push(stream);
        }
    }
    assert!(
        started.elapsed() < BUSY,
        "the burst outlasted the busy server ({:?}): the test proves nothing",
        started.elapsed()
    );
    streams.len()
}

fn somaxconn() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Finding: the listen backlog was 128, and connects of a burst stalled a second. With
/// the default backlog, a burst of 400 while the server accepts nothing all completes at
/// once; with `backlog = 64`, most of it waits, which shows that the setting is what
/// reaches `listen(2)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_burst_is_queued_by_the_default_backlog() {
    if somaxconn().is_some_and(|max| max < BURST + 1) {
        eprintln!("skipped: net.core.somaxconn caps the backlog under {BURST}");
        return;
    }
    assert_eq!(ServerConfig::default().backlog, 1024);
    for (backlog, expect_all) in [(None, true), (Some(64), false)] {
        let (listener, handle, stop, thread) = start_on_own_thread(move |config| {
            config.tcp.push("127.0.0.1:0".to_owned());
            if let Some(backlog) = backlog {
                config.backlog = backlog;
            }
        });
        let Listener::Tcp(addr) = listener else {
            unreachable!()
        };
        keep_busy(&handle);
        let prompt = tcp_burst(addr).await;
        if expect_all {
            assert_eq!(prompt, BURST, "connects of the burst completed at once");
        } else {
            assert!(
                prompt < BURST / 2,
                "{prompt} of {BURST} completed with a backlog of 64"
            );
        }
        let _ = stop.send(());
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join")
            .expect("server thread");
    }
}

/// The Unix socket listener takes the same backlog: a burst of 400 while the server
/// accepts nothing is queued (a Unix socket's connect fails at once when the backlog is
/// full, instead of waiting).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_burst_is_queued_by_the_default_backlog() {
    if somaxconn().is_some_and(|max| max < BURST + 1) {
        eprintln!("skipped: net.core.somaxconn caps the backlog under {BURST}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("burst.sock");
    let socket = path.clone();
    let (listener, handle, stop, thread) = start_on_own_thread(move |config| {
        config.unix = Some(socket);
    });
    let Listener::Unix(path_listened) = listener else {
        unreachable!()
    };
    assert_eq!(path_listened, path);
    keep_busy(&handle);
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..BURST {
        match tokio::net::UnixStream::connect(&path).await {
            Ok(stream) => streams.push(stream),
            Err(error) => panic!("connect {} of {BURST} failed: {error}", streams.len() + 1),
        }
    }
    assert!(started.elapsed() < BUSY, "{:?}", started.elapsed());
    drop(streams);
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("server thread");
}
