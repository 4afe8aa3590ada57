//! The socket's write half shared by the writer task and the callers, so that a caller
//! whose request is the only one in flight can write it itself when the writer is idle.
//!
//! A request that is awaited before the next is sent (one publish and its durable ack,
//! then the next) would otherwise cost a wake-up of the writer task per request, and
//! when the caller runs outside the runtime's worker threads (a `block_on`, the main
//! future of `#[tokio::main]`), a hand-over between threads each time: about as long as
//! the round trip itself on a loaded machine. Writing from the caller's thread costs one
//! `write` system call, the same as the writer's.
//!
//! Only plain TCP and Unix sockets are shared: their halves can be written through a
//! shared reference without blocking (`try_write`). TLS and WebSocket streams keep all
//! writing in the writer task.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// The write half of a plain socket, shared by the writer task and the send queue.
#[derive(Clone, Debug)]
pub(crate) enum SharedSocket {
    Tcp(Arc<tokio::net::tcp::OwnedWriteHalf>),
    #[cfg(unix)]
    Unix(Arc<tokio::net::unix::OwnedWriteHalf>),
}

impl SharedSocket {
    /// Writes what the socket takes now without waiting; `WouldBlock` if it takes
    /// nothing.
    pub(crate) fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            SharedSocket::Tcp(half) => half.try_write_vectored(slices),
            #[cfg(unix)]
            SharedSocket::Unix(half) => half.try_write_vectored(slices),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            SharedSocket::Tcp(half) => tcp_stream(half).poll_write_ready(cx),
            #[cfg(unix)]
            SharedSocket::Unix(half) => unix_stream(half).poll_write_ready(cx),
        }
    }

    /// Ends the sending direction (the peer reads an end of stream once what was
    /// written has arrived); the read direction stays open.
    fn shutdown_write(&self) -> io::Result<()> {
        let socket = match self {
            SharedSocket::Tcp(half) => socket2::SockRef::from(tcp_stream(half)),
            #[cfg(unix)]
            SharedSocket::Unix(half) => socket2::SockRef::from(unix_stream(half)),
        };
        match socket.shutdown(std::net::Shutdown::Write) {
            // The peer went first: nothing is left to end.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            ended => ended,
        }
    }
}

fn tcp_stream(half: &tokio::net::tcp::OwnedWriteHalf) -> &tokio::net::TcpStream {
    half.as_ref()
}

#[cfg(unix)]
fn unix_stream(half: &tokio::net::unix::OwnedWriteHalf) -> &tokio::net::UnixStream {
    half.as_ref()
}

/// The writer task's side of a [`SharedSocket`]: an `AsyncWrite` that waits for the
/// socket to take more when it is full.
pub(crate) struct SharedWriter(pub(crate) SharedSocket);

