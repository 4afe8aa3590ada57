//! A connection's outbound queue: what the hub and the session's own requests hand to the
//! connection's writer task.
//!
//! The queue is bounded, in items and in bytes. Replies to the session's own requests
//! count against the byte budget like deliveries, but wait instead of overflowing: a reply
//! is queued only while the queued bytes are under the reply limit (half the budget), so
//! a session that does not read its answers stops being served (its request loop waits
//! here and reads nothing more) with at most that much queued, and deliveries keep the
//! other half. Deliveries to other sessions never wait: a full queue marks a slow
//! consumer, which is disconnected, so that one slow reader cannot stall a publisher or
//! anyone else.
//!
//! Direct messages (relays) are unsolicited: the receiver never asked for them, so they
//! must never cost it its connection. They may fill only a share of the byte budget
//! ([`DIRECT_SHARE`]), leaving the rest to what the receiver asked for (its replies and
//! subscriptions); one that does not fit is refused, and the sender told, while the
//! receiver keeps its connection. Group posts and events are not unsolicited in this
//! sense: joining a group asks for them, as subscribing asks for a channel's messages.
//!
//! On a drop-oldest channel, live frames are queued as droppable: when the queue is full,
//! the oldest of them still queued are taken back out to make room, and only a queue
//! with nothing left to drop disconnects.
//!
//! What all connections queue counts against the server's memory budget too (see
//! [`reservation`]): a delivery that needs budget the server has no room for is treated
//! like one that finds the connection's own queue full (a slow consumer; on a
//! drop-oldest channel, older frames dropped, or this one; a direct message refused;
//! a reply waits, though one may go over so that every session is answered).
//!
//! The queue itself is [`queue`], whose storage exists only while items are queued, and
//! which lets the writer task go away while it is empty (see [`OutboxReceiver::park`]):
//! an idle connection has no writer task at all.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_proto::packet::{Disconnect, Encode, Packet, PublishAck};
use switchboard_proto::{ErrorCode, Flags, Text};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::queue::OwnedPermit;
pub(crate) use self::queue::TryRecvError;
use self::queue::TrySendError;
use self::reservation::Reservation;
use crate::budget::MemoryBudget;
use crate::hub::message::StoredMessage;
use crate::hub::recycle;
use crate::security::permissions::SessionPermissions;

mod queue;
mod reservation;

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
    /// A frame encoded once and shared by every receiver.
    Shared(Bytes),
    /// A live message, whose frame the writer copies or writes as it is: queued by a
    /// count on the message rather than on its frame (a frame's first shared count would
    /// be an allocation per message).
    Live(Arc<StoredMessage>),
    /// A direct message (a relayed body), counted against the share of the budget for
    /// unsolicited traffic until the writer takes it.
    Direct(Bytes),
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

/// Bytes a queued delivery is counted for besides its frame: the queue slot and the
/// shared frame's bookkeeping, so that a flood of tiny frames is bounded too.
pub(crate) const ITEM_OVERHEAD: usize = 64;

/// The share of a connection's byte budget that direct messages may fill: a quarter, so
/// that unsolicited traffic never takes the room its own replies and subscriptions need.
pub(crate) const DIRECT_SHARE: usize = 4;

/// What a queued item counts against the byte bound: its frames (for a packet, the upper
/// bound its encoder reserves) plus the per-item overhead.
fn weight(item: &Outgoing) -> usize {
    match item {
        Outgoing::Shared(frame) | Outgoing::Direct(frame) => frame.len() + ITEM_OVERHEAD,
        Outgoing::Streamed(message) | Outgoing::Live(message) => {
            message.frame_len() + ITEM_OVERHEAD
        }
        Outgoing::Packet { packet, .. } => packet_weight(packet),
        Outgoing::PublishAck { .. } => ITEM_OVERHEAD,
        Outgoing::Sequence {
            head,
            messages,
            tail,
            ..
        } => {
            head.as_deref().map_or(0, packet_weight)
                + tail.as_deref().map_or(0, packet_weight)
                + messages_weight(messages)
        }
        // Counted when queued and uncounted by whoever takes the frame out, writer or
        // dropper; see `DroppableFrame::take`.
        Outgoing::Droppable(_) | Outgoing::Dropped | Outgoing::Close(_) => 0,
    }
}

fn packet_weight(packet: &Packet) -> usize {
    ITEM_OVERHEAD + packet.fields_len_hint() + packet.content_len()
}

/// What stored messages weigh in a queue: their frames (a streamed body counts its
/// MESSAGE frame; its chunks are read from the file as they are sent).
pub(crate) fn messages_weight(messages: &[Arc<StoredMessage>]) -> usize {
    messages
        .iter()
        .map(|message| message.frame_len() + ITEM_OVERHEAD)
        .sum()
}

/// How often a reply waiting for room looks again on its own (it is woken as the writer
/// drains, but a writer that ended does not drain any more).
const REPLY_RECHECK: Duration = Duration::from_millis(100);

/// A queued live message that may be dropped before the writer gets to it.
#[derive(Debug)]
pub(crate) struct DroppableFrame {
    frame: Mutex<Option<Arc<StoredMessage>>>,
}

impl DroppableFrame {
    /// The message as a queue item, if nobody took it yet, with its weight taken off the
    /// queue's count.
    fn take(&self, queued_bytes: &AtomicUsize) -> Option<Outgoing> {
        let message = self.frame.lock().take()?;
        queued_bytes.fetch_sub(message.frame_len() + ITEM_OVERHEAD, Ordering::Relaxed);
        Some(Outgoing::Live(message))
    }
}

