//! The writer task: the only code that writes to the socket.
//!
//! Callers encode their frames straight into the [`SendQueue`] (a full queue makes them
//! wait, which is the client's send-side backpressure). The task takes everything queued
//! at once, as one [`WriteBatch`], and writes it (large bodies from their own buffers, in
//! the same vectored write), so a burst of thousands of publishes costs a handful of
//! system calls, not one per message. It flushes once the queue is empty. Between batches
//! it sends heartbeats and the chores the dispatch task leaves in [`Shared`] (answers to
//! the server's heartbeats, cancellations of dropped subscriptions), which therefore never
//! wait for room in the queue.
//!
//! Chunks of a streamed publish are queued with [`Command::SendHeld`]: each holds a permit
//! of its upload's own small budget until it has been written, which bounds the memory one
//! upload ties up in the queue.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::batch::WriteBatch;
use switchboard_proto::codec::Outbound;
use switchboard_proto::packet::{Disconnect, Encode, Heartbeat, PublishRef, Unsubscribe};
use switchboard_proto::{ErrorCode, Flags, FrameCodec, ProtoError};
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, MissedTickBehavior};

use crate::connection::BoxedWriter;
use crate::error::{ClientError, CloseReason, ErrorDetail};
use crate::requests::{Pending, is_no_reply_id};
use crate::send_queue::{Push, PushError, SendQueue, Write};
use crate::shared::Shared;

/// A buffer that grew past this (a very large body went through) is given back. A
/// client has one connection, so it keeps a large buffer rather than allocating again.
pub(crate) const KEEP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How long writing may still take once the client is closing.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A frame for the writer, as callers other than the publish fast path hand it over.
#[derive(Debug)]
pub(crate) enum Command {
    /// Write one frame.
    Send(Outbound),
    /// Write one frame, then release the permit (once the bytes went to the socket).
    SendHeld(Outbound, OwnedSemaphorePermit),
}

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum QueueError {
    Closed,
    TimedOut,
}

/// Queues a command's frame (or has it written at once, as `write` allows), waiting for
/// room until `deadline`. A frame that cannot be encoded fails its own request (or is
/// reported with the publishes sent without reply), exactly as a frame the writer could
/// not write would: the call itself succeeds.
pub(crate) async fn queue_command(
    shared: &Shared,
    queue: &SendQueue,
    command: Command,
    write: Write,
    deadline: Instant,
) -> Result<(), QueueError> {
    let (outbound, permit) = match command {
        Command::Send(outbound) => (outbound, None),
        Command::SendHeld(outbound, permit) => (outbound, Some(permit)),
    };
    let pushed = queue
        .push(
            outbound.request_id,
            outbound.flags,
            &outbound.packet,
            permit,
            write,
            deadline,
        )
        .await;
    match pushed {
        Ok(()) => Ok(()),
        Err(PushError::Refused(error)) => {
            refuse(shared, outbound.request_id, error);
            Ok(())
        }
        Err(PushError::Closed) => Err(QueueError::Closed),
        Err(PushError::TimedOut) => Err(QueueError::TimedOut),
    }
}

/// What [`try_queue_no_reply`] did with a frame.
pub(crate) enum TryQueue {
    Queued,
    Full,
    Closed,
}

/// Queues a publish without reply at once if the queue has room (in the open batch if it
/// may join it); see [`queue_command`] for a frame that cannot be encoded.
pub(crate) fn try_queue_no_reply(
    shared: &Shared,
    queue: &SendQueue,
    request_id: u32,
    publish: &PublishRef<'_>,
) -> TryQueue {
    match queue.try_push_no_reply(request_id, publish) {
        Push::Queued => TryQueue::Queued,
        Push::Refused(error) => {
            refuse(shared, request_id, error);
            TryQueue::Queued
        }
        Push::Full => TryQueue::Full,
        Push::Closed => TryQueue::Closed,
    }
}

/// Fails the request whose frame could not be encoded (nothing of it was queued).
fn refuse(shared: &Shared, request_id: u32, error: ProtoError) {
    let error: ClientError = ErrorDetail::Protocol(error).into();
    if is_no_reply_id(request_id) {
        shared.record_no_reply_failure(error);
    } else if let Some(pending) = shared.requests().take(request_id) {
        pending.fail(error);
    }
}

/// The writer task's state.
pub(crate) struct Writer {
    io: BoxedWriter,
    codec: FrameCodec,
    /// The frames of the next write; large bodies stay in their own buffers.
    batch: WriteBatch,
    queue: Arc<SendQueue>,
    shared: Arc<Shared>,
    heartbeat: Duration,
    /// Permits of frames in the batch, released once the batch is written.
    held: Vec<OwnedSemaphorePermit>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Callers waiting for room must not wait for a writer that is gone.
        self.queue.shut();
    }
}

