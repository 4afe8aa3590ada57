//! A connection's outbound queue: what the hub and the session's own requests hand to the
//! connection's writer task.
//!
//! The queue is bounded. Replies to the session's own requests wait for room (the reader
//! is then held back, which is the right backpressure for a client that does not read its
//! answers). Deliveries to other sessions never wait: a full queue marks a slow consumer,
//! which is disconnected, so that one slow reader cannot stall a publisher or anyone else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_proto::packet::{Disconnect, Packet, PublishAck};
use switchboard_proto::{ErrorCode, Flags};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::message::StoredMessage;

/// One item of a connection's outbound queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A packet the writer encodes (boxed: packets are large and queue slots are not).
    Packet {
        request_id: u32,
        flags: Flags,
        packet: Box<Packet>,
    },
    /// A publish acknowledgement, the most frequent reply, kept small and unboxed.
    PublishAck { request_id: u32, ack: PublishAck },
    /// A frame encoded once and shared by every receiver (a live message).
    Shared(Bytes),
    /// An answer made of several frames that must stay together: an optional first
    /// packet, stored messages sent as REPLAY frames with `request_id`, an optional last
    /// packet. Queued as one item so that nothing queued later can come between them.
    Sequence {
        request_id: u32,
        head: Option<Box<Packet>>,
        messages: Vec<Arc<StoredMessage>>,
        tail: Option<Box<Packet>>,
    },
    /// A live message whose body is streamed: the writer sends its MESSAGE frame, then
    /// the body in CHUNK frames read from the blob file.
    Streamed(Arc<StoredMessage>),
    /// A live frame of a channel whose slow-consumer policy is drop-oldest: the sender may
    /// take its frame back out while it is queued, to make room for newer ones.
    Droppable(Arc<DroppableFrame>),
    /// Where a dropped frame was: the writer skips it.
    Dropped,
    /// Send this DISCONNECT, flush and close the connection.
    Close(Disconnect),
}

/// Why the hub wants a connection closed, set by whoever pulls the kill switch first.
/// The token is a child of the server's shutdown token, so shutting down pulls it too.
#[derive(Debug)]
struct KillSwitch {
    token: CancellationToken,
    reason: Mutex<Option<(ErrorCode, String)>>,
}

/// Bytes a queued delivery is counted for besides its frame: the queue slot and the
/// shared frame's bookkeeping, so that a flood of tiny frames is bounded too.
const ITEM_OVERHEAD: usize = 64;

/// What a queued item counts against the byte bound: deliveries only (replies wait for
/// room instead of overflowing).
fn weight(item: &Outgoing) -> usize {
    match item {
        Outgoing::Shared(frame) => frame.len() + ITEM_OVERHEAD,
        Outgoing::Streamed(message) => message.live_frame().len() + ITEM_OVERHEAD,
        // Counted when queued and uncounted by whoever takes the frame out, writer or
        // dropper; see `DroppableFrame::take`.
        _ => 0,
    }
}

/// A queued frame that may be dropped before the writer gets to it.
#[derive(Debug)]
pub(crate) struct DroppableFrame {
    frame: Mutex<Option<Bytes>>,
}

impl DroppableFrame {
    /// The frame, if nobody took it yet, with its weight taken off the queue's count.
    fn take(&self, queued_bytes: &AtomicUsize) -> Option<Bytes> {
        let frame = self.frame.lock().take()?;
        queued_bytes.fetch_sub(frame.len() + ITEM_OVERHEAD, Ordering::Relaxed);
        Some(frame)
    }
}

/// The droppable frames of a connection still in its queue, oldest first.
#[derive(Debug, Default)]
struct Droppables {
    queued: Mutex<std::collections::VecDeque<Arc<DroppableFrame>>>,
    /// Frames dropped and not yet reported to the client.
    unreported: std::sync::atomic::AtomicU64,
}

/// The sending side of a connection's outbound queue, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    conn_id: u64,
    tx: mpsc::Sender<Outgoing>,
    kill: Arc<KillSwitch>,
    /// Bytes of deliveries queued and not yet taken by the writer.
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    droppables: Arc<Droppables>,
    /// The server-wide count of frames dropped for slow consumers.
    dropped_total: Arc<std::sync::atomic::AtomicU64>,
}

/// The receiving side, owned by the writer task.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    rx: mpsc::Receiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    droppables: Arc<Droppables>,
}

impl OutboxReceiver {
    /// How many frames were dropped since the last call (to tell the client).
    pub fn take_dropped(&self) -> u64 {
        self.droppables
            .unreported
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    fn taken(&self, item: Outgoing) -> Outgoing {
        if let Outgoing::Droppable(slot) = &item {
            return match slot.take(&self.queued_bytes) {
                Some(frame) => Outgoing::Shared(frame),
                None => Outgoing::Dropped,
            };
        }
        let weight = weight(&item);
        if weight > 0 {
            self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
        }
        item
    }

    pub async fn recv(&mut self) -> Option<Outgoing> {
        let item = self.rx.recv().await?;
        Some(self.taken(item))
    }

    pub fn try_recv(&mut self) -> Result<Outgoing, mpsc::error::TryRecvError> {
        let item = self.rx.try_recv()?;
        Ok(self.taken(item))
    }
}

/// The queue has been closed: the connection is gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone;

impl Outbox {
    /// A queue of at most `capacity` items, of which deliveries may hold at most
    /// `max_bytes` (frames plus a per-item overhead). tokio's queue allocates its slots
    /// as they fill, so an idle connection pays for neither bound.
    pub fn new(
        conn_id: u64,
        capacity: usize,
        max_bytes: usize,
        shutdown: &CancellationToken,
        dropped_total: Arc<std::sync::atomic::AtomicU64>,
    ) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let droppables = Arc::new(Droppables::default());
        let outbox = Outbox {
            conn_id,
            tx,
            kill: Arc::new(KillSwitch {
                token: shutdown.child_token(),
                reason: Mutex::new(None),
            }),
            queued_bytes: queued_bytes.clone(),
            max_bytes,
            droppables: droppables.clone(),
            dropped_total,
        };
        (
            outbox,
            OutboxReceiver {
                rx,
                queued_bytes,
                droppables,
            },
        )
    }

    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// Queues a shared frame for delivery without waiting. Returns false if the
    /// connection is gone or too slow (it is then being disconnected).
    pub fn deliver(&self, frame: Bytes) -> bool {
        self.offer(Outgoing::Shared(frame))
    }

