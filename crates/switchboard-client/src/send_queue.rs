//! The send queue: frames encoded by the callers themselves, in the order they were
//! queued, waiting for the writer task.
//!
//! A caller encodes its frame straight into the queue's [`WriteBatch`] under a short lock
//! (no await inside it); the writer swaps the whole batch for its own empty one, writes
//! it, and comes back for the next. A publish therefore costs one lock and one encoding,
//! with no owned frame built and moved through a channel, and a burst of publishes is
//! written in a handful of system calls.
//!
//! A request that is the only one in flight may be written by its caller at once, when
//! the writer is idle and nothing is queued ([`crate::direct`]), and so may a publish
//! without reply when, besides, the socket was left alone for a moment (a publish at a
//! moderate rate; the publishes of a burst are queued and written together): the bytes
//! go to the socket in the same order either way, since the writer only writes what it
//! took from the queue, and takes nothing while a caller writes (both hold the queue's
//! lock).
//!
//! Publishes without reply to one channel, queued one after another, share a frame when
//! the server takes batches (SESSION_ACK FEATURES): the first opens a PUBLISH with flag
//! BATCH, and each next one with the same header block and the next request id is
//! appended to it in place (its length, its body), as long as nothing else was queued
//! after it and the writer has not taken it. The frame's content length and both CRCs
//! are written when the batch closes (something else is queued, or the writer takes the
//! buffer): a body then costs a copy instead of a frame's encoding, the CRC of the whole
//! content is one pass, and the server decodes and routes the run once.
//!
//! The queue is bounded twice: in frames (the configured send queue capacity) and in
//! buffered bytes ([`BATCH_BYTES`]; large bodies stay in their own buffers, see
//! [`WriteBatch`]). A caller that finds it full waits, which is the client's send-side
//! backpressure. Once closing has begun, or the writer is gone, nothing more is taken.

use std::io::IoSlice;
use std::sync::Mutex;

use bytes::Buf;

use switchboard_proto::batch::{BATCH_BYTES, WriteBatch};
use switchboard_proto::crc::{crc32c_append, header_crc};
use switchboard_proto::packet::{BATCH_LEN_BYTES, Encode, PublishBatchRef, PublishRef, Scope};
use switchboard_proto::{FIXED_HEADER_LEN, Flags, FrameCodec, ProtoError, Text};
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use crate::direct::SharedSocket;
use crate::shared::lock;
use crate::writer::KEEP_BUFFER_BYTES;

/// How a frame offered to the queue may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// By the writer task, with whatever else is queued.
    Queued,
    /// By the caller at once if the writer is idle and nothing is queued (a request
    /// the caller awaits before sending another); else queued.
    NowIfIdle,
    /// As `NowIfIdle`, and only if nothing was written for [`QUIET`] (a publish without
    /// reply): a publish at a moderate rate then costs no wake-up of the writer, while
    /// the publishes of a burst, which follow one another closer than that, are queued
    /// and written together.
    NowIfQuiet,
}

/// How long the socket must have been left alone for a publish without reply to be
/// written by its caller: a fiftieth of a millisecond, so that up to about 20 000
/// publishes a second are written as they come, one system call each, and a burst
/// (a publish every microsecond or so) is written in batches.
const QUIET: std::time::Duration = std::time::Duration::from_micros(50);

/// What became of a frame offered to the queue.
#[derive(Debug)]
pub(crate) enum Push {
    /// Encoded into the queue.
    Queued,
    /// The queue is full; the caller waits for room and offers it again.
    Full,
    /// The queue takes nothing more: the connection is closing or over.
    Closed,
    /// The frame could not be encoded (too large, say); nothing of it was queued.
    Refused(ProtoError),
}

/// Why [`SendQueue::push`] did not queue a frame.
#[derive(Debug)]
pub(crate) enum PushError {
    Closed,
    TimedOut,
    Refused(ProtoError),
}

/// The DISCONNECT the writer is asked to send after what is queued; `done` is told once
/// it is written.
pub(crate) type CloseRequest = Option<oneshot::Sender<()>>;

