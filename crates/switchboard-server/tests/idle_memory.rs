//! What an idle session costs the server: the heap bytes it holds for a session that
//! opened, subscribed to a channel of its own, and then sends nothing.
//!
//! Counted by a global allocator (bytes allocated and not freed), not read from the
//! process's RSS: the figure does not depend on the allocator's caches or on the machine,
//! so the bound can sit close to what a session really costs. The clients are blocking
//! standard sockets that hold no heap memory of their own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchboard_proto::packet::{Packet, SessionInit, Subscribe};
use switchboard_proto::{Flags, FrameCodec, Limits, PREFACE_LEN, PROTOCOL_VERSION, Preface};
use switchboard_server::{Server, ServerHandle};
use tokio_util::codec::Decoder;

#[path = "common/live_bytes.rs"]
mod live_bytes;

use live_bytes::LIVE_BYTES;

/// Sessions measured: both ends of each are sockets of this process, so this stays well
/// under the usual limit of 1024 open files.
const SESSIONS: usize = 400;
/// Heap bytes an idle subscribed session may hold on the server: 704 bytes now in a
/// debug build, parked without a task of its own and (on unix) with its socket out of
/// the runtime's reactor (its permissions among them; open sessions share one
/// identity); 740 while its outbox state kept its kill reason and droppable frames in
/// two boxes and its queue's receiver two ways of waiting, and an exact route's slot
/// kept the subscriber's id beside its outbox (48 bytes rather than 32); 747 while
/// sessions kept a watch receiver for reloads; 831 while the directory's tables held a copy of its id, name, connection
/// time and permissions (a 64-byte slot) where they now hold its outbox, its record
/// kept its name and connection time beside its outbox's, and the directory's copy of
/// its name made the name's buffer shared (an allocation of its own); 846 while its parked record was one glibc step larger (the client id
/// kept beside its outbox's connection id, the transport's byte outside the session);
/// 862 while its outbox state was one glibc step larger (its kill reason
/// and its droppable frames under two locks, its reservation's lock in a padded
/// struct); 888 while its parked writer kept the empty place of its socket's tokio
/// half and an exact route's key was a `String`; 1 210 while it kept the hooks' view of it (copies of its name
/// and peer) without hooks to show it to, its outbox state held its own copies of the
/// server-wide settings, its parked writer the runtime's handle and its connection id,
/// a parked session had a waker of its own besides its outbox's, a subscription was a
/// vector of one and a connection from an exempt address kept an empty slot; 1 249 while its
/// parked writer kept a whole queue receiver; 1 489 while the socket stayed registered
/// with the reactor; 1 681 while the directory kept a copy of the name by name, the queue and the outbox
/// state were two allocations, a route's one subscriber was a vector of one and the
/// parked sessions' deadlines were `Instant`s and the queue had a `Notify` of its own;
/// 1 736 while its outbox state held a kill reason, a reply limit and a queue of
/// droppable frames inline;
/// 2.2 KiB while each kept a task waiting on its socket; 2.4 KiB while its kill switch
/// was a child cancellation token and its task held a hash map for uploads; about
/// 14 KiB when its read buffer, queue slots, writer task and the state of every request
/// handler stayed allocated while idle (docs/BENCHMARKS.md, idle connections).
const BOUND_PER_SESSION: isize = 720;
const WAIT: Duration = Duration::from_secs(5);

/// Opens a session named after `index` subscribed to a channel of its own: the preface,
/// SESSION_INIT and SUBSCRIBE in one write, then reads until the subscription is acked.
fn open_idle(addr: SocketAddr, index: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut codec = FrameCodec::new(Limits::default());
    let mut out = BytesMut::new();
    out.extend_from_slice(&Preface::encode(PROTOCOL_VERSION));
    let init = SessionInit {
        name: format!("idle-{index}").into(),
        ..SessionInit::default()
    };
    codec
        .encode_packet(1, Flags::empty(), &Packet::SessionInit(init), &mut out)
        .expect("encode");
    let subscribe = Subscribe {
        pattern: format!("idle.{index}").into(),
        replay: Default::default(),
    };
    codec
        .encode_packet(2, Flags::empty(), &Packet::Subscribe(subscribe), &mut out)
        .expect("encode");
    stream.write_all(&out).expect("write");

    let mut preface = [0u8; PREFACE_LEN];
    stream.read_exact(&mut preface).expect("server preface");
    let mut buf = BytesMut::new();
    loop {
        while let Some(frame) = codec.decode(&mut buf).expect("valid frame") {
            if frame.request_id == 2 {
                match Packet::from_frame(&frame).expect("valid packet") {
                    Packet::SubscribeAck(_) => return stream,
                    other => panic!("expected SUBSCRIBE_ACK, got {other:?}"),
                }
            }
        }
        let mut chunk = [0u8; 1024];
        let read = stream.read(&mut chunk).expect("the server answers");
        assert!(read > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Live heap bytes once the server has gone quiet: the same figure for a while (the
/// writers release their buffers just after sending the acks that the clients saw).
fn settled_live_bytes() -> isize {
    let deadline = Instant::now() + WAIT;
    let mut last = LIVE_BYTES.load(Ordering::Relaxed);
    let mut steady = 0;
    while steady < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = LIVE_BYTES.load(Ordering::Relaxed);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    last
}

fn connections(server: &ServerHandle) -> u64 {
    server
        .stats()
        .into_iter()
        .find(|(name, _)| name == "connections_current")
        .map_or(0, |(_, value)| value)
}

#[test]
fn an_idle_subscribed_session_holds_little_server_memory() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime
        .block_on(Server::builder().listen_tcp("127.0.0.1:0").start())
        .expect("server starts");
    let addr = server.tcp_addr().expect("tcp address");

    // What the server allocates once, for its first sessions, is not what each costs.
    let warm_up: Vec<TcpStream> = (0..16).map(|index| open_idle(addr, index)).collect();
    drop(warm_up);
    let deadline = Instant::now() + WAIT;
    while connections(&server) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(connections(&server), 0, "the warm-up sessions closed");

    let mut sessions = Vec::with_capacity(SESSIONS);
    let before = settled_live_bytes();
    for index in 0..SESSIONS {
        sessions.push(open_idle(addr, 1000 + index));
    }
    let open = settled_live_bytes();
    assert_eq!(connections(&server), SESSIONS as u64);
    let per_session = (open - before) / SESSIONS as isize;
    eprintln!("{per_session} heap bytes per idle subscribed session");
    assert!(
        per_session <= BOUND_PER_SESSION,
        "an idle subscribed session holds {per_session} bytes of server heap (bound {BOUND_PER_SESSION})"
    );

    drop(sessions);
    runtime.block_on(server.shutdown());
}