/// What an outbox locks only now and then: why its connection is being closed, its
/// droppable frames, and what its session may do. One lock for all three: a lock in the
/// state is a word with its padding, in every connection's state.
#[derive(Debug, Default)]
struct Rare {
    /// Why the connection is being closed and its droppable frames, boxed together
    /// when the first of them is needed: most connections are never killed nor queue a
    /// droppable frame, and their state holds one word here rather than two (which made
    /// it one of glibc's 16-byte steps larger).
    closing: Option<Box<Closing>>,
    /// What the session may do and its user, as others' relays and listings judge it
    /// (the session reads its own copy, without this lock, on every request); set when
    /// the session is registered and by every reload. `None` for a queue without a
    /// registered session.
    permissions: Option<Arc<SessionPermissions>>,
}

/// What an outbox keeps only once its connection is being closed or queues droppable
/// frames.
#[derive(Debug, Default)]
struct Closing {
    /// Why the connection is being closed.
    kill_reason: Option<(ErrorCode, String)>,
    /// The droppable frames of the connection still in its queue, oldest first (only
    /// drop-oldest channels queue them).
    droppables: VecDeque<Arc<DroppableFrame>>,
}

impl Rare {
    fn closing(&mut self) -> &mut Closing {
        self.closing.get_or_insert_with(Box::default)
    }
}

/// The sending side of a connection's outbound queue, cheap to clone (and small: routes
/// and the directory hold one per subscription and session).
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    /// Its state holds the queue: one allocation for both, one pointer for a handle.
    tx: queue::Sender<Outgoing, OutboxState>,
}

/// What the outboxes of one server share, held once rather than copied into every
/// connection's state: the server's shutdown (which pulls every kill switch), its memory
/// budget, the queues' bounds and the count of frames dropped for slow consumers.
#[derive(Debug)]
pub(crate) struct OutboxShared {
    shutdown: CancellationToken,
    budget: Arc<MemoryBudget>,
    /// The server-wide count of frames dropped for slow consumers.
    dropped_total: Arc<AtomicU64>,
    /// Items a queue holds at most.
    capacity: usize,
    /// Bytes of deliveries a queue holds at most.
    max_bytes: usize,
    /// Wakes a parked session by its key (see `connection::parking`); none for queues
    /// outside a server.
    parking: Option<Arc<dyn WakeParked>>,
}

/// Wakes a session parked without a task, by its key in the table of parked sessions:
/// its kill switch was pulled, the server is shutting down, or a reload changed the
/// policy. A key rather than a waker of the session's own, which would be an
/// allocation per parked session (and 24 bytes in its outbox state).
pub(crate) trait WakeParked: Send + Sync + std::fmt::Debug {
    fn wake_parked(&self, key: u32);
}

impl OutboxShared {
    /// Queues of at most `capacity` items, of which deliveries may hold at most
    /// `max_bytes` (frames plus a per-item overhead). Neither bound costs memory up
    /// front: an idle connection pays for neither.
    pub(crate) fn new(
        capacity: usize,
        max_bytes: usize,
        shutdown: CancellationToken,
        dropped_total: Arc<AtomicU64>,
        budget: Arc<MemoryBudget>,
    ) -> OutboxShared {
        OutboxShared {
            shutdown,
            budget,
            dropped_total,
            capacity: capacity.max(1),
            max_bytes,
            parking: None,
        }
    }

    /// Parked sessions are woken through `parking`.
    pub(crate) fn with_parking(mut self, parking: Arc<dyn WakeParked>) -> OutboxShared {
        self.parking = Some(parking);
        self
    }
}

/// What the senders of one connection share, the queue included, in one allocation.
#[derive(Debug)]
struct OutboxState {
    queue: queue::Chan<Outgoing>,
    conn_id: u64,
    /// The session's name, and when it connected (microseconds since the epoch): what
    /// the directory lists and finds it by. Kept here, in an allocation every session
    /// has and the directory, its routes and the session itself point to, rather than
    /// in a directory entry of its own (a 64-byte slot in a table of 1.15 to 2.3 slots
    /// per session) and again in the session's record.
    name: Text,
    connected_since_us: u64,
    server: Arc<OutboxShared>,
    /// The kill switch: whether the hub wants the connection closed (set by whoever
    /// pulls it first, with the reason). Shutting the server down pulls every kill
    /// switch: the server's token is looked at with the connection's own flag.
    ///
    /// Not a child cancellation token: that is an allocation of its own (and a slot in
    /// the parent's list) kept for the connection's whole life, and waiting on it is a
    /// future in every idle connection's task. Pulling it wakes the signal. The flag
    /// is a field of the state (a struct of its own would be 8 bytes of padding more in
    /// every connection's state), the reason is in `rare`.
    killed: AtomicBool,
    /// The kill reason and the droppable frames.
    rare: Mutex<Rare>,
    /// Bytes of deliveries queued and not yet taken by the writer.
    queued_bytes: AtomicUsize,
    /// A reply waits for the queued bytes to fall under the reply limit.
    reply_waiting: AtomicBool,
    /// Wakes whoever waits on the connection (its request loop, a reply waiting for
    /// room) when something they look at may have changed: the queued bytes fell under
    /// the reply limit, the kill switch was pulled, the server started shutting down, or
    /// a reload put a new policy in force; and the queue's senders waiting for room
    /// (slots given back, the receiver gone). One `Notify` for all of them, so that an
    /// idle connection waits on one small future; a waiter looks at what changed, and
    /// waits again if nothing it cares about did.
    signal: Notify,
    /// Bytes of direct messages among them.
    direct_bytes: AtomicUsize,
    /// The server's memory budget held for the queued bytes.
    reservation: Reservation,
    /// Held while the reservation changes (see [`Reservation::grow`]): a field of the
    /// state rather than of the reservation, whose padding would make the state one of
    /// glibc's 16-byte steps larger.
    reservation_changing: Mutex<()>,
    /// Droppable frames dropped and not yet reported to the client.
    dropped_unreported: AtomicU64,
    /// The writer task while one runs: it exits while the connection is idle and is
    /// started again by the next item queued.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The session's key, plus one, while it is parked without a task (see
    /// `connection::parking`); zero otherwise. Woken with the signal, since nothing
    /// waits on that.
    parked: AtomicU32,
}