impl SharedWriter {
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(slices) {
                // The readiness was stale: polling again registers for the next change.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }
}

impl AsyncWrite for SharedWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, slices)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: what was written is the kernel's.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.shutdown_write())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use switchboard_proto::packet::{Packet, Publish};
    use switchboard_proto::{Flags, FrameCodec, FrameType, Limits};
    use tokio::io::AsyncReadExt;
    use tokio::time::Instant;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::send_queue::{SendQueue, Write};
    use crate::shared::Shared;
    use crate::writer::Writer;

    fn publish(index: u32, len: usize) -> Packet {
        Packet::Publish(Publish {
            channel: "direct".into(),
            body: Bytes::from(vec![index as u8; len]),
            ..Publish::default()
        })
    }

    async fn until_writer_idle(queue: &SendQueue) {
        let give_up = Instant::now() + Duration::from_secs(5);
        while !queue.writer_is_idle() {
            assert!(Instant::now() < give_up, "the writer never went idle");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A send queue writing to `ours` (shared with its callers, as a connection's is),
    /// and the writer task's state for it.
    fn queue_and_writer(
        ours: tokio::net::UnixStream,
        heartbeat: Duration,
    ) -> (FrameCodec, Arc<SendQueue>, Writer) {
        let (_read, write) = ours.into_split();
        let socket = SharedSocket::Unix(Arc::new(write));
        let codec = FrameCodec::new(Limits::default());
        let queue = Arc::new(SendQueue::new(codec.clone(), 1000));
        queue.share_socket(socket.clone());
        let writer = Writer::new(
            Box::new(SharedWriter(socket)),
            queue.clone(),
            Arc::new(Shared::new(4)),
            heartbeat,
        );
        (codec, queue, writer)
    }

    /// A publish without reply that finds the writer idle and the socket left alone for
    /// a while is written by its caller; the publishes of a burst right behind it are
    /// queued for the writer, which is woken, and every one arrives in order.
    #[tokio::test]
    async fn a_quiet_publish_is_written_by_its_caller_and_a_burst_is_queued() {
        let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
        let (codec, queue, writer) = queue_and_writer(ours, Duration::from_secs(60));
        let writer = tokio::spawn(writer.run());
        until_writer_idle(&queue).await;
        // Far longer than the quiet time, however loaded the machine.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let pushed = queue.try_push(
            1,
            Flags::NO_REPLY,
            &publish(1, 64),
            &mut None,
            Write::NowIfQuiet,
        );
        assert!(matches!(pushed, crate::send_queue::Push::Queued));
        assert!(queue.is_empty(), "written by the caller at once");
        assert!(queue.writer_is_idle(), "the writer was not woken");

        // A burst, without an await between: some publish of it comes within the quiet
        // time of the one before, and is queued for the writer (which is woken).
        let mut queued = false;
        for index in 2..=100 {
            let pushed = queue.try_push(
                index,
                Flags::NO_REPLY,
                &publish(index, 64),
                &mut None,
                Write::NowIfQuiet,
            );
            assert!(matches!(pushed, crate::send_queue::Push::Queued));
            queued |= !queue.is_empty();
        }
        assert!(queued, "a burst is queued, not written a frame at a time");
        assert!(
            !queue.writer_is_idle(),
            "the writer was woken for the burst"
        );

        let mut received = BytesMut::new();
        let mut decoder = codec;
        let mut next = 1;
        while next <= 100 {
            tokio::time::timeout(Duration::from_secs(10), peer.read_buf(&mut received))
                .await
                .expect("the burst arrives")
                .unwrap();
            while let Some(frame) = decoder.decode(&mut received).unwrap() {
                assert_eq!(frame.request_id, next);
                next += 1;
            }
        }
        assert!(queue.close(None));
        writer.await.unwrap();
    }

    /// Requests written by their callers and frames written by the writer task share one
    /// socket: when the socket takes only part of a caller's frame, the writer finishes
    /// it before anything queued after it, and the peer reads every frame whole, in order.
    #[tokio::test]
    async fn frames_written_by_callers_and_the_writer_arrive_whole_and_in_order() {
        exchange(Duration::from_secs(60), true).await;
    }

    /// The same with the writer on another thread sending a heartbeat every millisecond:
    /// a frame of its own must never land inside a frame a caller began.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writers_own_frames_never_split_a_callers_frame() {
        for _ in 0..5 {
            exchange(Duration::from_millis(1), false).await;
        }
    }

    async fn exchange(heartbeat: Duration, check_direct: bool) {
        let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
        // A small send buffer, so that the socket fills while the peer does not read.
        socket2::SockRef::from(&ours)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        let (codec, queue, writer) = queue_and_writer(ours, heartbeat);
        let writer = tokio::spawn(writer.run());

        // A small request with the writer idle is written by the caller: nothing is left
        // queued, before any await.
        until_writer_idle(&queue).await;
        let pushed = queue.try_push(
            1,
            Flags::empty(),
            &publish(1, 100),
            &mut None,
            Write::NowIfIdle,
        );
        assert!(matches!(pushed, crate::send_queue::Push::Queued));
        if check_direct {
            assert!(queue.is_empty(), "written by the caller at once");
            assert!(queue.writer_is_idle(), "the writer was not woken");
        }

        // A large one does not fit: the socket takes part of it, the writer takes over
        // the rest, and what is queued after it (some offered to be written at once)
        // waits behind it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let large = publish(2, 300_000);
        queue
            .push(2, Flags::empty(), &large, None, Write::NowIfIdle, deadline)
            .await
            .unwrap();
        if check_direct {
            assert!(!queue.is_empty(), "the rest is the writer's");
        }
        let sizes: Vec<usize> = std::iter::once(300_000)
            .chain((3..40).map(|index| 1000 + (index * 7919) % 90_000))
            .collect();
        let sending = {
            let queue = queue.clone();
            let sizes = sizes.clone();
            tokio::spawn(async move {
                for (offset, len) in sizes.iter().enumerate().skip(1) {
                    let index = offset as u32 + 2;
                    let write = if index.is_multiple_of(2) {
                        Write::NowIfIdle
                    } else {
                        Write::Queued
                    };
                    let packet = publish(index, *len);
                    queue
                        .push(index, Flags::empty(), &packet, None, write, deadline)
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };

        let mut received = BytesMut::new();
        let mut decoder = codec;
        let mut seen = Vec::new();
        while seen.len() < sizes.len() + 1 {
            let read = tokio::time::timeout(Duration::from_secs(10), peer.read_buf(&mut received))
                .await
                .expect("frames keep coming")
                .unwrap();
            assert!(read > 0, "the stream ended early");
            while let Some(frame) = decoder.decode(&mut received).unwrap() {
                if frame.frame_type == FrameType::Heartbeat {
                    continue;
                }
                assert_eq!(frame.frame_type, FrameType::Publish);
                let Ok(Packet::Publish(publish)) = Packet::from_frame(&frame) else {
                    panic!("not a publish");
                };
                assert!(
                    publish
                        .body
                        .iter()
                        .all(|&byte| byte == frame.request_id as u8)
                );
                seen.push((frame.request_id, publish.body.len()));
            }
            // Slow reads, so that the socket fills now and then.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sending.await.unwrap();
        let expected: Vec<(u32, usize)> = std::iter::once((1, 100))
            .chain(
                sizes
                    .iter()
                    .enumerate()
                    .map(|(offset, len)| (offset as u32 + 2, *len)),
            )
            .collect();
        assert_eq!(seen, expected);

        assert!(queue.close(None));
        writer.await.unwrap();
        // Closing shut the sending direction: the peer reads the DISCONNECT, then the end.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest))
            .await
            .expect("the stream ends")
            .unwrap();
        let mut rest = BytesMut::from(&rest[..]);
        let mut last = None;
        while let Some(frame) = decoder.decode(&mut rest).unwrap() {
            last = Some(frame.frame_type);
        }
        assert_eq!(last, Some(FrameType::Disconnect));
    }
}
