//! One connection from accept to close. [`serve`] runs its task: the handshake and the
//! opening of the session, the request loop with its heartbeat deadline, and the cleanup
//! that removes every trace of the session from the hub.
//!
//! * `transport`: the byte streams a connection is served on;
//! * `detached`: a plain socket whose halves leave the reactor while parked (unix);
//! * `frame_reader`: frames read into a buffer released while the connection is idle;
//! * `frame_budget`: the server-wide budget for large frames still arriving;
//! * `handshake`: prefaces and SESSION_INIT, and the refusals written before a session
//!   exists;
//! * `session`: a session's registration (limits, hook, writer, SESSION_ACK, directory)
//!   and its cleanup;
//! * `request_loop`: serving requests until the session ends, or until it has been idle
//!   for a moment;
//! * `parking`: idle sessions kept without a task of their own, one shared task waiting
//!   for all of them.
//!
//! What a request does is `cmd`'s business; this module only hands it the frames.

#[cfg(unix)]
mod detached;
mod frame_budget;
mod frame_reader;
mod handshake;
mod parking;
mod request_loop;
mod session;
mod transport;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

pub(crate) use self::frame_budget::FrameBudget;
use self::frame_reader::FrameReader;
use self::parking::{Clock, Nanos, ParkedSession};
pub(crate) use self::parking::{Parking, run as run_parking};
use self::request_loop::Outcome;
pub(crate) use self::transport::{Readable, Transport, WriteHalf, parked_as_itself};
use crate::cmd::Session;
use crate::hub::Hub;
use crate::hub::stats::Counters;
use crate::metrics::Transport as TransportKind;
use crate::security::addresses::AddressSlot;
use crate::security::authenticate::PeerFacts;

/// Where a connection came from.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Tcp(std::net::SocketAddr),
    /// The Unix socket, and the peer's uid when the platform tells it.
    #[cfg_attr(not(unix), allow(dead_code))]
    Unix {
        uid: Option<u32>,
    },
    /// A TLS listener, with the names of the client's verified certificate (subject CN,
    /// then DNS and email alternative names), empty when it presented none.
    Tls {
        addr: std::net::SocketAddr,
        certificate_names: Vec<String>,
    },
    /// A connection a front end in the same process handed over (see
    /// [`crate::HubHandle::attach`]): a WebSocket, or the HTTP API's own sessions.
    Attached(crate::attach::AttachedPeer),
}

impl Peer {
    fn describe(&self) -> String {
        match self {
            Peer::Tcp(addr) => format!("tcp {addr}"),
            Peer::Unix { .. } => "unix".to_owned(),
            Peer::Tls { addr, .. } => format!("tls {addr}"),
            Peer::Attached(peer) => peer.to_string(),
        }
    }

    /// The transport, as metrics label connections.
    fn transport(&self) -> TransportKind {
        match self {
            Peer::Tcp(_) => TransportKind::Tcp,
            Peer::Unix { .. } => TransportKind::Unix,
            Peer::Tls { .. } => TransportKind::Tls,
            Peer::Attached(crate::attach::AttachedPeer::WebSocket(_)) => TransportKind::WebSocket,
            Peer::Attached(crate::attach::AttachedPeer::Http(_)) => TransportKind::Http,
        }
    }

    /// The names of the client's verified certificate; empty without TLS or without one.
    pub(crate) fn certificate_names(&self) -> &[String] {
        match self {
            Peer::Tls {
                certificate_names, ..
            } => certificate_names,
            _ => &[],
        }
    }

    /// What the connection says about who is at the other end, for authentication.
    fn facts(&self) -> PeerFacts {
        match self {
            Peer::Tcp(addr) => PeerFacts {
                address: Some(addr.ip()),
                ..PeerFacts::default()
            },
            Peer::Tls {
                addr,
                certificate_names,
            } => PeerFacts {
                address: Some(addr.ip()),
                certificate_names: certificate_names.clone(),
                ..PeerFacts::default()
            },
            Peer::Unix { uid } => PeerFacts {
                unix: true,
                unix_uid: *uid,
                ..PeerFacts::default()
            },
            Peer::Attached(peer) => PeerFacts {
                address: Some(peer.addr().ip()),
                ..PeerFacts::default()
            },
        }
    }
}

