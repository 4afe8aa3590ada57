//! Connections handed over by a front end running in the same process: the web listener
//! turns a WebSocket, or an HTTP request's session, into a byte stream and attaches it to
//! the hub, which serves it exactly as it serves a TCP connection (preface, handshake,
//! authentication, permissions, limits). [`HubHandle`] is what such a front end holds.
//!
//! Any `AsyncRead + AsyncWrite` stream can be attached. The connection's reader waits
//! for bytes without holding a buffer (see `connection::transport`), which a plain
//! stream cannot do; [`ReadyRead`] gives it that by reading a little ahead into a small
//! buffer that exists only while it holds bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio_util::task::TaskTracker;

use crate::connection::{self, Peer, Readable, Transport};
use crate::hub::Hub;
use crate::security::addresses::AddressSlot;
use crate::tls::{TlsError, TlsListener, TlsListenerConfig};

/// Where an attached connection came from, as its session and the log describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedPeer {
    /// A WebSocket opened by the client at this address.
    WebSocket(SocketAddr),
    /// A session the HTTP API opened for requests from this address.
    Http(SocketAddr),
}

impl AttachedPeer {
    /// The client's address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            AttachedPeer::WebSocket(addr) | AttachedPeer::Http(addr) => *addr,
        }
    }

    /// The transport's name, as metrics label it ("websocket", "http").
    pub fn transport(&self) -> &'static str {
        match self {
            AttachedPeer::WebSocket(_) => "websocket",
            AttachedPeer::Http(_) => "http",
        }
    }
}

impl fmt::Display for AttachedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachedPeer::WebSocket(addr) => write!(f, "ws {addr}"),
            AttachedPeer::Http(addr) => write!(f, "http {addr}"),
        }
    }
}

/// A cheap, cloneable handle onto a running server for front ends embedded in the same
/// process (the web listener): hand it connections, read its counters, learn when it
/// stops. Get one from [`ServerHandle::hub`](crate::ServerHandle::hub).
#[derive(Clone)]
pub struct HubHandle {
    hub: Arc<Hub>,
    tracker: TaskTracker,
}

impl fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHandle").finish_non_exhaustive()
    }
}

impl HubHandle {
    pub(crate) fn new(hub: Arc<Hub>, tracker: TaskTracker) -> HubHandle {
        HubHandle { hub, tracker }
    }

    /// Serves `stream` as a connection from `peer`, in a task the server owns (its
    /// shutdown waits for it). The peer speaks the protocol from its preface on. Refused
    /// (the stream dropped, and false returned) once the server is shutting down.
    pub fn attach<S>(&self, stream: S, peer: AttachedPeer) -> bool
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if self.hub.is_shutting_down() {
            return false;
        }
        self.tracker.spawn(connection::serve(
            self.hub.clone(),
            AttachedStream(stream),
            Peer::Attached(peer),
            None,
        ));
        true
    }

    /// Counts a connection from `addr` against the per-address limits (connections open
    /// at once, new connections per second), as the server's own listeners do before a
    /// handshake: the connection holds its place until the [`ConnectionSlot`] is dropped.
    /// A refusal is counted and logged like theirs, and says why.
    pub fn admit(&self, addr: SocketAddr) -> Result<ConnectionSlot, AdmissionRefused> {
        let limits = self.hub.policy().limits.per_address;
        match self
            .hub
            .addresses()
            .admit(addr.ip(), &limits, self.hub.now_ns())
        {
            Ok(slot) => Ok(ConnectionSlot { _held: slot }),
            Err(refusal) => {
                let (code, message) =
                    crate::server::count_address_refusal(&self.hub, addr, refusal);
                Err(AdmissionRefused { code, message })
            }
        }
    }

    /// Reads a TLS certificate and key for a listener outside the server (the web
    /// listener), with the server's rules, and reloads them with the server's own TLS
    /// listeners from now on (SIGHUP, RELOAD). An error names the file at fault.
    pub fn load_tls(&self, settings: TlsListenerConfig) -> Result<ReloadableTls, TlsError> {
        let listener = Arc::new(TlsListener::load(settings)?);
        self.hub.tls_reloader().add(listener.clone());
        Ok(ReloadableTls(listener))
    }

    /// The size limits of the frames the server accepts: what a transport that carries
    /// frames in messages sizes its messages by.
    pub fn frame_limits(&self) -> switchboard_proto::Limits {
        self.hub.codec().limits()
    }

    /// Resolves when shutdown has begun.
    pub async fn shutting_down(&self) {
        self.hub.shutting_down().await;
    }

    /// Resolves once the server has drained: shutdown began and every session (and
    /// every other task the server owns) has ended. A front end that should answer
    /// while the server drains, such as a readiness check, serves until then.
    pub async fn drained(&self) {
        self.hub.shutting_down().await;
        self.tracker.wait().await;
    }

    /// Whether shutdown has begun (the server drains its sessions and stops).
    pub fn is_shutting_down(&self) -> bool {
        self.hub.is_shutting_down()
    }

    /// Named counters, as STATS reports them.
    pub fn stats(&self) -> Vec<(String, u64)> {
        crate::server::stats_of(&self.hub)
    }

    /// Whether the server takes work: not draining, its store taking writes, every
    /// listener accepting.
    pub fn readiness(&self) -> crate::metrics::Readiness {
        crate::server::readiness_of(&self.hub)
    }

    /// Everything a metrics scrape reports. Reads every counter once, and locks each
    /// history in turn for its size (never two at once).
    pub fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        crate::server::metrics_of(&self.hub)
    }
}