impl Writer {
    pub(crate) fn new(
        io: BoxedWriter,
        queue: Arc<SendQueue>,
        shared: Arc<Shared>,
        heartbeat: Duration,
    ) -> Self {
        Writer {
            io,
            codec: queue.codec().clone(),
            batch: WriteBatch::new(),
            queue,
            shared,
            heartbeat,
            held: Vec::new(),
        }
    }

    /// Runs until the connection ends, then ends it for everyone else too.
    pub(crate) async fn run(mut self) {
        let reason = self.serve().await;
        // The reason first, so that callers refused by the queue find it.
        self.shared.terminate(reason);
        self.queue.shut();
    }

    async fn serve(&mut self) -> CloseReason {
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.shared.stop_tasks.is_cancelled() {
                return CloseReason::Client;
            }
            // The batch is empty here: what callers queued becomes the next write.
            let mut close = self.queue.take(&mut self.batch, &mut self.held);
            if self.batch.is_empty() && close.is_none() {
                let beat = tokio::select! {
                    biased;
                    () = self.shared.stop_tasks.cancelled() => return CloseReason::Client,
                    () = self.queue.wait_for_work() => continue,
                    () = self.shared.chores_added.notified() => false,
                    _ = heartbeat.tick() => true,
                };
                // Callers may have written to the socket while the writer waited, and
                // left the rest of a frame queued: taking the queue ends that, and what
                // it holds goes out first.
                close = self.queue.take(&mut self.batch, &mut self.held);
                if beat {
                    self.encode(0, Flags::empty(), &Heartbeat);
                }
            }
            self.encode_chores();
            if let Some(done) = close {
                self.encode(
                    0,
                    Flags::empty(),
                    &Disconnect::new(ErrorCode::Normal, "bye"),
                );
                let written = self.write_batch().await;
                let _ = self.io.shutdown().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return written.err().unwrap_or(CloseReason::Client);
            }
            if let Err(reason) = self.write_batch().await {
                return reason;
            }
        }
    }

    /// Encodes a frame the client sends on its own account (heartbeats, chores).
    fn encode<P: Encode + ?Sized>(&mut self, request_id: u32, flags: Flags, packet: &P) {
        if let Err(error) = self.batch.encode(&self.codec, request_id, flags, packet) {
            tracing::warn!(%error, "could not encode a frame of the client's own");
        }
    }

    fn encode_chores(&mut self) {
        let chores = self.shared.take_chores();
        if let Some(request_id) = chores.pong {
            self.encode(request_id, Flags::PONG, &Heartbeat);
        }
        for subscription_id in chores.unsubscribe {
            // Registered so that the server's OK (or NOT_FOUND) finds its request.
            let Ok(request_id) = self.shared.register(Pending::Ignored) else {
                continue;
            };
            self.encode(request_id, Flags::empty(), &Unsubscribe { subscription_id });
        }
    }

    /// Writes the batch, flushing if nothing else is queued.
    async fn write_batch(&mut self) -> Result<(), CloseReason> {
        if self.batch.is_empty() {
            self.held.clear();
            return Ok(());
        }
        let written = tokio::select! {
            result = self.io.write_all_buf(&mut self.batch) => result,
            () = self.shared.stop_tasks.cancelled() => return Err(CloseReason::Client),
            () = closing_grace(&self.shared) => return Err(CloseReason::Client),
        };
        written.map_err(|error| CloseReason::Io(error.to_string()))?;
        self.held.clear();
        self.batch.clear(KEEP_BUFFER_BYTES);
        if self.queue.is_empty() {
            self.io
                .flush()
                .await
                .map_err(|error| CloseReason::Io(error.to_string()))?;
        }
        Ok(())
    }
}

