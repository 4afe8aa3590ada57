//! The byte streams a connection is served on (TCP, or a Unix socket), split into a read
//! half that can wait for bytes without a buffer and a write half for the writer task.

use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a connection is served on (TCP, or a Unix socket), split into halves
/// whose read half can wait for bytes without a buffer to read them into.
pub(crate) trait Transport: Send + 'static {
    type Read: Readable;
    type Write: AsyncWrite + Send + Unpin + 'static;
    fn into_halves(self) -> (Self::Read, Self::Write);
}

/// A read half that can be waited on until it has something to read.
pub(crate) trait Readable: AsyncRead + Send + Sync + Unpin + 'static {
    /// Ready once a read would not block (bytes, the end of the stream, or an error).
    /// A poll function rather than the streams' `readable()`, whose future is several
    /// times larger and would be held by every idle connection.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
}

impl Transport for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Readable for tokio::net::tcp::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
}

#[cfg(unix)]
impl Transport for tokio::net::UnixStream {
    type Read = tokio::net::unix::OwnedReadHalf;
    type Write = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

#[cfg(unix)]
impl Readable for tokio::net::unix::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
}