/// Serves one accepted connection until it closes. Not an async fn: that would be one
/// more layer of state around `run` for every connection's life.
///
/// `slot` counts the connection against its address's limit until it closes.
pub(crate) fn serve<S: Transport>(
    hub: Arc<Hub>,
    stream: S,
    peer: Peer,
    slot: Option<AddressSlot>,
) -> impl Future<Output = ()> + Send {
    let span = info_span!("conn", peer = %peer.describe());
    // The peer is boxed: an async fn keeps its arguments for its whole life, and the
    // box is freed once the handshake has taken what it needs.
    // The slot is boxed too: a pointer in the task's future, which lives as long as the
    // connection, costs an idle session less than the slot itself (the task's size is
    // rounded up to whole cache lines). A slot that counts nothing (an exempt address,
    // loopback by default) is not kept at all: dropping it does nothing.
    let slot = slot.filter(AddressSlot::is_counted).map(Box::new);
    run(hub, stream, Box::new(peer), slot).instrument(span)
}

/// Tells a connection refused before its handshake why (the server's preface, then an
/// ERROR), and closes it. What the peer already sent is read and dropped for a moment
/// first: closing a socket with unread bytes resets it, and the reset could reach the
/// peer before the ERROR does.
pub(crate) async fn refuse(
    codec: &switchboard_proto::FrameCodec,
    mut stream: tokio::net::TcpStream,
    code: switchboard_proto::ErrorCode,
    message: String,
) {
    use tokio::io::AsyncReadExt;
    let refused = handshake::Refused::Error {
        request_id: 0,
        code,
        message,
        preface_first: true,
    };
    let linger = async {
        refused.tell(codec, &mut stream).await;
        let mut sink = [0u8; 512];
        while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
}

/// How long a refused connection is drained before it is closed.
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// An open session and what serving it needs.
struct Opened<R> {
    session: Session,
    reader: FrameReader<R>,
}

/// Counts a session of the transport at index `transport` opened, or closed.
fn count_session(hub: &Hub, transport: u8, opened: bool) {
    let counters = hub.counters();
    let transport = usize::from(transport);
    if opened {
        Counters::add(&counters.connections_opened_by[transport], 1);
        Counters::add(&counters.connections_open_by[transport], 1);
    } else {
        counters.connections_open_by[transport].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The connection task. Its future lives as long as the connection is busy, so what it
/// holds while waiting is what a connection costs until it parks: the handshake, serving
/// requests and the cleanup are each boxed, and their state exists only while they run.
async fn run<S: Transport>(
    hub: Arc<Hub>,
    stream: S,
    peer: Box<Peer>,
    slot: Option<Box<AddressSlot>>,
) {
    // The peer leaves its box in a block of its own: a box moved out of is freed only
    // when its binding goes out of scope, which for the argument is the connection's end.
    let peer = {
        let boxed = peer;
        *boxed
    };
    // One byte kept for the connection's life: which transport's gauge it is in.
    let transport = peer.transport().index() as u8;
    let Some(Opened {
        mut session,
        reader,
    }) = Box::pin(session::open(&hub, stream, peer)).await
    else {
        return;
    };
    session.transport = transport;
    count_session(&hub, transport, true);
    let connection = Connection {
        session,
        reader,
        slot,
    };
    serve_session(hub, connection, None).await;
}

/// What a connection holds once its session is open, in its task or parked.
struct Connection<R> {
    session: Session,
    reader: FrameReader<R>,
    /// Counts the connection against its address's limit until it closes.
    slot: Option<Box<AddressSlot>>,
}

/// Serves an open session until it ends, or until it parks (then its task ends and the
/// shared task of parked sessions starts another when it needs one). `heartbeat` is the
/// deadline carried over from before the session parked.
async fn serve_session<R: Readable>(
    hub: Arc<Hub>,
    mut connection: Connection<R>,
    mut heartbeat: Option<Instant>,
) {
    let (code, reason) = loop {
        let outcome = request_loop::request_loop(
            &hub,
            &mut connection.session,
            &mut connection.reader,
            heartbeat.take(),
        )
        .await;
        let deadline = match outcome {
            Outcome::End(code, reason) => break (code, reason),
            Outcome::Park { heartbeat } => heartbeat,
        };
        let clock = hub.parking().clock();
        match hub
            .parking()
            .park(Box::new(Parked::new(connection, deadline, clock)))
        {
            Ok(()) => return,
            // No task takes parked sessions: the server is stopping, which this session
            // sees next.
            Err(back) => {
                let (back, deadline, _) = (*back).into_connection(&hub);
                connection = back;
                heartbeat = Some(deadline);
            }
        }
    };
    let Connection {
        session,
        reader,
        slot,
    } = connection;
    drop(reader);
    let transport = session.transport;
    Box::pin(session::close(&hub, session, code, reason)).await;
    count_session(&hub, transport, false);
    drop(slot);
}

/// A session parked without a task: its connection (the read half without a reader,
/// which has no buffer between frames), its heartbeat deadline, and the span its task ran
/// in.
struct Parked<R> {
    session: Session,
    read: R,
    slot: Option<Box<AddressSlot>>,
    /// On the parking table's clock: 8 bytes where an `Instant` is 16.
    heartbeat: Nanos,
    /// Boxed, and only when enabled: connection spans are off at the default log level,
    /// and every parked session would keep one otherwise.
    span: Option<Box<tracing::Span>>,
}

impl<R: Readable> Parked<R> {
    fn new(connection: Connection<R>, heartbeat: Instant, clock: Clock) -> Self {
        let Connection {
            session,
            reader,
            slot,
        } = connection;
        let mut read = reader.into_read_half();
        read.park();
        Parked {
            session,
            read,
            slot,
            heartbeat: clock.nanos(heartbeat),
            span: enabled_span(),
        }
    }

    /// The connection again, with its heartbeat deadline and span.
    fn into_connection(self, hub: &Hub) -> (Connection<R>, Instant, Option<Box<tracing::Span>>) {
        let Parked {
            session,
            read,
            slot,
            heartbeat,
            span,
        } = self;
        let connection = Connection {
            session,
            reader: FrameReader::new(read, hub.frame_budget().clone()),
            slot,
        };
        (connection, hub.parking().clock().instant(heartbeat), span)
    }
}

/// The span a task runs in, if it is enabled.
fn enabled_span() -> Option<Box<tracing::Span>> {
    let span = tracing::Span::current();
    (!span.is_disabled()).then(|| Box::new(span))
}

impl<R: Readable> ParkedSession for Parked<R> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.read.poll_read_ready(cx)
    }

    fn watched(&self) -> Option<transport::Descriptor> {
        self.read.watched()
    }

    fn outbox(&self) -> &crate::outbox::Outbox {
        self.session.outbox()
    }

    fn policy_changed(&self, generation: u64) -> bool {
        self.session.policy_changed(generation)
    }

    fn deadline(&self, clock: Clock) -> Nanos {
        let expiry = self.session.identity.expires_at_us;
        expiry.map_or(self.heartbeat, |expiry| {
            self.heartbeat
                .min(clock.nanos(request_loop::instant_of(expiry)))
        })
    }

    fn resume(self: Box<Self>, hub: &Arc<Hub>, tracker: &TaskTracker) {
        let (connection, heartbeat, span) = (*self).into_connection(hub);
        let span = span.map_or_else(tracing::Span::none, |span| *span);
        tracker.spawn(serve_session(hub.clone(), connection, Some(heartbeat)).instrument(span));
    }
}
