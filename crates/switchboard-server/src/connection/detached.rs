//! A plain socket (TCP or Unix) whose halves can leave the runtime's reactor while their
//! connection is parked.
//!
//! A socket registered with tokio's reactor costs its registration (256 bytes, cache
//! padded) and the shared half that a split stream's two halves point to, for as long
//! as the socket lives. A parked session needs neither: nothing reads from it and,
//! while its writer is parked too, nothing writes. So each half here can let go of its
//! tokio half ([`DetachedRead::park`], [`DetachedWrite::park`]); when both have, the
//! two are put together again and the socket leaves the reactor as a plain descriptor,
//! which the parking task watches in a poller of its own (see `parking`). The first
//! poll of either half afterwards registers the socket again.
//!
//! The halves meet in a slot under a lock taken only when one of them parks or comes
//! back (never for a read or a write), so that a half coming back never finds its
//! socket halfway between the two states.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::transport::{Readable, WriteHalf};

/// A tokio stream that splits into owned halves, and leaves the reactor as a plain
/// socket when they are put together again.
pub(crate) trait Splittable: Sized + Send + 'static {
    /// The socket outside the reactor.
    type Plain: AsRawFd + Send + 'static;
    type Read: AsyncRead + Send + Sync + Unpin + 'static;
    type Write: AsyncWrite + Send + Sync + Unpin + 'static;

    /// Registers the socket with the reactor (of the runtime the caller runs on).
    fn register(plain: Self::Plain) -> io::Result<Self>;
    /// Deregisters the socket; it is lost (closed) if that fails.
    fn deregister(self) -> io::Result<Self::Plain>;
    fn split(self) -> (Self::Read, Self::Write);
    /// The halves put together again; `None` (both dropped) if they are not one
    /// socket's, which the halves here never are.
    fn reunite(read: Self::Read, write: Self::Write) -> Option<Self>;
    /// Whether the read half has something to read (see [`Readable`]).
    fn poll_read_ready(read: &Self::Read, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// The end of the writing direction, as dropping the registered write half does.
    fn shutdown_write(plain: &Self::Plain);
}

/// The same impl for tokio's TCP and Unix streams, whose methods have the same names.
macro_rules! splittable {
    ($stream:ty, $plain:ty, $halves:ident) => {
        impl Splittable for $stream {
            type Plain = $plain;
            type Read = tokio::net::$halves::OwnedReadHalf;
            type Write = tokio::net::$halves::OwnedWriteHalf;

            fn register(plain: Self::Plain) -> io::Result<Self> {
                <$stream>::from_std(plain)
            }
            fn deregister(self) -> io::Result<Self::Plain> {
                self.into_std()
            }
            fn split(self) -> (Self::Read, Self::Write) {
                self.into_split()
            }
            fn reunite(read: Self::Read, write: Self::Write) -> Option<Self> {
                read.reunite(write).ok()
            }
            fn poll_read_ready(read: &Self::Read, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                read.as_ref().poll_read_ready(cx)
            }
            fn shutdown_write(plain: &Self::Plain) {
                let _ = plain.shutdown(std::net::Shutdown::Write);
            }
        }
    };
}

splittable!(tokio::net::TcpStream, std::net::TcpStream, tcp);
splittable!(tokio::net::UnixStream, std::os::unix::net::UnixStream, unix);

/// What the two halves share: the socket's descriptor and where a parked half leaves
/// its tokio half.
struct Shared<S: Splittable> {
    slot: Mutex<Slot<S>>,
    /// The descriptor, open as long as this lives: the socket is in the slot, or held
    /// by a half, until both halves are gone.
    fd: RawFd,
}

enum Slot<S: Splittable> {
    /// Registered: the tokio halves of the halves that are parked (none, one, or both
    /// for the moment before they leave the reactor).
    Registered {
        read: Option<S::Read>,
        write: Option<S::Write>,
    },
    /// Out of the reactor: both halves are parked.
    Detached(S::Plain),
    /// Lost: leaving the reactor failed, and the socket with it.
    Lost,
}