impl Drop for OutboxState {
    /// A closed connection gives back the server's budget its queue held.
    fn drop(&mut self) {
        self.reservation.release_all(&self.server.budget);
    }
}

impl queue::Holder<Outgoing> for OutboxState {
    fn queue(&self) -> &queue::Chan<Outgoing> {
        &self.queue
    }

    /// The queue's senders waiting for room wait on the signal too: 32 bytes less per
    /// connection than a `Notify` of their own, for a wake now and then that they look
    /// at and ignore (a reply waiting for bytes, a kill, a reload), as the request loop
    /// ignores the queue's.
    fn room(&self) -> &Notify {
        &self.signal
    }
}

impl OutboxState {
    /// Replies are queued only while the queued bytes are under this (half the budget).
    fn reply_limit(&self) -> usize {
        self.server.max_bytes / 2
    }

    fn budget(&self) -> &MemoryBudget {
        &self.server.budget
    }

    /// Covers the queued bytes and `extra` more with the server's budget (see
    /// [`Reservation::grow`]).
    fn grow_reservation(&self, extra: usize) -> bool {
        self.reservation.grow(
            &self.reservation_changing,
            self.budget(),
            &self.queued_bytes,
            extra,
        )
    }
}

/// The receiving side, owned by the writer task.
///
/// Items are taken one by one, but what they free (their slots, their bytes, the
/// server's budget they held) is given back per batch by [`OutboxReceiver::settle`]:
/// the queue's counters are shared with every publisher, and touching them once per
/// item was most of what a delivery cost.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    rx: queue::Receiver<Outgoing, OutboxState>,
    /// Bytes of the items taken since the last settle, still counted as queued.
    unsettled_bytes: usize,
    /// Bytes of direct messages among them.
    unsettled_direct: usize,
}

impl OutboxReceiver {
    fn state(&self) -> &Arc<OutboxState> {
        self.rx.holder()
    }

    fn new(rx: queue::Receiver<Outgoing, OutboxState>) -> Self {
        OutboxReceiver {
            rx,
            unsettled_bytes: 0,
            unsettled_direct: 0,
        }
    }

    /// The connection's id.
    pub fn conn_id(&self) -> u64 {
        self.state().conn_id
    }

    /// How many frames were dropped since the last call (to tell the client).
    pub fn take_dropped(&self) -> u64 {
        self.state().dropped_unreported.swap(0, Ordering::Relaxed)
    }

    /// Bytes queued and not yet written out: a hint of how much the writer is about to
    /// take.
    pub fn queued_bytes_hint(&self) -> usize {
        self.state().queued_bytes.load(Ordering::Relaxed)
    }

    fn taken(&mut self, item: Outgoing) -> Outgoing {
        // The most frequent item first, without the general match.
        if let Outgoing::Live(message) = &item {
            self.unsettled_bytes += message.frame_len() + ITEM_OVERHEAD;
            return item;
        }
        if let Outgoing::Droppable(slot) = &item {
            return slot
                .take(&self.state().queued_bytes)
                .unwrap_or(Outgoing::Dropped);
        }
        let weight = weight(&item);
        self.unsettled_bytes += weight;
        match item {
            Outgoing::Direct(frame) => {
                self.unsettled_direct += weight;
                Outgoing::Shared(frame)
            }
            item => item,
        }
    }

    /// Gives back what the items taken since the last time held: their slots, their
    /// bytes (waking a reply waiting for room) and the server's budget they needed.
    pub fn settle(&mut self) {
        self.rx.settle();
        let weight = std::mem::take(&mut self.unsettled_bytes);
        if weight > 0 {
            let before = self
                .state()
                .queued_bytes
                .fetch_sub(weight, Ordering::SeqCst);
            let now = before.saturating_sub(weight);
            let state = self.state();
            state.reservation.drained_to(
                &state.reservation_changing,
                state.budget(),
                &state.queued_bytes,
                now,
            );
            if now < self.state().reply_limit() && self.state().reply_waiting.load(Ordering::SeqCst)
            {
                self.state().reply_waiting.store(false, Ordering::SeqCst);
                self.state().signal.notify_waiters();
            }
        }
        let direct = std::mem::take(&mut self.unsettled_direct);
        if direct > 0 {
            self.state()
                .direct_bytes
                .fetch_sub(direct, Ordering::Relaxed);
        }
    }