struct QueueState {
    batch: WriteBatch,
    /// Frames in `batch`.
    frames: usize,
    /// Permits of frames in `batch`, released once they are written.
    held: Vec<OwnedSemaphorePermit>,
    /// Set by [`SendQueue::close`] until the writer takes it.
    close: Option<CloseRequest>,
    /// False once closing began or the writer is gone.
    accepting: bool,
    /// The writer found the queue empty and waits to be woken; it holds nothing of its
    /// own to write, so a caller may write to the socket.
    writer_idle: bool,
    /// The socket, for callers writing at once; none over TLS or WebSocket, and none
    /// once closing began.
    socket: Option<SharedSocket>,
    /// Some caller found the queue full and waits for room.
    room_wanted: bool,
    /// When the socket was last written: the writer's last batch (read when it went
    /// idle) or a caller's frame written at once with [`Write::NowIfQuiet`].
    written_at: Option<std::time::Instant>,
    /// The server takes PUBLISH batches, and frames carry no HMAC tag (which would sit
    /// after the content, where bodies are appended).
    batches: bool,
    /// The batch bodies are appended to, if the last frame in the buffer is one.
    open: Option<OpenBatch>,
    /// The header fields of the open batch (kept when it closes, for their memory).
    open_fields: BatchFields,
}

/// Bodies larger than this are not batched: a frame of their own costs little beside
/// them.
pub(crate) const BATCH_BODY_MAX: usize = 4 * 1024;
/// A batch is closed before its frame reaches this many bytes: a server reads a frame
/// that large into a buffer of its own (a copy of every body when it came with others),
/// while a smaller one is decoded in place, its bodies slices of the read buffer.
pub(crate) const BATCH_FRAME_MAX: usize = switchboard_proto::batch::WRITE_APART_BYTES;
/// A batch is closed once it holds this many bodies.
pub(crate) const BATCH_BODIES_MAX: usize = 1024;

/// The PUBLISH with flag BATCH last encoded into the queue's buffer, nothing queued after
/// it nor any of it written yet. Its prefix is stale (content length and CRCs of its first
/// body) until [`OpenBatch::close`].
struct OpenBatch {
    /// Where the frame starts in the buffer.
    start: usize,
    header_len: usize,
    /// The request id the next body must have to join it.
    next_id: u32,
    bodies: usize,
    content_len: usize,
}

/// The header fields of a batch: what a publish must share to join it.
#[derive(Default)]
struct BatchFields {
    scope: Scope,
    channel: String,
    content_type: String,
    user_headers: Vec<(Text, Text)>,
}

impl BatchFields {
    fn matches(&self, publish: &PublishRef<'_>) -> bool {
        self.channel == publish.channel
            && self.scope == publish.scope
            && self.content_type == publish.content_type
            && self.user_headers[..] == *publish.user_headers
    }

    fn set(&mut self, publish: &PublishRef<'_>) {
        self.scope = publish.scope;
        self.channel.clear();
        self.channel.push_str(publish.channel);
        self.content_type.clear();
        self.content_type.push_str(publish.content_type);
        self.user_headers.clear();
        self.user_headers.extend_from_slice(publish.user_headers);
    }
}

/// Frames waiting for the writer; shared by the client's handles and its writer task.
pub(crate) struct SendQueue {
    state: Mutex<QueueState>,
    codec: FrameCodec,
    capacity: usize,
    /// Wakes the writer when something was queued while it was idle.
    work: Notify,
    /// Wakes callers waiting for room once the writer took the batch.
    room: Notify,
}

impl SendQueue {
    /// A queue of at most `capacity` frames (at least 1), encoded with `codec`.
    pub(crate) fn new(codec: FrameCodec, capacity: usize) -> Self {
        SendQueue {
            state: Mutex::new(QueueState {
                batch: WriteBatch::new(),
                frames: 0,
                held: Vec::new(),
                close: None,
                accepting: true,
                writer_idle: false,
                socket: None,
                room_wanted: false,
                written_at: None,
                batches: false,
                open: None,
                open_fields: BatchFields::default(),
            }),
            codec,
            capacity: capacity.max(1),
            work: Notify::new(),
            room: Notify::new(),
        }
    }

    /// Lets callers write their requests to `socket` themselves when the writer is idle
    /// (see [`Write::NowIfIdle`]).
    pub(crate) fn share_socket(&self, socket: SharedSocket) {
        let mut state = lock(&self.state);
        if state.accepting {
            state.socket = Some(socket);
        }
    }

    /// Lets publishes without reply share PUBLISH frames (the server said it takes
    /// batches); not when frames carry an HMAC tag.
    pub(crate) fn allow_batches(&self) {
        let mut state = lock(&self.state);
        state.batches = !self.codec.uses_mac();
    }