/// Splits a registered stream into halves that can each leave the reactor.
pub(crate) fn split<S: Splittable + AsRawFd>(stream: S) -> (DetachedRead<S>, DetachedWrite<S>) {
    let fd = stream.as_raw_fd();
    let (read, write) = stream.split();
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot::Registered {
            read: None,
            write: None,
        }),
        fd,
    });
    (
        DetachedRead {
            shared: shared.clone(),
            half: Some(read),
        },
        DetachedWrite {
            half: Some(write),
            end: WriteEnd(shared),
        },
    )
}

impl<S: Splittable> Shared<S> {
    /// Takes the read half out of the slot, registering the socket if it is out of the
    /// reactor.
    fn take_read(&self) -> io::Result<S::Read> {
        let mut slot = self.slot.lock();
        if let Slot::Registered { read, .. } = &mut *slot {
            return read.take().ok_or_else(lost);
        }
        let (read, write) = self.register(&mut slot)?;
        *slot = Slot::Registered {
            read: None,
            write: Some(write),
        };
        Ok(read)
    }

    /// Takes the write half out of the slot, registering the socket if it is out of the
    /// reactor.
    fn take_write(&self) -> io::Result<S::Write> {
        let mut slot = self.slot.lock();
        if let Slot::Registered { write, .. } = &mut *slot {
            return write.take().ok_or_else(lost);
        }
        let (read, write) = self.register(&mut slot)?;
        *slot = Slot::Registered {
            read: Some(read),
            write: None,
        };
        Ok(write)
    }

    fn register(&self, slot: &mut Slot<S>) -> io::Result<(S::Read, S::Write)> {
        let Slot::Detached(plain) = std::mem::replace(slot, Slot::Lost) else {
            return Err(lost());
        };
        Ok(S::register(plain)?.split())
    }

    /// Puts a parked half's tokio half in the slot; the socket leaves the reactor if the
    /// other half is there already.
    fn put(&self, read: Option<S::Read>, write: Option<S::Write>) {
        let mut slot = self.slot.lock();
        let Slot::Registered {
            read: parked_read,
            write: parked_write,
        } = &mut *slot
        else {
            // Never: a half that holds its tokio half finds the socket registered.
            return;
        };
        if read.is_some() {
            *parked_read = read;
        }
        if write.is_some() {
            *parked_write = write;
        }
        if parked_read.is_none() || parked_write.is_none() {
            return;
        }
        let (Some(read), Some(write)) = (parked_read.take(), parked_write.take()) else {
            return;
        };
        *slot = match S::reunite(read, write).map(S::deregister) {
            Some(Ok(plain)) => Slot::Detached(plain),
            Some(Err(_)) | None => Slot::Lost,
        };
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost while its connection was parked",
    )
}

/// The read half of a socket that can leave the reactor.
pub(crate) struct DetachedRead<S: Splittable> {
    shared: Arc<Shared<S>>,
    /// The tokio half, while this half is not parked.
    half: Option<S::Read>,
}

/// The write half of a socket that can leave the reactor.
pub(crate) struct DetachedWrite<S: Splittable> {
    /// The tokio half, while this half is not parked. Dropped before `end`.
    half: Option<S::Write>,
    end: WriteEnd<S>,
}

/// What a write half holds besides its tokio half, and all a parked one keeps (see
/// [`WriteHalf::into_parked`]): the shared slot, and the end of the writing direction
/// when it goes.
pub(crate) struct WriteEnd<S: Splittable>(Arc<Shared<S>>);

impl<S: Splittable> DetachedRead<S> {
    fn half(&mut self) -> io::Result<&mut S::Read> {
        if self.half.is_none() {
            self.half = Some(self.shared.take_read()?);
        }
        self.half.as_mut().ok_or_else(lost)
    }