    /// Queues a live message without waiting: its shared frame, or, for a streamed
    /// body, the message itself for the writer to stream.
    pub fn deliver_message(&self, message: &Arc<StoredMessage>, drop_oldest: bool) -> bool {
        if drop_oldest && message.blob().is_none() {
            self.deliver_droppable(message.live_frame())
        } else if message.blob().is_some() {
            self.offer(Outgoing::Streamed(message.clone()))
        } else {
            self.offer(Outgoing::Shared(message.live_frame().clone()))
        }
    }

    /// Queues a live frame of a drop-oldest channel: when the queue is full, the oldest
    /// such frames still queued are dropped to make room (and counted, for the client and
    /// the server's stats). Only a queue with nothing left to drop disconnects.
    pub fn deliver_droppable(&self, frame: &Bytes) -> bool {
        let weight = frame.len() + ITEM_OVERHEAD;
        let mut queued = self.droppables.queued.lock();
        // Frames the writer already took sit at the front: forget them.
        while queued
            .front()
            .is_some_and(|oldest| oldest.frame.lock().is_none())
        {
            queued.pop_front();
        }
        while self
            .queued_bytes
            .load(Ordering::Relaxed)
            .saturating_add(weight)
            > self.max_bytes
        {
            let Some(oldest) = queued.pop_front() else {
                break;
            };
            if oldest.take(&self.queued_bytes).is_some() {
                self.droppables
                    .unreported
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.dropped_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let slot = Arc::new(DroppableFrame {
            frame: Mutex::new(Some(frame.clone())),
        });
        let before = self.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > self.max_bytes {
            self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            drop(queued);
            self.kill(
                ErrorCode::SlowConsumer,
                "slow consumer: the outbound queue is full",
            );
            return false;
        }
        match self.tx.try_send(Outgoing::Droppable(slot.clone())) {
            Ok(()) => {
                queued.push_back(slot);
                true
            }
            Err(error) => {
                self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
                drop(queued);
                if let mpsc::error::TrySendError::Full(_) = error {
                    self.kill(
                        ErrorCode::SlowConsumer,
                        "slow consumer: the outbound queue is full",
                    );
                }
                false
            }
        }
    }

    fn offer(&self, item: Outgoing) -> bool {
        let weight = weight(&item);
        // Counted before queueing, so that the writer never takes off more than was added.
        let before = self.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > self.max_bytes {
            self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            self.kill(
                ErrorCode::SlowConsumer,
                "slow consumer: the outbound queue is full",
            );
            return false;
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(error) => {
                self.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
                if let mpsc::error::TrySendError::Full(_) = error {
                    self.kill(
                        ErrorCode::SlowConsumer,
                        "slow consumer: the outbound queue is full",
                    );
                }
                false
            }
        }
    }

    /// Queues an item, waiting for room. Gives up once the connection is being closed
    /// (killed, or the server is stopping): a client that reads nothing would otherwise
    /// keep its session waiting here forever, where it never sees the kill switch.
    pub async fn send(&self, item: Outgoing) -> Result<(), Gone> {
        tokio::select! {
            biased;
            sent = self.tx.send(item) => sent.map_err(|_| Gone),
            () = self.kill.token.cancelled() => Err(Gone),
        }
    }

    /// Queues the connection's last item, waiting for room even if it is being closed
    /// (the caller bounds the wait).
    pub async fn send_last(&self, item: Outgoing) -> Result<(), Gone> {
        self.tx.send(item).await.map_err(|_| Gone)
    }

    /// Waits for room for one item, so that it can be queued later without waiting
    /// (while holding a lock that must not be held across an await). Gives up like
    /// [`Outbox::send`].
    pub async fn reserve(&self) -> Result<mpsc::OwnedPermit<Outgoing>, Gone> {
        tokio::select! {
            biased;
            permit = self.tx.clone().reserve_owned() => permit.map_err(|_| Gone),
            () = self.kill.token.cancelled() => Err(Gone),
        }
    }

    /// Asks the connection to close with the given reason (the first reason wins).
    pub fn kill(&self, code: ErrorCode, reason: &str) {
        let mut slot = self.kill.reason.lock();
        if slot.is_none() {
            *slot = Some((code, reason.to_owned()));
        }
        drop(slot);
        self.kill.token.cancel();
    }

    /// Whether someone asked the connection to close.
    pub fn is_killed(&self) -> bool {
        self.kill.token.is_cancelled()
    }

    /// Resolves once someone asked the connection to close.
    pub async fn killed(&self) -> (ErrorCode, String) {
        self.kill.token.cancelled().await;
        self.kill
            .reason
            .lock()
            .clone()
            .unwrap_or((ErrorCode::Internal, "closed by the server".to_owned()))
    }
}