    /// The next item, waiting for one; what it held is given back at once.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.settle();
        let item = self.rx.recv().await?;
        let item = self.taken(item);
        self.settle();
        Some(item)
    }

    /// The next item if one is queued; what it held is given back at once.
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Result<Outgoing, TryRecvError> {
        let item = self.try_take();
        self.settle();
        item
    }

    /// The next item if one is queued, what it held given back by the next
    /// [`OutboxReceiver::settle`]: for the writer, which takes a batch, then settles,
    /// then writes.
    pub fn try_take(&mut self) -> Result<Outgoing, TryRecvError> {
        let item = self.rx.try_take()?;
        Ok(self.taken(item))
    }

    /// Copies the small live frames at the front of what the writer has taken (most of
    /// a fan-out burst) with `copy`, which says whether it had room for the frame; stops
    /// at the first other item, or the first frame `copy` refuses, which stays queued.
    /// What they held is given back by the next settle, as for
    /// [`OutboxReceiver::try_take`].
    /// The messages copied are given to [`recycle`] (those whose last holder this queue
    /// was are reused by the thread's next publishes).
    pub fn copy_small_live(&mut self, mut copy: impl FnMut(&[u8]) -> bool) {
        let mut weight = 0;
        self.rx.take_while_in_hand(
            |item| {
                let Outgoing::Live(message) = item else {
                    return false;
                };
                let Some(frame) = message.small_live_frame() else {
                    return false;
                };
                if !copy(frame) {
                    return false;
                }
                weight += message.frame_len() + ITEM_OVERHEAD;
                true
            },
            |item| {
                if let Outgoing::Live(message) = item {
                    recycle::give(message);
                }
            },
        );
        self.unsettled_bytes += weight;
    }

    /// Starts the writer task with `spawn` and keeps its handle. Under the handle's lock,
    /// so that a task started later (after this one parked) is never recorded first.
    pub fn launch(self, spawn: impl FnOnce(OutboxReceiver) -> JoinHandle<()>) {
        let state = self.state().clone();
        let mut writer = state.writer.lock();
        *writer = Some(spawn(self));
    }

    /// Ends the writer task while the queue is empty: `resume` gets the receiver back
    /// (to start a new task) when an item is queued or the last sender goes, or at once
    /// if one of those happened already. Called by the writer task as it exits.
    pub fn park(mut self, resume: impl FnOnce(OutboxReceiver) + Send + 'static) {
        self.settle();
        // The task is ending: its handle is dropped so that its memory goes with it, and
        // an idle queue holds no budget.
        drop(self.state().writer.lock().take());
        let state = self.state();
        state.reservation.shrink(
            &state.reservation_changing,
            state.budget(),
            &state.queued_bytes,
            0,
        );
        let OutboxReceiver { rx, .. } = self;
        rx.park(move |rx| resume(OutboxReceiver::new(rx)));
    }
}

/// Waits for a connection's writer to finish, without holding its queue open.
#[derive(Debug)]
pub(crate) struct WriterWatch(Arc<OutboxState>);

impl WriterWatch {
    /// Waits until the writer has finished, for at most `grace`; then stops it.
    pub async fn finished_within(self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self.0.writer.lock().take();
            let Some(mut task) = running else {
                return;
            };
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                return;
            }
        }
    }
}

/// Room for one reply, taken in advance by [`Outbox::reserve`]; given back if dropped
/// unused.
#[derive(Debug)]
pub(crate) struct ReplyPermit {
    permit: OwnedPermit<Outgoing, OutboxState>,
    state: Arc<OutboxState>,
}

impl ReplyPermit {
    /// Queues the reply without waiting (counted against the byte budget; covered by the
    /// server's budget if it has room, as the room was looked for when the permit was
    /// taken).
    pub fn send(self, item: Outgoing) {
        let weight = weight(&item);
        let before = self.state.queued_bytes.fetch_add(weight, Ordering::SeqCst);
        if !self.state.reservation.covers(before.saturating_add(weight)) {
            self.state.grow_reservation(0);
        }
        self.permit.send(item);
    }
}

/// The queue has been closed: the connection is gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone;

/// What became of a direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectDelivery {
    Queued,
    /// The receiver's share for direct messages (or its whole queue) is full; it keeps
    /// its connection.
    NoRoom,
    /// The connection is gone.
    Gone,
}

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// No room within the byte budget or the queue's slots: a slow consumer.
    Full,
    /// No room in the server's memory budget.
    NoBudget,
    /// The connection is gone.
    Closed,
}

