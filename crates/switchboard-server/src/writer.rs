//! The writer task of a connection: takes items from the outbound queue, encodes them and
//! writes them out, many frames per system call.
//!
//! It drains whatever is queued into one [`WriteBatch`] before writing, so that a burst
//! of deliveries costs one write instead of one per frame; large frames and bodies are
//! written from their own buffers in that same vectored write, not copied into the
//! connection's. It frees the batch when the queue is drained, and once the queue has
//! stayed empty for a moment the task exits, leaving the socket with the queue, which
//! starts a new task with the next item: an idle connection has no writer task and no
//! buffer. Streamed bodies are read from their blob file one chunk at a time, so a body
//! of any size costs about two chunks of memory while it is sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use switchboard_proto::batch::{BATCH_BYTES, WriteBatch};
use switchboard_proto::packet::{
    Chunk, Encode, Event, EventKind, Packet, StreamAbort, StreamStart,
};
use switchboard_proto::{Flags, FrameCodec, ProtoError};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::cluster::bodies::BodyReader;
use crate::connection::WriteHalf;
use crate::hub::Hub;
use crate::hub::message::StoredMessage;
use crate::hub::recycle;
use crate::log;
use crate::outbox::{OutboxReceiver, Outgoing, TryRecvError};

/// A buffer grown past this (by a packet larger than a batch) is released after its
/// batch. Any other is kept from one batch to the next while the queue has more, so that
/// a burst does not allocate and grow a buffer per batch, and released once the queue is
/// drained (an idle connection's writer holds none at all).
const KEEP_BUFFER: usize = 2 * BATCH_BYTES;
/// How long a writer waits for more to write before it exits (a busy connection does not
/// start a task per burst).
const LINGER: Duration = Duration::from_millis(100);
/// How many of a connection's first writer tasks exit as soon as their queue is drained,
/// without the linger: the SESSION_ACK's and the one of the first answers. A session
/// that opens, subscribes and then waits (most idle sessions) would otherwise keep a
/// writer task for the linger time after it went quiet, and while many sessions open
/// at once those tasks are a good part of the server's peak memory, which stays
/// resident once they are gone.
const OPENING_TASKS: u8 = 2;
/// Size of the CHUNK frames a streamed body is sent in (smaller if the connection's
/// frames are; see [`chunk_len`]).
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;

/// A streamed body being sent: its MESSAGE frame went out, its chunks follow.
struct OutgoingStream {
    stream_id: u64,
    request_id: u32,
    message: Arc<StoredMessage>,
    file: Option<tokio::fs::File>,
    /// A body kept by a node of the cluster, once its reading started.
    remote: Option<BodyReader>,
    sent: u64,
}

/// The writer's state besides the socket: the batch, and the streamed bodies waiting
/// to be sent. Bodies go one after another (a client reads one body at a time); other
/// frames are written between their chunks, so a large body never holds up the rest.
struct Writer<'a> {
    codec: &'a FrameCodec,
    /// The server's count of bytes written to sessions.
    sent: &'a AtomicU64,
    batch: WriteBatch,
    streams: VecDeque<OutgoingStream>,
    next_stream_id: u64,
    /// Bytes queued when the batch started: how large its buffer will need to be.
    hint: usize,
}

/// What a writer task owns besides its queue, kept by the queue while no task runs
/// (every idle connection keeps one: the connection id is the queue's, the runtime the
/// hub's, and the sink is then what its half keeps while parked).
struct Parts<W> {
    sink: W,
    /// For its codec, its counters and its runtime.
    hub: Arc<Hub>,
    next_stream_id: u64,
    /// Tasks still to start that exit as soon as the queue is drained (see
    /// [`OPENING_TASKS`]).
    opening: u8,
}

/// Sets up the writer of a new connection: its first task starts with the first item
/// queued (the SESSION_ACK).
pub(crate) fn start<W>(rx: OutboxReceiver, sink: W, hub: Arc<Hub>)
where
    W: WriteHalf,
{
    // Called on the server's runtime: where every writer task of the hub is spawned,
    // whichever thread queues the item that starts one.
    hub.runtime();
    let parts = Parts {
        sink: sink.into_parked(),
        hub,
        next_stream_id: 0,
        opening: OPENING_TASKS,
    };
    rx.park(move |rx| launch::<W>(rx, parts));
}