/// A connection's place in its address's limits, held until it is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    _held: AddressSlot,
}

/// Why [`HubHandle::admit`] refused a connection.
#[derive(Debug, Clone)]
pub struct AdmissionRefused {
    /// The protocol's code for it (`LIMIT_REACHED`, `RATE_LIMITED`).
    pub code: switchboard_proto::ErrorCode,
    /// What to tell the client.
    pub message: String,
}

impl fmt::Display for AdmissionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AdmissionRefused {}

/// A TLS configuration the server keeps current (see [`HubHandle::load_tls`]).
#[derive(Clone)]
pub struct ReloadableTls(Arc<TlsListener>);

impl ReloadableTls {
    /// The configuration in force: a handshake starting now uses this one.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.current()
    }
}

impl fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("addr", &self.0.settings().addr)
            .finish()
    }
}

/// An attached stream as a [`Transport`].
struct AttachedStream<S>(S);

impl<S> Transport for AttachedStream<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    type Read = ReadyRead<ReadHalf<S>>;
    type Write = WriteHalf<S>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        let (read, write) = tokio::io::split(self.0);
        (ReadyRead::new(read), write)
    }
}

impl<S: AsyncWrite + Send + 'static> connection::WriteHalf for WriteHalf<S> {
    connection::parked_as_itself!();
}

/// Bytes read ahead to learn that a stream is ready: at most this many at a time.
const READ_AHEAD: usize = 4096;

/// A read half that can say it is ready to read: waiting reads ahead into a buffer that
/// the next reads drain first. The buffer is empty, and holds no memory, while idle.
pub(crate) struct ReadyRead<R> {
    state: Mutex<ReadAhead<R>>,
}

struct ReadAhead<R> {
    inner: R,
    ahead: BytesMut,
    ended: bool,
}

impl<R: AsyncRead + Unpin> ReadyRead<R> {
    pub(crate) fn new(inner: R) -> ReadyRead<R> {
        ReadyRead {
            state: Mutex::new(ReadAhead {
                inner,
                ahead: BytesMut::new(),
                ended: false,
            }),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ReadyRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut state = self.state.lock();
        if !state.ahead.is_empty() {
            let take = state.ahead.len().min(buf.remaining());
            buf.put_slice(&state.ahead[..take]);
            state.ahead.advance(take);
            if state.ahead.is_empty() {
                // Gives the memory back: an idle connection holds no buffer.
                state.ahead = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        if state.ended {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut state.inner).poll_read(cx, buf)
    }
}

impl<R: AsyncRead + Send + Unpin + 'static> Readable for ReadyRead<R> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state.lock();
        if !state.ahead.is_empty() || state.ended {
            return Poll::Ready(Ok(()));
        }
        let mut space = [0u8; READ_AHEAD];
        let mut read = ReadBuf::new(&mut space);
        match Pin::new(&mut state.inner).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                if read.filled().is_empty() {
                    state.ended = true;
                } else {
                    state.ahead.extend_from_slice(read.filled());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::ReadyRead;
    use crate::connection::Readable;

    #[tokio::test]
    async fn waiting_reads_ahead_and_the_next_read_gets_those_bytes_first() {
        let (mut near, far) = tokio::io::duplex(64);
        let mut reader = ReadyRead::new(far);
        near.write_all(b"hello").await.unwrap();
        poll_fn(|cx| reader.poll_read_ready(cx)).await.unwrap();
        near.write_all(b" world").await.unwrap();
        let mut got = vec![0u8; 11];
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        assert!(reader.state.lock().ahead.capacity() == 0);
    }

    #[tokio::test]
    async fn the_end_of_the_stream_is_ready_and_reads_as_the_end() {
        let (near, far) = tokio::io::duplex(64);
        let mut reader = ReadyRead::new(far);
        drop(near);
        poll_fn(|cx| reader.poll_read_ready(cx)).await.unwrap();
        let mut got = Vec::new();
        assert_eq!(reader.read_to_end(&mut got).await.unwrap(), 0);
    }
}