/// Completes [`CLOSE_GRACE`] after the client started closing: a write blocked by a
/// server that stopped reading must not keep the task alive forever.
async fn closing_grace(shared: &Shared) {
    shared.goodbye_sent.cancelled().await;
    tokio::time::sleep(CLOSE_GRACE).await;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use bytes::{Bytes, BytesMut};
    use futures::FutureExt;
    use switchboard_proto::batch::WRITE_APART_BYTES;
    use switchboard_proto::packet::{Packet, Publish};
    use switchboard_proto::{FrameType, Limits};
    use tokio::io::AsyncWrite;
    use tokio_util::codec::Decoder;

    use tokio::sync::oneshot;

    use super::*;

    /// Collects what is written and counts the write calls.
    #[derive(Clone, Default)]
    struct Recorder {
        bytes: Arc<std::sync::Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Asks for a Close behind what `queue` holds and runs a writer over it, writing into
    /// `recorder`, until it has said goodbye.
    async fn run_until_closed(queue: &Arc<SendQueue>, recorder: &Recorder, shared: &Arc<Shared>) {
        let (done, closed) = oneshot::channel();
        assert!(queue.close(Some(done)));
        let writer = Writer::new(
            Box::new(recorder.clone()),
            queue.clone(),
            shared.clone(),
            Duration::from_secs(60),
        );
        writer.run().await;
        closed.await.unwrap();
    }

    /// Queues a command without waiting.
    fn send(shared: &Shared, queue: &SendQueue, command: Command) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let queued = queue_command(shared, queue, command, Write::Queued, deadline).now_or_never();
        assert!(matches!(queued, Some(Ok(()))), "queued at once");
    }

    fn publish(index: u32) -> Command {
        Command::Send(Outbound {
            request_id: index,
            flags: Flags::empty(),
            packet: Packet::Publish(Publish {
                channel: "bench".into(),
                body: Bytes::from(format!("message {index}")),
                ..Publish::default()
            }),
        })
    }

    #[tokio::test]
    async fn queued_frames_are_coalesced_into_few_writes() {
        let recorder = Recorder::default();
        let shared = Arc::new(Shared::new(4));
        let codec = FrameCodec::new(Limits::default());
        let queue = Arc::new(SendQueue::new(codec.clone(), 2000));
        for index in 1..=1000 {
            send(&shared, &queue, publish(index));
        }
        run_until_closed(&queue, &recorder, &shared).await;

        let writes = recorder.writes.load(Ordering::Relaxed);
        assert!(writes <= 3, "1000 queued frames took {writes} writes");
        let mut bytes = BytesMut::from(&recorder.bytes.lock().unwrap()[..]);
        let mut decoder = codec;
        let mut ids = Vec::new();
        let mut last = None;
        while let Some(frame) = decoder.decode(&mut bytes).unwrap() {
            last = Some(frame.frame_type);
            if frame.frame_type == FrameType::Publish {
                ids.push(frame.request_id);
            }
        }
        assert_eq!(
            ids,
            (1..=1000).collect::<Vec<_>>(),
            "frames keep their order"
        );
        assert_eq!(last, Some(FrameType::Disconnect));
        assert_eq!(shared.close_reason(), Some(CloseReason::Client));
    }

    /// Large bodies are written from their own buffers, between small frames, with
    /// and without HMAC: the stream must still be the same frames in the same order.
    #[tokio::test]
    async fn large_bodies_written_apart_keep_frames_whole_and_in_order() {
        for mac in [false, true] {
            let key = mac.then(|| switchboard_proto::MacKey::new(b"writer-test"));
            let codec = FrameCodec::new(Limits::default()).with_mac_key(key);
            let recorder = Recorder::default();
            let shared = Arc::new(Shared::new(4));
            let queue = Arc::new(SendQueue::new(codec.clone(), 100));
            let sizes = [10, 100_000, 20, 40_000, 70_000, 5, WRITE_APART_BYTES];
            for (index, size) in sizes.iter().enumerate() {
                let body = Bytes::from(vec![index as u8; *size]);
                send(
                    &shared,
                    &queue,
                    Command::Send(Outbound {
                        request_id: index as u32 + 1,
                        flags: Flags::empty(),
                        packet: Packet::Publish(Publish {
                            channel: "big".into(),
                            body,
                            ..Publish::default()
                        }),
                    }),
                );
            }
            run_until_closed(&queue, &recorder, &shared).await;
            let mut bytes = BytesMut::from(&recorder.bytes.lock().unwrap()[..]);
            let mut decoder = codec;
            let mut seen = Vec::new();
            while let Some(frame) = decoder.decode(&mut bytes).unwrap() {
                if let Ok(Packet::Publish(publish)) = Packet::from_frame(&frame) {
                    let index = frame.request_id as usize - 1;
                    assert!(publish.body.iter().all(|&byte| byte == index as u8));
                    seen.push(publish.body.len());
                }
            }
            assert!(bytes.is_empty(), "nothing left over");
            assert_eq!(seen, sizes, "every body whole and in order (mac: {mac})");
        }
    }

    #[tokio::test]
    async fn a_frame_too_large_fails_its_request_only() {
        let recorder = Recorder::default();
        let shared = Arc::new(Shared::new(4));
        let (done, answer) = oneshot::channel();
        let request_id = shared.register(Pending::Reply(done)).unwrap();
        let codec = FrameCodec::new(Limits {
            max_content_len: 32,
            ..Limits::default()
        });
        let queue = Arc::new(SendQueue::new(codec, 8));
        send(
            &shared,
            &queue,
            Command::Send(Outbound {
                request_id,
                flags: Flags::empty(),
                packet: Packet::Publish(Publish {
                    channel: "big".into(),
                    body: Bytes::from(vec![0u8; 64]),
                    ..Publish::default()
                }),
            }),
        );
        send(&shared, &queue, publish(99));
        assert!(queue.close(None));
        Writer::new(
            Box::new(recorder.clone()),
            queue,
            shared,
            Duration::from_secs(60),
        )
        .run()
        .await;
        assert!(matches!(
            answer.await.unwrap().as_ref().map_err(ClientError::detail),
            Err(ErrorDetail::Protocol(ProtoError::ContentTooLarge { .. }))
        ));
        assert!(!recorder.bytes.lock().unwrap().is_empty());
    }
}
