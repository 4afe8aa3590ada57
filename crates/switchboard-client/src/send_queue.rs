//! The send queue: frames encoded by the callers themselves, in the order they were
//! queued, waiting for the writer task.
//!
//! A caller encodes its frame straight into the queue's [`WriteBatch`] under a short lock
//! (no await inside it); the writer swaps the whole batch for its own empty one, writes
//! it, and comes back for the next. A publish therefore costs one lock and one encoding,
//! with no owned frame built and moved through a channel, and a burst of publishes is
//! written in a handful of system calls.
//!
//! The queue is bounded twice: in frames (the configured send queue capacity) and in
//! buffered bytes ([`BATCH_BYTES`]; large bodies stay in their own buffers, see
//! [`WriteBatch`]). A caller that finds it full waits, which is the client's send-side
//! backpressure. Once closing has begun, or the writer is gone, nothing more is taken.

use std::sync::Mutex;

use switchboard_proto::batch::{BATCH_BYTES, WriteBatch};
use switchboard_proto::packet::Encode;
use switchboard_proto::{Flags, FrameCodec, ProtoError};
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use crate::shared::lock;

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
    /// The writer found the queue empty and waits to be woken.
    writer_idle: bool,
    /// Some caller found the queue full and waits for room.
    room_wanted: bool,
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
                room_wanted: false,
            }),
            codec,
            capacity: capacity.max(1),
            work: Notify::new(),
            room: Notify::new(),
        }
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
    ) -> Push {
        let mut state = lock(&self.state);
        if !state.accepting {
            return Push::Closed;
        }
        if state.frames >= self.capacity || state.batch.buffer().len() >= BATCH_BYTES {
            state.room_wanted = true;
            return Push::Full;
        }
        if let Err(error) = state.batch.encode(&self.codec, request_id, flags, packet) {
            return Push::Refused(error);
        }
        state.frames += 1;
        if let Some(permit) = permit.take() {
            state.held.push(permit);
        }
        let wake = std::mem::take(&mut state.writer_idle);
        drop(state);
        if wake {
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
        deadline: Instant,
    ) -> Result<(), PushError> {
        loop {
            // Enabled before looking, so that room made in between is not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(request_id, flags, packet, &mut permit) {
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
        state.close = Some(done);
        drop(state);
        self.work.notify_one();
        self.room.notify_waiters();
        true
    }

    /// Refuses everything from now on (the writer is gone), waking whoever waits.
    pub(crate) fn shut(&self) {
        lock(&self.state).accepting = false;
        self.room.notify_waiters();
    }

    /// Hands what is queued to the writer: `batch` (which must be empty) is swapped with
    /// the queue's, and the frames' permits are moved to `held`. Returns the close
    /// request, if closing was asked for.
    pub(crate) fn take(
        &self,
        batch: &mut WriteBatch,
        held: &mut Vec<OwnedSemaphorePermit>,
    ) -> Option<CloseRequest> {
        let mut state = lock(&self.state);
        let close = state.close.take();
        if state.frames == 0 && close.is_none() {
            return None;
        }
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
        }
        work.await;
    }
}