    /// Queues a publish without reply, in the open batch if it may join it (see the
    /// module's documentation), else as a frame of its own, which opens a batch unless
    /// it is about to be written at once.
    pub(crate) fn try_push_no_reply(&self, request_id: u32, publish: &PublishRef<'_>) -> Push {
        let mut state = lock(&self.state);
        let len = publish.body.len();
        if !state.batches || len > BATCH_BODY_MAX {
            drop(state);
            return self.try_push(
                request_id,
                Flags::NO_REPLY,
                publish,
                &mut None,
                Write::NowIfQuiet,
            );
        }
        if !state.accepting {
            return Push::Closed;
        }
        if state.frames >= self.capacity || state.batch.buffer().len() >= BATCH_BYTES {
            state.room_wanted = true;
            return Push::Full;
        }
        let state = &mut *state;
        let max_content = self.codec.limits().max_content_len as usize;
        if let Some(open) = &mut state.open
            && open.next_id == request_id
            && open.bodies < BATCH_BODIES_MAX
            && FIXED_HEADER_LEN + open.header_len + open.content_len + BATCH_LEN_BYTES + len
                < BATCH_FRAME_MAX
            && open.content_len + BATCH_LEN_BYTES + len <= max_content
            && state.open_fields.matches(publish)
        {
            open.append(state.batch.buffer(), publish.body);
            state.frames += 1;
            if std::mem::take(&mut state.writer_idle) {
                self.work.notify_one();
            }
            return Push::Queued;
        }
        close_batch(state);
        // The first frame of a burst, with the writer idle, is likely written at once:
        // a batch of one is not worth its length.
        if state.frames == 0 && state.writer_idle {
            return self.push_locked(
                state,
                request_id,
                Flags::NO_REPLY,
                publish,
                &mut None,
                Write::NowIfQuiet,
            );
        }
        let start = state.batch.buffer().len();
        let batch = PublishBatchRef(*publish);
        if let Err(error) = state
            .batch
            .encode(&self.codec, request_id, Flags::NO_REPLY, &batch)
        {
            return Push::Refused(error);
        }
        state.frames += 1;
        let frame = &state.batch.buffer()[start..];
        let header_len = usize::from(u16::from_be_bytes([frame[6], frame[7]]));
        state.open = Some(OpenBatch {
            start,
            header_len,
            next_id: switchboard_proto::packet::batch_request_id(request_id, 1),
            bodies: 1,
            content_len: BATCH_LEN_BYTES + len,
        });
        state.open_fields.set(publish);
        if std::mem::take(&mut state.writer_idle) {
            self.work.notify_one();
        }
        Push::Queued
    }

    /// The codec frames are encoded with.
    pub(crate) fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    /// Encodes a frame into the queue if it has room. `permit` (if any) is kept until
    /// the frame is written; it stays with the caller unless the frame was queued.
    pub(crate) fn try_push<P: Encode + ?Sized>(
        &self,
        request_id: u32,
        flags: Flags,
        packet: &P,
        permit: &mut Option<OwnedSemaphorePermit>,
        write: Write,
    ) -> Push {
        let mut state = lock(&self.state);
        if !state.accepting {
            return Push::Closed;
        }
        if state.frames >= self.capacity || state.batch.buffer().len() >= BATCH_BYTES {
            state.room_wanted = true;
            return Push::Full;
        }
        self.push_locked(&mut state, request_id, flags, packet, permit, write)
    }

    /// [`SendQueue::try_push`] once the queue was found open and with room.
    fn push_locked<P: Encode + ?Sized>(
        &self,
        state: &mut QueueState,
        request_id: u32,
        flags: Flags,
        packet: &P,
        permit: &mut Option<OwnedSemaphorePermit>,
        write: Write,
    ) -> Push {
        // Whatever is queued now follows the open batch, which takes no more bodies.
        close_batch(state);
        if let Err(error) = state.batch.encode(&self.codec, request_id, flags, packet) {
            return Push::Refused(error);
        }
        state.frames += 1;
        if let Some(permit) = permit.take() {
            state.held.push(permit);
        }
        if write != Write::Queued && state.frames == 1 && state.writer_idle {
            // The clock is read only here, with the writer idle: once per burst at most.
            let now = (write == Write::NowIfQuiet).then(std::time::Instant::now);
            let quiet = match (now, state.written_at) {
                (Some(now), Some(written_at)) => now.saturating_duration_since(written_at) >= QUIET,
                _ => true,
            };
            if quiet
                && let Some(socket) = &state.socket
                && write_now(socket, &mut state.batch)
            {
                state.frames = 0;
                state.held.clear();
                state.batch.clear(KEEP_BUFFER_BYTES);
                if now.is_some() {
                    state.written_at = now;
                }
                return Push::Queued;
            }
            // What the socket did not take (or an error, which the writer meets and
            // reports) is left to the writer, ahead of anything queued after it.
        }
        if std::mem::take(&mut state.writer_idle) {
            self.work.notify_one();
        }
        Push::Queued
    }