impl Outbox {
    /// An outbox of its own (no server shutdown, budget or drop counter), for tests.
    #[cfg(test)]
    pub(crate) fn unbudgeted(
        conn_id: u64,
        capacity: usize,
        max_bytes: usize,
    ) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(OutboxShared::new(
            capacity,
            max_bytes,
            CancellationToken::new(),
            Arc::default(),
            MemoryBudget::unlimited(),
        ));
        Outbox::new(conn_id, Text::default(), &shared)
    }

    fn state(&self) -> &Arc<OutboxState> {
        self.tx.holder()
    }

    /// A queue with the bounds of `shared`, for the session `name` connecting now.
    pub fn new(conn_id: u64, name: Text, shared: &Arc<OutboxShared>) -> (Outbox, OutboxReceiver) {
        let state = Arc::new(OutboxState {
            queue: queue::Chan::new(shared.capacity),
            conn_id,
            name,
            connected_since_us: crate::time::now_us(),
            server: shared.clone(),
            killed: AtomicBool::new(false),
            rare: Mutex::default(),
            queued_bytes: AtomicUsize::new(0),
            reply_waiting: AtomicBool::new(false),
            signal: Notify::new(),
            direct_bytes: AtomicUsize::new(0),
            reservation: Reservation::new(),
            reservation_changing: Mutex::new(()),
            dropped_unreported: AtomicU64::new(0),
            writer: Mutex::new(None),
            parked: AtomicU32::new(0),
        });
        let (tx, rx) = queue::halves(state);
        (Outbox { tx }, OutboxReceiver::new(rx))
    }

    pub fn conn_id(&self) -> u64 {
        self.state().conn_id
    }

    /// The session's name.
    pub fn name(&self) -> &Text {
        &self.state().name
    }

    /// When the session connected, in microseconds since the epoch.
    pub fn connected_since_us(&self) -> u64 {
        self.state().connected_since_us
    }

    /// What the session may do, as others judge it (see [`Outbox::set_permissions`]).
    pub(crate) fn permissions(&self) -> Option<Arc<SessionPermissions>> {
        self.state().rare.lock().permissions.clone()
    }

    /// Puts the session's permissions where others' relays and listings see them: when
    /// it is registered, and after a reload.
    pub(crate) fn set_permissions(&self, permissions: Arc<SessionPermissions>) {
        self.state().rare.lock().permissions = Some(permissions);
    }

    /// Something to wait on for the connection's writer to finish.
    pub fn writer(&self) -> WriterWatch {
        WriterWatch(self.state().clone())
    }

    /// Queues a shared frame for delivery without waiting. Returns false if the
    /// connection is gone or too slow (it is then being disconnected).
    pub fn deliver(&self, frame: Bytes) -> bool {
        self.offer(Outgoing::Shared(frame))
    }

    /// Queues a direct message without waiting, if it fits in the share of the budget for
    /// unsolicited traffic. Never disconnects the receiver.
    pub fn deliver_direct(&self, frame: Bytes) -> DirectDelivery {
        let weight = frame.len() + ITEM_OVERHEAD;
        let direct_bytes = &self.state().direct_bytes;
        let before = direct_bytes.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > self.state().server.max_bytes / DIRECT_SHARE {
            direct_bytes.fetch_sub(weight, Ordering::Relaxed);
            return DirectDelivery::NoRoom;
        }
        match self.try_deliver(Outgoing::Direct(frame), weight) {
            Ok(()) => DirectDelivery::Queued,
            Err(refused) => {
                direct_bytes.fetch_sub(weight, Ordering::Relaxed);
                match refused {
                    Refused::Full | Refused::NoBudget => DirectDelivery::NoRoom,
                    Refused::Closed => DirectDelivery::Gone,
                }
            }
        }
    }

    /// Queues a live message without waiting: its shared frame, or, for a streamed
    /// body, the message itself for the writer to stream.
    pub fn deliver_message(&self, message: &Arc<StoredMessage>, drop_oldest: bool) -> bool {
        if message.blob().is_some() {
            self.offer(Outgoing::Streamed(message.clone()))
        } else if drop_oldest {
            self.deliver_droppable(message)
        } else {
            let weight = message.frame_len() + ITEM_OVERHEAD;
            let delivered = self.try_deliver(Outgoing::Live(message.clone()), weight);
            self.delivered(delivered)
        }
    }

    /// Queues a live frame of a drop-oldest channel: when the queue is full, the oldest
    /// such frames still queued are dropped to make room (and counted, for the client and
    /// the server's stats). Only a queue with nothing left to drop disconnects.
    fn deliver_droppable(&self, message: &Arc<StoredMessage>) -> bool {
        let weight = message.frame_len() + ITEM_OVERHEAD;
        let mut guard = self.state().rare.lock();
        let queued = &mut guard.closing().droppables;
        self.drop_oldest(queued, weight, self.state().server.max_bytes);
        let slot = Arc::new(DroppableFrame {
            frame: Mutex::new(Some(message.clone())),
        });
        // Queued under the droppables' lock, so that they stay in queue order.
        let mut delivered = self.try_deliver(Outgoing::Droppable(slot.clone()), weight);
        if let Err(Refused::NoBudget) = delivered {
            // No room in the server's budget: make room within what this queue holds.
            let covered = self.state().reservation.covered();
            self.drop_oldest(queued, weight, covered);
            delivered = self.try_deliver(Outgoing::Droppable(slot.clone()), weight);
            if let Err(Refused::NoBudget) = delivered {
                // Nothing left to drop but this frame: dropped, the connection kept.
                self.count_dropped();
                return true;
            }
        }
        if delivered.is_ok() {
            queued.push_back(slot);
        }
        drop(guard);
        self.delivered(delivered)
    }

    /// Drops the oldest droppable frames still queued until `weight` more bytes fit in
    /// `max_bytes`, or none is left.
    fn drop_oldest(
        &self,
        queued: &mut VecDeque<Arc<DroppableFrame>>,
        weight: usize,
        max_bytes: usize,
    ) {
        // Frames the writer already took sit at the front: forget them.
        while queued
            .front()
            .is_some_and(|oldest| oldest.frame.lock().is_none())
        {
            queued.pop_front();
        }
        while self
            .state()
            .queued_bytes
            .load(Ordering::Relaxed)
            .saturating_add(weight)
            > max_bytes
        {
            let Some(oldest) = queued.pop_front() else {
                break;
            };
            if oldest.take(&self.state().queued_bytes).is_some() {
                self.count_dropped();
            }
        }
    }

    /// Counts a dropped frame, for the client and the server's stats.
    fn count_dropped(&self) {
        self.state()
            .dropped_unreported
            .fetch_add(1, Ordering::Relaxed);
        self.state()
            .server
            .dropped_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Queues a delivery without waiting; false if the connection is gone or too slow.
    fn offer(&self, item: Outgoing) -> bool {
        let weight = weight(&item);
        let delivered = self.try_deliver(item, weight);
        self.delivered(delivered)
    }

    /// Queues a delivery of `weight` bytes if it fits in the byte budget, the server's
    /// memory budget and the queue. The weight is counted before the item is queued, so
    /// that the writer never takes off more than was added; it is taken back off if the
    /// item is refused.
    fn try_deliver(&self, item: Outgoing, weight: usize) -> Result<(), Refused> {
        let queued_bytes = &self.state().queued_bytes;
        let before = queued_bytes.fetch_add(weight, Ordering::Relaxed);
        let after = before.saturating_add(weight);
        if after > self.state().server.max_bytes {
            queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            return Err(Refused::Full);
        }
        if !self.state().reservation.covers(after) && !self.state().grow_reservation(0) {
            queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            return Err(Refused::NoBudget);
        }
        self.tx.try_send(item).map_err(|error| {
            queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            match error {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }

    /// Whether a delivery was queued. A full queue means a slow consumer, which is
    /// disconnected rather than waited for.
    fn delivered(&self, delivered: Result<(), Refused>) -> bool {
        match delivered {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.kill(
                    ErrorCode::SlowConsumer,
                    "slow consumer: the outbound queue is full",
                );
                false
            }
            Err(Refused::NoBudget) => {
                self.kill(
                    ErrorCode::SlowConsumer,
                    "slow consumer: the server's memory budget has no room for its queue",
                );
                false
            }
            Err(Refused::Closed) => false,
        }
    }

    /// Queues a reply, waiting for room: for the queued bytes to fall under the reply
    /// limit, then for a slot. Gives up once the connection is being closed (killed, or
    /// the server is stopping): a client that reads nothing would otherwise keep its
    /// session waiting here forever, where it never sees the kill switch.
    pub async fn send(&self, item: Outgoing) -> Result<(), Gone> {
        let weight = weight(&item);
        self.reply_room(weight).await?;
        self.state()
            .queued_bytes
            .fetch_add(weight, Ordering::SeqCst);
        let sent = tokio::select! {
            biased;
            sent = self.tx.send(item) => sent.map_err(|_| Gone),
            () = self.killed() => Err(Gone),
        };
        if sent.is_err() {
            self.state()
                .queued_bytes
                .fetch_sub(weight, Ordering::SeqCst);
        }
        sent
    }

    /// Queues the connection's last item, waiting for a slot even if it is being closed
    /// (the caller bounds the wait), but not for the byte budget.
    pub async fn send_last(&self, item: Outgoing) -> Result<(), Gone> {
        let weight = weight(&item);
        self.state()
            .queued_bytes
            .fetch_add(weight, Ordering::SeqCst);
        self.tx.send(item).await.map_err(|_| {
            self.state()
                .queued_bytes
                .fetch_sub(weight, Ordering::SeqCst);
            Gone
        })
    }

    /// Waits for room for one reply (as [`Outbox::send`] does), so that it can be queued
    /// later without waiting (while holding a lock that must not be held across an
    /// await). Gives up like [`Outbox::send`].
    pub async fn reserve(&self) -> Result<ReplyPermit, Gone> {
        self.reply_room(ITEM_OVERHEAD).await?;
        tokio::select! {
            biased;
            permit = self.tx.clone().reserve_owned() => permit
                .map(|permit| ReplyPermit {
                    permit,
                    state: self.state().clone(),
                })
                .map_err(|_| Gone),
            () = self.killed() => Err(Gone),
        }
    }

    /// The most bytes of replies queued at once before the next reply waits (the queue
    /// may go over by the last reply queued).
    pub fn reply_limit(&self) -> usize {
        self.state().reply_limit()
    }

    /// Bytes queued and not yet taken by the writer: deliveries and replies.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.state().queued_bytes.load(Ordering::SeqCst)
    }

    /// Waits until the queued bytes are under the reply limit and the server's memory
    /// budget covers `weight` more (the budget is looked at again every
    /// [`REPLY_RECHECK`]: room in it is made by other connections, which wake nobody
    /// here).
    async fn reply_room(&self, weight: usize) -> Result<(), Gone> {
        let state = &self.state();
        loop {
            if state.queued_bytes.load(Ordering::SeqCst) < state.reply_limit()
                && self.budget_room(weight)
            {
                return Ok(());
            }
            if self.tx.is_closed() || self.is_killed() {
                return Err(Gone);
            }
            let drained = state.signal.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            state.reply_waiting.store(true, Ordering::SeqCst);
            // Looked at again once the writer can see the flag: it may have drained the
            // queue in between, and would then have woken nobody.
            if state.queued_bytes.load(Ordering::SeqCst) < state.reply_limit()
                && self.budget_room(weight)
            {
                return Ok(());
            }
            // Woken for a kill too: the loop then sees it above.
            tokio::select! {
                biased;
                () = drained => {}
                () = tokio::time::sleep(REPLY_RECHECK) => {}
            }
        }
    }

    /// Whether a reply of `weight` bytes may be queued as far as the server's memory
    /// budget goes: if the budget covers it (taking the steps needed), or if nothing
    /// queued is uncovered yet. One reply may go over, as with the reply limit, so that a
    /// budget full of state never leaves a session unanswered; the next waits for the
    /// queue to drain back into what it holds.
    fn budget_room(&self, weight: usize) -> bool {
        let state = &self.state();
        let queued = state.queued_bytes.load(Ordering::SeqCst);
        state.reservation.covers(queued.saturating_add(weight))
            || state.grow_reservation(weight)
            || state.reservation.covers(queued)
    }

    /// Asks the connection to close with the given reason (the first reason wins).
    pub fn kill(&self, code: ErrorCode, reason: &str) {
        let mut rare = self.state().rare.lock();
        let closing = rare.closing();
        if closing.kill_reason.is_none() {
            closing.kill_reason = Some((code, reason.to_owned()));
        }
        drop(rare);
        self.state().killed.store(true, Ordering::SeqCst);
        self.state().signal.notify_waiters();
        self.wake_parked();
    }

    /// Whether someone asked the connection to close, or the server is shutting down.
    pub fn is_killed(&self) -> bool {
        self.state().killed.load(Ordering::SeqCst) || self.state().server.shutdown.is_cancelled()
    }

    /// Resolves once the connection is asked to close (see [`Outbox::is_killed`]).
    async fn killed(&self) {
        loop {
            let signal = self.state().signal.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if self.is_killed() {
                return;
            }
            signal.await;
        }
    }

    /// Wakes whoever waits on the connection's [`Outbox::signal`], to look again at what
    /// they wait for: the server is shutting down, or a reload changed the policy.
    pub fn nudge(&self) {
        self.state().signal.notify_waiters();
        self.wake_parked();
    }

    /// Wakes the session if it is parked. After whatever it would look at was changed:
    /// the parking task sets the key before it looks (both sequentially consistent), so
    /// that one of the two sees the other.
    fn wake_parked(&self) {
        let state = self.state();
        let key = state.parked.load(Ordering::SeqCst);
        if key != 0
            && let Some(parking) = &state.server.parking
        {
            parking.wake_parked(key - 1);
        }
    }

    /// The session is parked without a task under `key`: it is woken with the signal
    /// (the kill switch, shutdown, a reload).
    pub fn set_parked_key(&self, key: u32) {
        self.state()
            .parked
            .store(key.saturating_add(1), Ordering::SeqCst);
    }

    /// The session has a task again: nothing wakes it as a parked one.
    pub fn forget_parked_key(&self) {
        self.state().parked.store(0, Ordering::SeqCst);
    }

    /// Woken when the connection is killed, when the server starts shutting down, on a
    /// reload, and now and then for nothing (a drained queue): the connection's request
    /// loop waits on it while idle (one small future rather than one per cause).
    /// Enable it, then look at the causes, then wait: a wake between the look and the
    /// wait is not lost.
    pub fn signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.state().signal.notified()
    }

    /// Why the connection is being closed, once it was killed.
    pub fn kill_reason(&self) -> (ErrorCode, String) {
        self.state()
            .rare
            .lock()
            .closing
            .as_ref()
            .and_then(|closing| closing.kill_reason.clone())
            .unwrap_or((ErrorCode::Internal, "closed by the server".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::packet::{ErrorPacket, Packet};

    use super::*;

    fn reply(len: usize) -> Outgoing {
        Outgoing::Packet {
            request_id: 1,
            flags: Flags::empty(),
            packet: Box::new(Packet::Error(ErrorPacket::new(
                ErrorCode::Internal,
                "x".repeat(len),
            ))),
        }
    }

    /// Replies count against the byte budget and wait while half of it is queued; the
    /// writer taking them wakes the waiting reply.
    #[tokio::test]
    async fn a_reply_waits_while_half_the_budget_is_queued() {
        let (outbox, mut rx) = small_outbox();
        outbox.send(reply(3000)).await.unwrap();
        assert!(outbox.queued_bytes() > outbox.reply_limit());
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(reply(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a reply went over the budget");
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Packet { .. })));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken once the queue drained")
            .unwrap()
            .unwrap();
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Packet { .. })));
        assert_eq!(outbox.queued_bytes(), 0, "everything taken is uncounted");
    }

    /// What the writer takes stays counted until it settles (its batch is then about to
    /// be written): then the bytes are given back at once, and a reply waiting for room
    /// is woken.
    #[tokio::test]
    async fn taken_items_are_uncounted_when_the_writer_settles() {
        let (outbox, mut rx) = small_outbox();
        outbox.send(reply(1000)).await.unwrap();
        outbox.send(reply(1000)).await.unwrap();
        let queued = outbox.queued_bytes();
        assert!(queued > outbox.reply_limit());
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(reply(10)).await }
        });
        assert!(matches!(rx.try_take(), Ok(Outgoing::Packet { .. })));
        assert!(matches!(rx.try_take(), Ok(Outgoing::Packet { .. })));
        assert_eq!(outbox.queued_bytes(), queued, "counted until settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a reply went over the budget");
        rx.settle();
        assert_eq!(outbox.queued_bytes(), 0);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken once the writer settled")
            .unwrap()
            .unwrap();
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Packet { .. })));
        assert_eq!(outbox.queued_bytes(), 0);
    }

    /// A reply waiting for room gives up once the writer is gone.
    #[tokio::test]
    async fn a_waiting_reply_gives_up_when_the_writer_is_gone() {
        let (outbox, rx) = small_outbox();
        outbox.send(reply(3000)).await.unwrap();
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(reply(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        let sent = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("gave up in time")
            .unwrap();
        assert!(sent.is_err());
    }

    /// An outbox of 1 KiB of allowance and a 4 KiB bound, outside any server budget.
    fn small_outbox() -> (Outbox, OutboxReceiver) {
        Outbox::unbudgeted(1, 1024, 4096)
    }

    fn budgeted(limit: u64) -> (Arc<MemoryBudget>, Outbox, OutboxReceiver) {
        let budget = Arc::new(MemoryBudget::new(limit));
        let shared = Arc::new(OutboxShared::new(
            1 << 20,
            64 << 20,
            CancellationToken::new(),
            Arc::default(),
            budget.clone(),
        ));
        let (outbox, rx) = Outbox::new(1, Text::default(), &shared);
        (budget, outbox, rx)
    }

    /// Queued bytes past the allowance take the server's budget in steps; a delivery the
    /// budget has no room for makes a slow consumer, though the connection's own bound is
    /// far; a closed connection gives everything back.
    #[test]
    fn queued_bytes_are_admitted_against_the_server_budget() {
        let limit = 3 * reservation::STEP as u64;
        let (budget, outbox, rx) = budgeted(limit);
        let frame = Bytes::from(vec![0u8; 256 * 1024]);
        assert!(outbox.deliver(frame.clone()));
        assert_eq!(budget.used(), reservation::STEP as u64);
        let mut delivered = 1;
        while outbox.deliver(frame.clone()) {
            delivered += 1;
            assert!(budget.used() <= limit);
        }
        assert!(outbox.is_killed());
        assert_eq!(outbox.kill_reason().0, ErrorCode::SlowConsumer);
        assert_eq!(budget.used(), limit);
        assert!(delivered * frame.len() <= limit as usize + reservation::ALLOWANCE);
        drop((outbox, rx));
        assert_eq!(budget.used(), 0, "a closed connection gives its share back");
    }

    /// A draining queue gives steps back, but only two past what it needs, so that a
    /// queue going up and down around a step's edge leaves the shared account alone; an
    /// idle writer gives back everything.
    #[test]
    fn steps_are_given_back_with_hysteresis() {
        let (budget, outbox, mut rx) = budgeted(u64::MAX);
        let frame = Bytes::from(vec![0u8; 64 * 1024]);
        for _ in 0..80 {
            assert!(outbox.deliver(frame.clone()));
        }
        let peak = budget.used();
        assert_eq!(peak, 5 * reservation::STEP as u64);
        // Around the edge of a step: nothing given back or taken.
        for _ in 0..100 {
            rx.try_recv().unwrap();
            assert!(outbox.deliver(frame.clone()));
            assert_eq!(budget.used(), peak);
        }
        while rx.try_recv().is_ok() {}
        assert!(
            budget.used() <= 2 * reservation::STEP as u64,
            "{}",
            budget.used()
        );
        assert!(
            budget.used() > 0,
            "one spare step is kept while the writer runs"
        );
        rx.park(|_| {});
        assert_eq!(budget.used(), 0, "an idle queue holds nothing");
    }

    /// With no room in the budget, a reply to a connection with nothing uncovered queued
    /// still goes out (the session is answered); the next waits until the queue drained.
    #[tokio::test]
    async fn a_full_budget_lets_one_reply_over_and_holds_the_next() {
        let (budget, outbox, mut rx) = budgeted(0);
        tokio::time::timeout(Duration::from_secs(1), outbox.send(reply(200 * 1024)))
            .await
            .expect("the first reply goes out")
            .unwrap();
        assert_eq!(budget.used(), 0);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(reply(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a second reply went over the budget"
        );
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Packet { .. })));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("let through once the queue drained")
            .unwrap()
            .unwrap();
        assert_eq!(budget.used(), 0);
    }

    /// A direct message the budget has no room for is refused and the receiver kept.
    #[test]
    fn a_direct_message_without_budget_is_refused_not_fatal() {
        let (budget, outbox, _rx) = budgeted(0);
        let small = Bytes::from(vec![0u8; 1024]);
        assert_eq!(outbox.deliver_direct(small), DirectDelivery::Queued);
        let large = Bytes::from(vec![0u8; 100 * 1024]);
        assert_eq!(outbox.deliver_direct(large), DirectDelivery::NoRoom);
        assert!(!outbox.is_killed());
        assert_eq!(budget.used(), 0);
    }

    /// On a drop-oldest channel, no room in the budget drops older frames (or this one)
    /// and keeps the connection.
    #[test]
    fn drop_oldest_frames_make_room_within_the_budget() {
        let limit = reservation::STEP as u64;
        let (budget, outbox, _rx) = budgeted(limit);
        let message = switchboard_proto::packet::Message {
            channel: "drop".into(),
            body: Bytes::from(vec![0u8; 100 * 1024]),
            ..Default::default()
        };
        let codec = switchboard_proto::FrameCodec::new(switchboard_proto::Limits::default());
        let frame =
            Arc::new(StoredMessage::encode(&codec, &message.as_envelope(), Vec::new()).unwrap());
        for _ in 0..100 {
            assert!(outbox.deliver_message(&frame, true));
            assert!(budget.used() <= limit);
        }
        assert!(!outbox.is_killed());
        assert!(outbox.queued_bytes() <= limit as usize + reservation::ALLOWANCE);
        assert!(outbox.state().server.dropped_total.load(Ordering::Relaxed) > 80);
    }
}
