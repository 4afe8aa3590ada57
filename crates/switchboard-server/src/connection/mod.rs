//! One connection from accept to close. [`serve`] runs its task: the handshake and the
//! opening of the session, the request loop with its heartbeat deadline, and the cleanup
//! that removes every trace of the session from the hub.
//!
//! * `transport`: the byte streams a connection is served on;
//! * `frame_reader`: frames read into a buffer released while the connection is idle;
//! * `frame_budget`: the server-wide budget for large frames still arriving;
//! * `handshake`: prefaces and SESSION_INIT, and the refusals written before a session
//!   exists;
//! * `session`: a session's registration (limits, hook, writer, SESSION_ACK, directory)
//!   and its cleanup;
//! * `request_loop`: serving requests until the session ends.
//!
//! What a request does is `cmd`'s business; this module only hands it the frames.

mod frame_budget;
mod frame_reader;
mod handshake;
mod request_loop;
mod session;
mod transport;

use std::future::Future;
use std::sync::Arc;

use tracing::{Instrument, info_span};

pub(crate) use self::frame_budget::FrameBudget;
use self::frame_reader::FrameReader;
pub(crate) use self::transport::Transport;
use crate::cmd::Session;
use crate::hub::Hub;
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
}

impl Peer {
    fn describe(&self) -> String {
        match self {
            Peer::Tcp(addr) => format!("tcp {addr}"),
            Peer::Unix { .. } => "unix".to_owned(),
        }
    }

    /// What the connection says about who is at the other end, for authentication. A
    /// TLS connection adds the names of its client certificate here.
    fn facts(&self) -> PeerFacts {
        match self {
            Peer::Tcp(addr) => PeerFacts {
                address: Some(addr.ip()),
                ..PeerFacts::default()
            },
            Peer::Unix { uid } => PeerFacts {
                unix: true,
                unix_uid: *uid,
                ..PeerFacts::default()
            },
        }
    }
}

/// Serves one accepted connection until it closes. Not an async fn: that would be one
/// more layer of state around `run` for every connection's life.
pub(crate) fn serve<S: Transport>(
    hub: Arc<Hub>,
    stream: S,
    peer: Peer,
) -> impl Future<Output = ()> + Send {
    let span = info_span!("conn", peer = %peer.describe());
    // The peer is boxed: an async fn keeps its arguments for its whole life, and the
    // box is freed once the handshake has taken what it needs.
    run(hub, stream, Box::new(peer)).instrument(span)
}

/// An open session and what serving it needs.
struct Opened<R> {
    session: Session,
    reader: FrameReader<R>,
}

/// The connection task. Its future lives as long as the connection, so what it holds
/// while waiting is what an idle connection costs: the handshake, serving requests and
/// the cleanup are each boxed, and their state exists only while they run.
async fn run<S: Transport>(hub: Arc<Hub>, stream: S, peer: Box<Peer>) {
    let Some(Opened {
        mut session,
        mut reader,
    }) = Box::pin(session::open(&hub, stream, *peer)).await
    else {
        return;
    };
    let (code, reason) = request_loop::request_loop(&hub, &mut session, &mut reader).await;
    drop(reader);
    Box::pin(session::close(&hub, session, code, reason)).await;
}