    /// Encodes a frame into the queue, waiting for room until `deadline`.
    pub(crate) async fn push<P: Encode + ?Sized>(
        &self,
        request_id: u32,
        flags: Flags,
        packet: &P,
        mut permit: Option<OwnedSemaphorePermit>,
        write: Write,
        deadline: Instant,
    ) -> Result<(), PushError> {
        loop {
            // Enabled before looking, so that room made in between is not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(request_id, flags, packet, &mut permit, write) {
                Push::Queued => return Ok(()),
                Push::Closed => return Err(PushError::Closed),
                Push::Refused(error) => return Err(PushError::Refused(error)),
                Push::Full => {}
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(PushError::TimedOut);
            }
        }
    }

    /// Whether a caller would find the queue full now.
    pub(crate) fn is_full(&self) -> bool {
        let mut state = lock(&self.state);
        state.frames >= self.capacity || state.batch.buffer().len() >= BATCH_BYTES
    }

    /// Asks the writer to write what is queued, then DISCONNECT, and stop; nothing more
    /// is queued after this. Returns false if the queue was already closed.
    pub(crate) fn close(&self, done: CloseRequest) -> bool {
        let mut state = lock(&self.state);
        if !state.accepting {
            return false;
        }
        state.accepting = false;
        state.socket = None;
        state.close = Some(done);
        drop(state);
        self.work.notify_one();
        self.room.notify_waiters();
        true
    }

    /// Refuses everything from now on (the writer is gone), waking whoever waits.
    pub(crate) fn shut(&self) {
        let mut state = lock(&self.state);
        state.accepting = false;
        // The writer's end is the socket's end: no copy may keep it open.
        state.socket = None;
        drop(state);
        self.room.notify_waiters();
    }

    /// Hands what is queued to the writer: `batch` (which must be empty) is swapped with
    /// the queue's, and the frames' permits are moved to `held`. Returns the close
    /// request, if closing was asked for. From here until it waits for work again, the
    /// writer may write: no caller writes to the socket meanwhile.
    pub(crate) fn take(
        &self,
        batch: &mut WriteBatch,
        held: &mut Vec<OwnedSemaphorePermit>,
    ) -> Option<CloseRequest> {
        let mut state = lock(&self.state);
        state.writer_idle = false;
        let close = state.close.take();
        if state.frames == 0 && close.is_none() {
            return None;
        }
        close_batch(&mut state);
        std::mem::swap(&mut state.batch, batch);
        held.append(&mut state.held);
        state.frames = 0;
        let wake = std::mem::take(&mut state.room_wanted);
        drop(state);
        if wake {
            self.room.notify_waiters();
        }
        close
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.state).frames == 0
    }

    /// Whether the writer waits for work, so that a caller may write at once.
    #[cfg(test)]
    pub(crate) fn writer_is_idle(&self) -> bool {
        lock(&self.state).writer_idle
    }

    /// Completes once something was queued (or closing was asked for) after the writer
    /// found the queue empty; at once if something is queued already.
    pub(crate) async fn wait_for_work(&self) {
        let work = self.work.notified();
        {
            let mut state = lock(&self.state);
            if state.frames > 0 || state.close.is_some() {
                return;
            }
            state.writer_idle = true;
            state.written_at = Some(std::time::Instant::now());
        }
        work.await;
    }
}

/// Writes `batch` to the socket as far as it takes it without waiting; true once all of
/// it is written.
fn write_now(socket: &SharedSocket, batch: &mut WriteBatch) -> bool {
    let mut slices = [IoSlice::new(&[]); 8];
    let count = batch.chunks_vectored(&mut slices);
    if let Ok(written) = socket.try_write_vectored(&slices[..count]) {
        batch.advance(written);
    }
    batch.is_empty()
}

/// Closes the open batch, if any: nothing more joins it, and its prefix is made right.
fn close_batch(state: &mut QueueState) {
    if let Some(open) = state.open.take() {
        open.close(state.batch.buffer());
    }
}

impl OpenBatch {
    /// Appends `body` to the batch at the end of `buffer`.
    fn append(&mut self, buffer: &mut bytes::BytesMut, body: &[u8]) {
        // Within u32: a batch's frame is under `BATCH_FRAME_MAX`.
        buffer.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buffer.extend_from_slice(body);
        self.content_len += BATCH_LEN_BYTES + body.len();
        self.bodies += 1;
        self.next_id = switchboard_proto::packet::batch_request_id(self.next_id, 1);
    }