fn launch<W>(rx: OutboxReceiver, parked: Parts<W::Parked>)
where
    W: WriteHalf,
{
    let parts = Parts {
        sink: W::from_parked(parked.sink),
        hub: parked.hub,
        next_stream_id: parked.next_stream_id,
        opening: parked.opening,
    };
    let runtime = parts.hub.runtime().clone();
    rx.launch(move |rx| runtime.spawn(task(rx, parts)));
}

/// A writer task: writes until the connection is done, or until it has been idle for a
/// moment; then it parks its parts with the queue, which launches the next task.
async fn task<W>(mut rx: OutboxReceiver, mut parts: Parts<W>)
where
    W: WriteHalf,
{
    let linger = if parts.opening > 0 {
        parts.opening -= 1;
        Duration::ZERO
    } else {
        LINGER
    };
    let conn_id = rx.conn_id();
    let ending = run(
        &mut rx,
        &mut parts.sink,
        parts.hub.codec(),
        &parts.hub.counters().bytes_sent,
        conn_id,
        &mut parts.next_stream_id,
        Some(linger),
    )
    .await;
    if ending == Ending::Idle {
        // The socket may leave the reactor while nothing is written (and nothing read).
        let parked = Parts {
            sink: parts.sink.into_parked(),
            hub: parts.hub,
            next_stream_id: parts.next_stream_id,
            opening: parts.opening,
        };
        rx.park(move |rx| launch::<W>(rx, parked));
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Nothing was queued for the linger time; everything was written.
    Idle,
    /// The queue closed (and every body was sent), a Close item was written, or the
    /// socket failed.
    Done,
}

/// Writes what is queued until the connection is done, or (with a linger time) until
/// nothing was queued for that long.
///
/// Its future lives as long as the writer task, so it holds only what waiting for the
/// queue needs: writing a batch (encoding, reading body chunks from files) is boxed and
/// exists only while there is something to write, and the batch is dropped whenever
/// the queue is drained and everything was written.
async fn run<W>(
    rx: &mut OutboxReceiver,
    sink: &mut W,
    codec: &FrameCodec,
    sent: &AtomicU64,
    conn_id: u64,
    next_stream_id: &mut u64,
    linger: Option<Duration>,
) -> Ending
where
    W: AsyncWrite + Unpin,
{
    let mut writer = Writer {
        codec,
        sent,
        batch: WriteBatch::new(),
        streams: VecDeque::new(),
        next_stream_id: *next_stream_id,
        hint: 0,
    };
    let mut open = true;
    loop {
        let first = if writer.streams.is_empty() {
            match rx.try_take() {
                Ok(item) => Some(item),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    writer.batch = WriteBatch::new();
                    let next = match linger {
                        None => rx.recv().await,
                        // Parking looks at the queue again: nothing queued meanwhile is
                        // left behind.
                        Some(linger) if linger.is_zero() => {
                            *next_stream_id = writer.next_stream_id;
                            return Ending::Idle;
                        }
                        Some(linger) => match tokio::time::timeout(linger, rx.recv()).await {
                            Ok(next) => next,
                            Err(_) => {
                                *next_stream_id = writer.next_stream_id;
                                return Ending::Idle;
                            }
                        },
                    };
                    match next {
                        Some(item) => Some(item),
                        None => break,
                    }
                }
            }
        } else if open {
            match rx.try_take() {
                Ok(item) => Some(item),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    None
                }
            }
        } else {
            None
        };
        match Box::pin(write_batch(&mut writer, rx, sink, first)).await {
            Ok(false) => {}
            Ok(true) => break,
            Err(error) => {
                debug!(target: log::CONNECTION, conn_id, %error, "write failed");
                // What the failed batch took is no longer queued.
                rx.settle();
                return Ending::Done;
            }
        }
        if !open && writer.streams.is_empty() {
            break;
        }
    }
    let _ = sink.flush().await;
    let _ = sink.shutdown().await;
    Ending::Done
}

