//! The web listener's transport: accepting TCP connections, admitting each through the
//! server's per-address limits (connections open at once, new connections per second),
//! and, with TLS configured, running each TLS handshake on a task of its own so that a
//! slow handshake never holds up the next accept.
//!
//! An admitted connection carries its place in the limits for as long as it is open,
//! WebSocket upgrades included (an upgraded socket keeps the connection's stream). A
//! refused connection gets a plain HTTP `429` saying why, then is closed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use switchboard_server::{ConnectionSlot, HubHandle, ReloadableTls};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, error};

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at once; past it, accepting waits for one to finish.
const MAX_HANDSHAKES: usize = 1024;

/// Refusals being told at once; past it, refused connections are just closed.
const MAX_REFUSALS: usize = 64;

/// The web listener: TCP, optionally TLS, with the server's admission.
pub(crate) struct WebListener {
    socket: TcpListener,
    hub: HubHandle,
    tls: Option<ReloadableTls>,
    /// TLS handshakes running, each on its own task; dropped (and so ended) with the
    /// listener.
    handshakes: JoinSet<Option<(WebStream, SocketAddr)>>,
    /// Refused connections being told why; ended with the listener.
    refusals: JoinSet<()>,
}

impl WebListener {
    pub(crate) fn new(socket: TcpListener, hub: HubHandle, tls: Option<ReloadableTls>) -> Self {
        WebListener {
            socket,
            hub,
            tls,
            handshakes: JoinSet::new(),
            refusals: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for WebListener {
    type Io = WebStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (WebStream, SocketAddr) {
        let Some(tls) = self.tls.clone() else {
            let (stream, addr, slot) =
                accept_admitted(&self.socket, &self.hub, &mut self.refusals, false).await;
            return (WebStream::plain(stream, slot), addr);
        };
        loop {
            tokio::select! {
                accepted = accept_admitted(&self.socket, &self.hub, &mut self.refusals, true),
                    if self.handshakes.len() < MAX_HANDSHAKES =>
                {
                    let (stream, addr, slot) = accepted;
                    let acceptor = TlsAcceptor::from(tls.current());
                    self.handshakes.spawn(async move {
                        let handshake = tokio::time::timeout(TLS_HANDSHAKE_LIMIT, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => Some((WebStream::tls(stream, slot), addr)),
                            Ok(Err(error)) => {
                                debug!(target: switchboard_server::log::CONNECTION, peer = %addr, %error, "HTTP TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                debug!(target: switchboard_server::log::CONNECTION, peer = %addr, "no HTTP TLS handshake within {TLS_HANDSHAKE_LIMIT:?}");
                                None
                            }
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(ready)) = done {
                        return ready;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Accepts the next TCP connection the address limits let in; tells the others why not.
async fn accept_admitted(
    socket: &TcpListener,
    hub: &HubHandle,
    refusals: &mut JoinSet<()>,
    tls: bool,
) -> (TcpStream, SocketAddr, ConnectionSlot) {
    loop {
        let (stream, addr) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or similar: wait a little instead of spinning.
                error!(target: switchboard_server::log::ERROR, %error, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match hub.admit(addr) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                return (stream, addr, slot);
            }
            Err(refused) => {
                while refusals.try_join_next().is_some() {}
                if refusals.len() < MAX_REFUSALS {
                    refusals.spawn(refuse(stream, tls, refused.message));
                }
            }
        }
    }
}

/// Tells a connection its address may not open now why, as HTTP, and closes it. Over
/// TLS nothing can be said before a handshake, so the connection is just closed.
async fn refuse(mut stream: TcpStream, tls: bool, message: String) {
    if tls {
        return;
    }
    let body = format!("{message}\n");
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// An accepted connection, plain or TLS, holding its place in its address's limits.
pub(crate) struct WebStream {
    inner: Inner,
    _slot: ConnectionSlot,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl WebStream {
    fn plain(stream: TcpStream, slot: ConnectionSlot) -> WebStream {
        WebStream {
            inner: Inner::Plain(stream),
            _slot: slot,
        }
    }

    fn tls(stream: TlsStream<TcpStream>, slot: ConnectionSlot) -> WebStream {
        WebStream {
            inner: Inner::Tls(Box::new(stream)),
            _slot: slot,
        }
    }
}

impl AsyncRead for WebStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WebStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(stream) => stream.is_write_vectored(),
            Inner::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