    /// Writes the frame's content length and both CRCs, once no more bodies join it.
    fn close(self, buffer: &mut bytes::BytesMut) {
        if self.bodies == 1 {
            // As encoded.
            return;
        }
        let frame = &mut buffer[self.start..];
        let (head, rest) = frame.split_at_mut(FIXED_HEADER_LEN);
        let (block, content) = rest.split_at(self.header_len);
        let content_crc = crc32c_append(0, &content[..self.content_len]);
        head[12..16].copy_from_slice(&(self.content_len as u32).to_be_bytes());
        head[16..20].copy_from_slice(&content_crc.to_be_bytes());
        let mut fixed = [0u8; 20];
        fixed.copy_from_slice(&head[..20]);
        let crc = header_crc(&fixed, block);
        head[20..FIXED_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use switchboard_proto::packet::{BatchBodies, Heartbeat, Packet, batch_request_id};
    use switchboard_proto::{FrameType, Limits};
    use tokio_util::codec::Decoder;

    use super::*;

    /// Everything the queue holds, as the writer would write it.
    fn take_all(queue: &SendQueue, written: &mut BytesMut) {
        let mut batch = WriteBatch::new();
        let mut held = Vec::new();
        queue.take(&mut batch, &mut held);
        while batch.has_remaining() {
            let chunk = batch.chunk();
            written.extend_from_slice(chunk);
            let len = chunk.len();
            batch.advance(len);
        }
    }

    /// Batches close where the writer takes the queue, where another frame is queued,
    /// where the channel changes and at their bounds: every frame written is whole (its
    /// CRCs right), and the publishes come out in order with their ids.
    #[test]
    fn batches_close_wherever_the_queue_moves_on_and_stay_whole() {
        let codec = FrameCodec::new(Limits::default());
        let queue = SendQueue::new(codec.clone(), 100_000);
        queue.allow_batches();
        let mut written = BytesMut::new();
        let mut expected = Vec::new();
        let mut id = 0xFFFF_FF00_u32;
        for n in 0..5000_usize {
            let channel = if n % 700 == 699 { "other" } else { "chat" };
            // Mostly small bodies; now and then one too large to batch, or long enough
            // that batches reach their frame bound.
            let body = match n % 97 {
                0 => Bytes::from(vec![b'x'; BATCH_BODY_MAX + 1]),
                1 => Bytes::from(vec![b'y'; 3000]),
                _ => Bytes::from(n.to_string()),
            };
            if n % 500 == 250 {
                let heartbeat = Heartbeat;
                let pushed =
                    queue.try_push(7, Flags::empty(), &heartbeat, &mut None, Write::Queued);
                assert!(matches!(pushed, Push::Queued));
            }
            let publish = PublishRef {
                scope: Scope::Channel,
                channel,
                content_type: "",
                user_headers: &[],
                body: &body,
            };
            assert!(matches!(
                queue.try_push_no_reply(id, &publish),
                Push::Queued
            ));
            expected.push((id, channel, body));
            id = batch_request_id(id, 1);
            if n % 333 == 0 {
                take_all(&queue, &mut written);
            }
        }
        take_all(&queue, &mut written);

        let mut decoder = codec.clone();
        let mut publishes = Vec::new();
        let (mut frames, mut heartbeats) = (0, 0);
        while let Some(frame) = decoder.decode(&mut written).expect("a whole frame") {
            frames += 1;
            if frame.frame_type == FrameType::Heartbeat {
                heartbeats += 1;
                continue;
            }
            let Ok(Packet::Publish(publish)) = Packet::from_frame(&frame) else {
                panic!("expected PUBLISH, got {frame:?}");
            };
            if frame.flags.contains(Flags::BATCH) {
                let bodies: Vec<Bytes> = BatchBodies::new(&publish.body).collect();
                assert!(bodies.len() <= BATCH_BODIES_MAX);
                assert!(frame.headers.len() + frame.content.len() < BATCH_FRAME_MAX);
                for (index, body) in bodies.into_iter().enumerate() {
                    let body_id = batch_request_id(frame.request_id, index as u32);
                    publishes.push((body_id, publish.channel.to_string(), body));
                }
            } else {
                publishes.push((frame.request_id, publish.channel.to_string(), publish.body));
            }
        }
        assert!(written.is_empty(), "nothing left over");
        assert_eq!(heartbeats, 10);
        assert_eq!(publishes.len(), expected.len());
        for ((id, channel, body), (want_id, want_channel, want_body)) in
            publishes.iter().zip(&expected)
        {
            assert_eq!(
                (id, channel.as_str(), body),
                (want_id, *want_channel, want_body)
            );
        }
        assert!(frames < expected.len() / 5, "{frames} frames");
    }
}
