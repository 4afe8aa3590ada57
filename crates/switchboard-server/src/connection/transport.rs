//! The byte streams a connection is served on (TCP, or a Unix socket), split into a read
//! half that can wait for bytes without a buffer and a write half for the writer task.
//! On unix, a plain socket's halves can leave the runtime's reactor while the connection
//! is parked (`detached`).

use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a connection is served on (TCP, or a Unix socket), split into halves
/// whose read half can wait for bytes without a buffer to read them into.
pub(crate) trait Transport: Send + 'static {
    type Read: Readable;
    type Write: WriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write);
}

/// A read half that can be waited on until it has something to read.
pub(crate) trait Readable: AsyncRead + Send + Sync + Unpin + 'static {
    /// Ready once a read would not block (bytes, the end of the stream, or an error).
    /// A poll function rather than the streams' `readable()`, whose future is several
    /// times larger and would be held by every idle connection.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;

    /// The connection parks: a half that can lets go of what waiting for readiness
    /// needs (its first poll afterwards takes it back), and [`Readable::watched`] then
    /// gives the descriptor to watch instead.
    fn park(&mut self) {}

    /// The descriptor a parked half's readiness is watched on, if it let go of its own
    /// wait; otherwise readiness is waited on with [`Readable::poll_read_ready`].
    fn watched(&self) -> Option<Descriptor> {
        None
    }
}

/// A descriptor a parked connection's readiness is watched on.
#[cfg(unix)]
pub(crate) type Descriptor = std::os::fd::RawFd;
/// None off unix: every parked connection is waited on through its read half.
#[cfg(not(unix))]
pub(crate) type Descriptor = std::convert::Infallible;

/// A write half for the writer task.
pub(crate) trait WriteHalf: AsyncWrite + Send + Unpin + Sized + 'static {
    /// The writer task ends while its queue is empty: a half that can lets go of what
    /// waiting needs (its first poll afterwards takes it back).
    fn park(&mut self) {}

    /// What the half keeps while no writer task runs (every idle connection keeps one):
    /// itself, or less.
    type Parked: Send + 'static;

    /// The half as its writer task ends, parked (see [`WriteHalf::park`]).
    fn into_parked(self) -> Self::Parked;

    /// The half again, for the next writer task.
    fn from_parked(parked: Self::Parked) -> Self;
}

/// The [`WriteHalf`] items of a half that keeps itself while parked.
macro_rules! parked_as_itself {
    () => {
        type Parked = Self;

        fn into_parked(mut self) -> Self {
            self.park();
            self
        }

        fn from_parked(parked: Self) -> Self {
            parked
        }
    };
}
pub(crate) use parked_as_itself;

impl WriteHalf for tokio::io::Sink {
    parked_as_itself!();
}

#[cfg(unix)]
impl Transport for tokio::net::TcpStream {
    type Read = super::detached::DetachedRead<tokio::net::TcpStream>;
    type Write = super::detached::DetachedWrite<tokio::net::TcpStream>;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        super::detached::split(self)
    }
}

#[cfg(unix)]
impl Transport for tokio::net::UnixStream {
    type Read = super::detached::DetachedRead<tokio::net::UnixStream>;
    type Write = super::detached::DetachedWrite<tokio::net::UnixStream>;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        super::detached::split(self)
    }
}

#[cfg(not(unix))]
impl Transport for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

#[cfg(not(unix))]
impl Readable for tokio::net::tcp::OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }
}

#[cfg(not(unix))]
impl WriteHalf for tokio::net::tcp::OwnedWriteHalf {
    parked_as_itself!();
}