/// Encodes `first` and whatever else is queued (up to a batch), the next chunk of the
/// body being streamed, and writes it all out; true if a Close item was written.
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut Writer<'_>,
    rx: &mut OutboxReceiver,
    sink: &mut W,
    first: Option<Outgoing>,
) -> std::io::Result<bool> {
    let mut closing = false;
    if let Some(first) = first {
        writer.hint = rx.queued_bytes_hint();
        closing = writer.put(first, sink).await?;
        while !closing && !writer.batch.is_full() {
            // Most of a burst: small live frames, copied from the queue's hand without
            // taking each out of it.
            rx.copy_small_live(|frame| {
                if writer.batch.is_full() {
                    return false;
                }
                writer.copy_frame(frame);
                true
            });
            if writer.batch.is_full() {
                break;
            }
            match rx.try_take() {
                Ok(Outgoing::Live(message)) => match message.small_live_frame() {
                    Some(frame) => {
                        writer.copy_frame(frame);
                        recycle::give(message);
                    }
                    None => closing = writer.put(Outgoing::Live(message), sink).await?,
                },
                Ok(item) => closing = writer.put(item, sink).await?,
                Err(_) => break,
            }
        }
    }
    // What the batch took leaves the queue's counts before the write, which may wait
    // for a slow reader.
    rx.settle();
    if !closing {
        writer.pump().await;
        writer.report_dropped(rx.take_dropped());
    }
    write_out(&mut writer.batch, sink, writer.sent).await?;
    Ok(closing)
}

/// Writes the batch out and empties it, giving back a buffer that grew large.
async fn write_out<W: AsyncWrite + Unpin>(
    batch: &mut WriteBatch,
    sink: &mut W,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let bytes = batch.remaining() as u64;
    sink.write_all_buf(batch).await?;
    if bytes > 0 {
        sent.fetch_add(bytes, Ordering::Relaxed);
    }
    batch.clear(KEEP_BUFFER);
    Ok(())
}

