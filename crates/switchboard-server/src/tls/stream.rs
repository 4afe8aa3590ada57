//! A server-side TLS stream as a [`Transport`]: one stream shared by a read half and a
//! write half under a lock held only for the length of one poll.
//!
//! Waiting without a buffer needs care here. Plain sockets are ready to read when the
//! kernel holds bytes, but a TLS stream can hold decrypted bytes of its own: one TLS
//! record may carry several frames, and rustls keeps what a read did not take. The
//! socket then shows nothing to read while a read would return at once, and a wait on
//! the socket alone would sleep on data already here. So [`TlsReadHalf`] first asks
//! rustls whether it has plaintext (or the peer's close) waiting, processing any records
//! already received, and waits on the socket only when it has none.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::connection::{Readable, Transport};

type Shared = Arc<Mutex<TlsStream<TcpStream>>>;

/// An accepted connection whose TLS handshake is complete.
pub(crate) struct TlsTransport(pub(crate) TlsStream<TcpStream>);

impl Transport for TlsTransport {
    type Read = TlsReadHalf;
    type Write = TlsWriteHalf;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        let shared = Arc::new(Mutex::new(self.0));
        (TlsReadHalf(shared.clone()), TlsWriteHalf(shared))
    }
}

/// The read half of a TLS connection.
pub(crate) struct TlsReadHalf(Shared);

/// The write half of a TLS connection.
pub(crate) struct TlsWriteHalf(Shared);

impl AsyncRead for TlsReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_read(cx, buf)
    }
}

impl Readable for TlsReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        let (socket, connection) = stream.get_mut();
        match connection.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                return Poll::Ready(Ok(()));
            }
            Ok(_) => {}
            // A read reports the fault (and sends the alert).
            Err(_) => return Poll::Ready(Ok(())),
        }
        socket.poll_read_ready(cx)
    }
}

impl AsyncWrite for TlsWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut stream = self.0.lock();
        Pin::new(&mut *stream).poll_shutdown(cx)
    }
}