    /// Whether the socket is out of the reactor now (both halves parked).
    #[cfg(test)]
    fn is_detached(&self) -> bool {
        matches!(*self.shared.slot.lock(), Slot::Detached(_))
    }
}

impl<S: Splittable> DetachedWrite<S> {
    fn half(&mut self) -> io::Result<&mut S::Write> {
        if self.half.is_none() {
            self.half = Some(self.end.0.take_write()?);
        }
        self.half.as_mut().ok_or_else(lost)
    }
}

impl<S: Splittable> AsyncRead for DetachedRead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().half() {
            Ok(half) => Pin::new(half).poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl<S: Splittable> Readable for DetachedRead<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.half {
            Some(half) => S::poll_read_ready(half, cx),
            // A read (which takes the half back) says; this is asked of a parked half only
            // by the parking task, which watches its descriptor instead.
            None => Poll::Ready(Ok(())),
        }
    }

    fn park(&mut self) {
        if let Some(half) = self.half.take() {
            self.shared.put(Some(half), None);
        }
    }

    fn watched(&self) -> Option<RawFd> {
        self.half.is_none().then_some(self.shared.fd)
    }
}

impl<S: Splittable> AsyncWrite for DetachedWrite<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().half() {
            Ok(half) => Pin::new(half).poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().half() {
            Ok(half) => Pin::new(half).poll_write_vectored(cx, bufs),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // Both streams' halves write vectored; a parked half says so without its half.
        self.half
            .as_ref()
            .is_none_or(|half| half.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().half() {
            Ok(half) => Pin::new(half).poll_flush(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().half() {
            Ok(half) => Pin::new(half).poll_shutdown(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl<S: Splittable> WriteHalf for DetachedWrite<S> {
    fn park(&mut self) {
        if let Some(half) = self.half.take() {
            self.end.0.put(None, Some(half));
        }
    }

    type Parked = WriteEnd<S>;

    fn into_parked(mut self) -> WriteEnd<S> {
        self.park();
        self.end
    }

    fn from_parked(end: WriteEnd<S>) -> Self {
        DetachedWrite { half: None, end }
    }
}

impl<S: Splittable> Drop for WriteEnd<S> {
    /// The writing direction ends as it did when the registered write half was dropped:
    /// the peer sees the end of the stream even while the read half lives on. A half
    /// that held its tokio half dropped it just before (which ended the direction), and
    /// finds nothing of its own in the slot.
    fn drop(&mut self) {
        let mut slot = self.0.slot.lock();
        match &mut *slot {
            Slot::Detached(plain) => S::shutdown_write(plain),
            Slot::Registered { write, .. } => drop(write.take()),
            Slot::Lost => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// The socket leaves the reactor once both halves are parked, comes back with the
    /// first poll of either, and carries bytes both ways in order throughout.
    #[tokio::test]
    async fn both_halves_parked_leave_the_reactor_and_either_brings_the_socket_back() {
        let (mut client, server) = pair().await;
        let (mut read, mut write) = split(server);
        assert_eq!(read.watched(), None);
        read.park();
        assert!(read.watched().is_some_and(|fd| fd >= 0));
        assert!(!read.is_detached(), "the write half still has the socket");
        write.park();
        assert!(read.is_detached());

        // The writer comes back first (a delivery to a parked session).
        write.write_all(b"one").await.unwrap();
        assert!(!read.is_detached());
        let mut got = [0u8; 3];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one");
        write.park();
        assert!(read.is_detached());

        // Then the reader (bytes from the peer).
        client.write_all(b"two").await.unwrap();
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"two");
        assert!(!read.is_detached());
        read.park();
        assert!(read.is_detached());

        // The write half dropped while both are parked ends the writing direction.
        drop(write);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // The read half still reads.
        client.write_all(b"three").await.unwrap();
        let mut got = [0u8; 5];
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"three");
    }
}