impl Writer<'_> {
    /// Encodes one item into the buffer; returns true if it was a Close. The frames of a
    /// sequence (a replay, a GET_MESSAGES answer) are written out batch by batch as they
    /// are encoded: a sequence may hold a whole history, far more than one buffer should.
    async fn put<W: AsyncWrite + Unpin>(
        &mut self,
        item: Outgoing,
        sink: &mut W,
    ) -> std::io::Result<bool> {
        let codec = self.codec;
        match item {
            Outgoing::Packet {
                request_id,
                flags,
                packet,
            } => encode_packet(codec, request_id, flags, packet.as_ref(), &mut self.batch),
            Outgoing::PublishAck { request_id, ack } => {
                encode_packet(codec, request_id, Flags::empty(), &ack, &mut self.batch);
            }
            // A large shared frame goes out from its own buffer, not copied once per
            // receiver into each connection's.
            Outgoing::Shared(frame) => self.batch.push_frame(frame),
            Outgoing::Live(message) => match message.small_live_frame() {
                Some(frame) => self.copy_frame(frame),
                None => message.put_live(&mut self.batch),
            },
            Outgoing::Dropped => {}
            Outgoing::Droppable(_) | Outgoing::Direct(_) => {
                // The receiver turns these into Shared or Dropped before they get here.
            }
            Outgoing::Streamed(message) => self.start_stream(0, Flags::empty(), message),
            Outgoing::Sequence {
                request_id,
                head,
                messages,
                tail,
            } => {
                if let Some(head) = head {
                    encode_packet(
                        codec,
                        request_id,
                        Flags::empty(),
                        head.as_ref(),
                        &mut self.batch,
                    );
                }
                for message in messages {
                    if message.blob().is_some() {
                        self.start_stream(request_id, Flags::REPLAY, message);
                    } else if let Err(error) =
                        message.put_reframed(codec, request_id, Flags::REPLAY, &mut self.batch)
                    {
                        report_encode_failure(codec, request_id, &error, &mut self.batch);
                    }
                    if self.batch.is_full() {
                        write_out(&mut self.batch, sink, self.sent).await?;
                    }
                }
                if let Some(tail) = tail {
                    encode_packet(
                        codec,
                        request_id,
                        Flags::empty(),
                        tail.as_ref(),
                        &mut self.batch,
                    );
                }
            }
            Outgoing::Close(disconnect) => {
                encode_packet(
                    codec,
                    0,
                    Flags::empty(),
                    &Packet::Disconnect(disconnect),
                    &mut self.batch,
                );
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Copies a small frame into the batch's buffer. A buffer that must grow grows at
    /// once to what was queued when the batch started (up to a batch), not by doubling,
    /// which would copy what it holds at every step of a burst.
    fn copy_frame(&mut self, frame: &[u8]) {
        let hint = self.hint.min(BATCH_BYTES);
        let buffer = self.batch.buffer();
        if buffer.capacity() - buffer.len() < frame.len() {
            buffer.reserve(hint.saturating_sub(buffer.len()).max(frame.len()));
        }
        buffer.extend_from_slice(frame);
    }

    /// Tells the client how many live messages were dropped for it (drop-oldest channels).
    fn report_dropped(&mut self, count: u64) {
        if count == 0 {
            return;
        }
        let mut event = Event::new(EventKind::Skipped);
        event.count = count;
        event.time_us = crate::time::now_us();
        encode_packet(self.codec, 0, Flags::empty(), &event, &mut self.batch);
    }

    /// Sends the MESSAGE frame of a streamed body, under a stream id of this connection,
    /// and queues its chunks.
    fn start_stream(&mut self, request_id: u32, flags: Flags, message: Arc<StoredMessage>) {
        let Some(blob) = message.blob() else {
            return;
        };
        self.next_stream_id += 1;
        let stream_id = self.next_stream_id;
        let mut head = match message.envelope() {
            Ok(head) => head,
            Err(error) => {
                report_encode_failure(self.codec, request_id, &error, &mut self.batch);
                return;
            }
        };
        head.body = bytes::Bytes::new();
        head.stream = Some(StreamStart {
            stream_id,
            total_len: blob.len(),
        });
        encode_packet(self.codec, request_id, flags, &head, &mut self.batch);
        self.streams.push_back(OutgoingStream {
            stream_id,
            request_id,
            message,
            file: None,
            remote: None,
            sent: 0,
        });
    }

    /// Encodes the next chunk of the body being sent, if any.
    async fn pump(&mut self) {
        let Some(stream) = self.streams.front_mut() else {
            return;
        };
        let max_len = chunk_len(self.codec);
        let mut code = switchboard_proto::ErrorCode::Internal;
        let next = if stream
            .message
            .blob()
            .is_some_and(|blob| blob.remote_body().is_some())
        {
            code = switchboard_proto::ErrorCode::BodyUnavailable;
            next_remote_chunk(stream, max_len).await
        } else {
            next_chunk(stream, max_len).await
        };
        let failure = match next {
            Ok(chunk) => {
                let last = chunk.digest.is_some();
                match self
                    .batch
                    .encode(self.codec, stream.request_id, Flags::empty(), &chunk)
                {
                    Ok(()) if last => {
                        self.streams.pop_front();
                        return;
                    }
                    Ok(()) => return,
                    // A chunk the receiver cannot take would leave its reader waiting
                    // for the rest of the body forever: end the stream instead.
                    Err(error) => {
                        format!("a chunk of the stored body could not be encoded: {error}")
                    }
                }
            }
            Err(error) if code == switchboard_proto::ErrorCode::BodyUnavailable => {
                format!("the body could not be fetched from its node: {error}")
            }
            Err(error) => format!("the stored body could not be read: {error}"),
        };
        tracing::error!(target: log::ERROR, stream_id = stream.stream_id, reason = %failure, "cannot send a stored body; aborting its stream");
        let abort = StreamAbort {
            stream_id: stream.stream_id,
            code,
            reason: failure.into(),
        };
        encode_packet(
            self.codec,
            stream.request_id,
            Flags::empty(),
            &abort,
            &mut self.batch,
        );
        self.streams.pop_front();
    }
}

/// The most body bytes one CHUNK carries: [`CHUNK_BYTES`], or less when the connection's
/// frames are smaller (a server configured with a small `max_frame`), so that every
/// chunk fits the frames the receiver was told to expect.
fn chunk_len(codec: &FrameCodec) -> usize {
    usize::try_from(codec.limits().max_content_len)
        .map_or(CHUNK_BYTES, |max_content| max_content.min(CHUNK_BYTES))
        .max(1)
}

/// Reads the next piece of a body from its file, at most `max_len` bytes.
async fn next_chunk(stream: &mut OutgoingStream, max_len: usize) -> std::io::Result<Chunk> {
    let Some(blob) = stream.message.blob() else {
        return Err(std::io::Error::other("the message has no stored body"));
    };
    if stream.file.is_none() {
        stream.file = Some(tokio::fs::File::open(blob.path()).await?);
    }
    let Some(file) = stream.file.as_mut() else {
        return Err(std::io::Error::other("the body file is not open"));
    };
    let left = blob.len() - stream.sent;
    let want = usize::try_from(left).unwrap_or(max_len).min(max_len);
    let mut data = BytesMut::zeroed(want);
    file.read_exact(&mut data).await?;
    stream.sent += want as u64;
    Ok(Chunk {
        stream_id: stream.stream_id,
        data: data.freeze(),
        digest: (stream.sent == blob.len()).then(|| *blob.digest()),
    })
}

/// Reads the next piece of a body a node of the cluster keeps; the last piece carries the
/// digest, checked against the bytes read. A body that cannot be read whole is an error,
/// never a short body.
async fn next_remote_chunk(stream: &mut OutgoingStream, max_len: usize) -> std::io::Result<Chunk> {
    let Some(blob) = stream.message.blob() else {
        return Err(std::io::Error::other("the message has no stored body"));
    };
    let Some(body) = blob.remote_body() else {
        return Err(std::io::Error::other("the body is not a cluster's"));
    };
    if stream.remote.is_none() {
        let reader = body
            .link
            .open(body, blob.len())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        stream.remote = Some(reader);
    }
    let Some(reader) = stream.remote.as_mut() else {
        return Err(std::io::Error::other("the body is not open"));
    };
    let (data, digest) = reader
        .next(max_len)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.sent += data.len() as u64;
    Ok(Chunk {
        stream_id: stream.stream_id,
        data,
        digest,
    })
}

fn encode_packet<P: Encode + ?Sized>(
    codec: &FrameCodec,
    request_id: u32,
    flags: Flags,
    packet: &P,
    batch: &mut WriteBatch,
) {
    if let Err(error) = batch.encode(codec, request_id, flags, packet) {
        // Only a reply too large for a frame can fail here; say so instead of sending it.
        report_encode_failure(codec, request_id, &error, batch);
    }
}

fn report_encode_failure(
    codec: &FrameCodec,
    request_id: u32,
    error: &ProtoError,
    batch: &mut WriteBatch,
) {
    tracing::error!(target: log::ERROR, request_id, %error, "cannot encode reply");
    let packet = switchboard_proto::packet::ErrorPacket::new(
        switchboard_proto::ErrorCode::Internal,
        format!("reply could not be encoded: {error}"),
    );
    let _ = codec.encode_packet(request_id, Flags::empty(), &packet, batch.buffer());
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use switchboard_proto::packet::{Message, MessagesEnd, PublishAck};
    use switchboard_proto::{Frame, Limits};
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::hub::message::StoredMessage;
    use crate::outbox::Outbox;
    use switchboard_proto::batch::{BATCH_BYTES, WRITE_APART_BYTES};

    /// A socket that takes everything at once and remembers the largest single write and
    /// the number of writes; vectored writes if asked to.
    #[derive(Default)]
    struct Recorder {
        largest: usize,
        writes: usize,
        vectored: bool,
        bytes: BytesMut,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.largest = self.largest.max(buf.len());
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let len = bufs.iter().map(|buf| buf.len()).sum();
            self.largest = self.largest.max(len);
            self.writes += 1;
            for buf in bufs {
                self.bytes.extend_from_slice(buf);
            }
            Poll::Ready(Ok(len))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A connection's first writer tasks (the SESSION_ACK's, the first answers') end as
    /// soon as their queue is drained; the ones after them linger. Time is paused: the
    /// runtime moves the clock to the next timer when nothing else can run, so a task
    /// that lingers is still there when a 1 ms wait ends, and one that ended is not.
    #[tokio::test(start_paused = true)]
    async fn the_opening_writer_tasks_end_without_lingering() {
        let hub = Arc::new(Hub::new(
            crate::config::ServerConfig::default(),
            crate::security::Policy::new(crate::security::SecurityConfig::default()),
            Arc::new(crate::storage::MemoryStorage),
            Arc::new(crate::hooks::NoHooks),
            crate::blobs::BlobStore::temporary().expect("a temporary blob directory"),
        ));
        let (outbox, rx) = hub.new_outbox(1, switchboard_proto::Text::default());
        start(rx, tokio::io::sink(), hub.clone());
        for task in 0..=OPENING_TASKS {
            outbox
                .send(Outgoing::PublishAck {
                    request_id: u32::from(task) + 1,
                    ack: PublishAck::default(),
                })
                .await
                .expect("the queue is open");
            let finished = outbox.writer().finished_within(Duration::from_secs(10));
            let ended = tokio::time::timeout(Duration::from_millis(1), finished)
                .await
                .is_ok();
            assert_eq!(ended, task < OPENING_TASKS, "writer task {task}");
        }
    }

    #[tokio::test]
    async fn a_long_sequence_is_written_in_batches_not_one_buffer() {
        let codec = FrameCodec::new(Limits::default());
        let body = Bytes::from(vec![b'x'; 64 * 1024]);
        let messages: Vec<Arc<StoredMessage>> = (1..=256)
            .map(|seq| {
                let message = Message {
                    channel: "big".into(),
                    seq,
                    body: body.clone(),
                    ..Message::default()
                };
                Arc::new(StoredMessage::encode(&codec, &message.as_envelope(), Vec::new()).unwrap())
            })
            .collect();
        let (outbox, rx) = Outbox::unbudgeted(1, 4, usize::MAX);
        outbox
            .send(Outgoing::Sequence {
                request_id: 7,
                head: None,
                messages,
                tail: Some(Box::new(Packet::MessagesEnd(MessagesEnd {
                    count: 256,
                    last_seq: 256,
                }))),
            })
            .await
            .unwrap();
        drop(outbox);
        let mut sink = Recorder::default();
        let mut rx = rx;
        let ending = run(
            &mut rx,
            &mut sink,
            &codec,
            &AtomicU64::new(0),
            1,
            &mut 0,
            None,
        )
        .await;
        assert_eq!(ending, Ending::Done);

        // 16 MiB went out, in writes no larger than a batch and one message.
        assert!(
            sink.largest <= BATCH_BYTES + 64 * 1024 + 1024,
            "one write of {} bytes",
            sink.largest
        );
        let mut decoder = codec;
        let mut frames: Vec<Frame> = Vec::new();
        while let Some(frame) = decoder.decode(&mut sink.bytes).unwrap() {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 257);
        assert!(
            frames[..256]
                .iter()
                .all(|f| f.flags.contains(Flags::REPLAY))
        );
        assert!(frames.iter().all(|f| f.request_id == 7));
    }

    /// Large shared frames are written from their own buffers, in the same write as the
    /// small frames around them: every frame arrives whole and in order.
    #[tokio::test]
    async fn shared_frames_large_and_small_go_out_whole_and_in_order_in_one_write() {
        let codec = FrameCodec::new(Limits::default());
        let sizes = [10, 100_000, 20, WRITE_APART_BYTES, 5];
        let (outbox, rx) = Outbox::unbudgeted(1, 16, usize::MAX);
        for (index, size) in sizes.iter().enumerate() {
            let message = Message {
                channel: "mixed".into(),
                seq: index as u64 + 1,
                body: Bytes::from(vec![index as u8; *size]),
                ..Message::default()
            };
            let stored = StoredMessage::encode(&codec, &message.as_envelope(), Vec::new()).unwrap();
            assert!(outbox.deliver(stored.live_frame_bytes()));
        }
        drop(outbox);
        let mut sink = Recorder {
            vectored: true,
            ..Recorder::default()
        };
        let mut rx = rx;
        let ending = run(
            &mut rx,
            &mut sink,
            &codec,
            &AtomicU64::new(0),
            1,
            &mut 0,
            None,
        )
        .await;
        assert_eq!(ending, Ending::Done);
        assert_eq!(sink.writes, 1, "one vectored write for the whole batch");

        let mut decoder = codec;
        let mut seen = Vec::new();
        while let Some(frame) = decoder.decode(&mut sink.bytes).unwrap() {
            let Ok(Packet::Message(message)) = Packet::from_frame(&frame) else {
                panic!("not a message: {:?}", frame.frame_type);
            };
            let index = message.seq as usize - 1;
            assert!(message.body.iter().all(|&byte| byte == index as u8));
            seen.push(message.body.len());
        }
        assert!(sink.bytes.is_empty(), "nothing left over");
        assert_eq!(seen, sizes);
    }
}
