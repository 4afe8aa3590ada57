//! A connection's outbound queue: what the hub and the session's own requests hand to the
//! connection's writer task.
//!
//! The queue is bounded. Replies to the session's own requests wait for room (the reader
//! is then held back, which is the right backpressure for a client that does not read its
//! answers). Deliveries to other sessions never wait: a full queue marks a slow consumer,
//! which is disconnected, so that one slow reader cannot stall a publisher or anyone else.
//!
//! The queue itself is [`queue`], not tokio's mpsc: that one allocates a block of 32
//! slots (and a cache-padded channel) for every connection up front and keeps them for
//! the connection's life, which is most of what an idle connection would cost. This one
//! holds its items in a deque that is allocated when items come and freed when the
//! writer has taken them all. It also lets the writer task go away while the queue is
//! empty (see [`OutboxReceiver::park`]): an idle connection has no writer task at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_proto::packet::{Disconnect, Packet, PublishAck};
use switchboard_proto::{ErrorCode, Flags};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::queue::TrySendError;
pub(crate) use self::queue::{OwnedPermit, TryRecvError};
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

/// The sending side of a connection's outbound queue, cheap to clone (and small: routes
/// and the directory hold one per subscription and session).
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: queue::Sender<Outgoing>,
    state: Arc<OutboxState>,
}

/// What the senders of one connection share besides the queue, in one allocation.
#[derive(Debug)]
struct OutboxState {
    conn_id: u64,
    kill: KillSwitch,
    /// Bytes of deliveries queued and not yet taken by the writer.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    droppables: Droppables,
    /// The server-wide count of frames dropped for slow consumers.
    dropped_total: Arc<std::sync::atomic::AtomicU64>,
    /// The writer task while one runs: it exits while the connection is idle and is
    /// started again by the next item queued.
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The receiving side, owned by the writer task.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    rx: queue::Receiver<Outgoing>,
    state: Arc<OutboxState>,
}

impl OutboxReceiver {
    /// How many frames were dropped since the last call (to tell the client).
    pub fn take_dropped(&self) -> u64 {
        self.state
            .droppables
            .unreported
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    fn taken(&self, item: Outgoing) -> Outgoing {
        if let Outgoing::Droppable(slot) = &item {
            return match slot.take(&self.state.queued_bytes) {
                Some(frame) => Outgoing::Shared(frame),
                None => Outgoing::Dropped,
            };
        }
        let weight = weight(&item);
        if weight > 0 {
            self.state.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
        }
        item
    }

    pub async fn recv(&mut self) -> Option<Outgoing> {
        let item = self.rx.recv().await?;
        Some(self.taken(item))
    }

    pub fn try_recv(&mut self) -> Result<Outgoing, TryRecvError> {
        let item = self.rx.try_recv()?;
        Ok(self.taken(item))
    }

    /// Starts the writer task with `spawn` and keeps its handle. Under the handle's lock,
    /// so that a task started later (after this one parked) is never recorded first.
    pub fn launch(self, spawn: impl FnOnce(OutboxReceiver) -> JoinHandle<()>) {
        let state = self.state.clone();
        let mut writer = state.writer.lock();
        *writer = Some(spawn(self));
    }

    /// Ends the writer task while the queue is empty: `resume` gets the receiver back
    /// (to start a new task) when an item is queued or the last sender goes, or at once
    /// if one of those happened already. Called by the writer task as it exits.
    pub fn park(self, resume: impl FnOnce(OutboxReceiver) + Send + 'static) {
        // The task is ending: its handle is dropped so that its memory goes with it.
        drop(self.state.writer.lock().take());
        let OutboxReceiver { rx, state } = self;
        rx.park(move |rx| resume(OutboxReceiver { rx, state }));
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

/// The queue has been closed: the connection is gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone;

impl Outbox {
    /// A queue of at most `capacity` items, of which deliveries may hold at most
    /// `max_bytes` (frames plus a per-item overhead). Neither bound costs memory up
    /// front: an idle connection pays for neither.
    pub fn new(
        conn_id: u64,
        capacity: usize,
        max_bytes: usize,
        shutdown: &CancellationToken,
        dropped_total: Arc<std::sync::atomic::AtomicU64>,
    ) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = queue::channel(capacity.max(1));
        let state = Arc::new(OutboxState {
            conn_id,
            kill: KillSwitch {
                token: shutdown.child_token(),
                reason: Mutex::new(None),
            },
            queued_bytes: AtomicUsize::new(0),
            max_bytes,
            droppables: Droppables::default(),
            dropped_total,
            writer: Mutex::new(None),
        });
        (
            Outbox {
                tx,
                state: state.clone(),
            },
            OutboxReceiver { rx, state },
        )
    }

    pub fn conn_id(&self) -> u64 {
        self.state.conn_id
    }

    /// Something to wait on for the connection's writer to finish.
    pub fn writer(&self) -> WriterWatch {
        WriterWatch(self.state.clone())
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
        let mut queued = self.state.droppables.queued.lock();
        // Frames the writer already took sit at the front: forget them.
        while queued
            .front()
            .is_some_and(|oldest| oldest.frame.lock().is_none())
        {
            queued.pop_front();
        }
        while self
            .state
            .queued_bytes
            .load(Ordering::Relaxed)
            .saturating_add(weight)
            > self.state.max_bytes
        {
            let Some(oldest) = queued.pop_front() else {
                break;
            };
            if oldest.take(&self.state.queued_bytes).is_some() {
                self.state
                    .droppables
                    .unreported
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.state
                    .dropped_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let slot = Arc::new(DroppableFrame {
            frame: Mutex::new(Some(frame.clone())),
        });
        let before = self.state.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > self.state.max_bytes {
            self.state.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
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
                self.state.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
                drop(queued);
                if let TrySendError::Full(_) = error {
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
        let before = self.state.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > self.state.max_bytes {
            self.state.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            self.kill(
                ErrorCode::SlowConsumer,
                "slow consumer: the outbound queue is full",
            );
            return false;
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(error) => {
                self.state.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
                if let TrySendError::Full(_) = error {
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
            () = self.state.kill.token.cancelled() => Err(Gone),
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
    pub async fn reserve(&self) -> Result<OwnedPermit<Outgoing>, Gone> {
        tokio::select! {
            biased;
            permit = self.tx.clone().reserve_owned() => permit.map_err(|_| Gone),
            () = self.state.kill.token.cancelled() => Err(Gone),
        }
    }

    /// Asks the connection to close with the given reason (the first reason wins).
    pub fn kill(&self, code: ErrorCode, reason: &str) {
        let mut slot = self.state.kill.reason.lock();
        if slot.is_none() {
            *slot = Some((code, reason.to_owned()));
        }
        drop(slot);
        self.state.kill.token.cancel();
    }

    /// Whether someone asked the connection to close.
    pub fn is_killed(&self) -> bool {
        self.state.kill.token.is_cancelled()
    }

    /// The token pulled to close the connection, to wait on (a smaller future than an
    /// async method around it, which matters to a connection waiting while idle).
    pub fn kill_switch(&self) -> &CancellationToken {
        &self.state.kill.token
    }

    /// Why the connection is being closed, once [`Outbox::kill_switch`] was pulled.
    pub fn kill_reason(&self) -> (ErrorCode, String) {
        self.state
            .kill
            .reason
            .lock()
            .clone()
            .unwrap_or((ErrorCode::Internal, "closed by the server".to_owned()))
    }
}

/// A bounded multi-producer, single-consumer queue with tokio mpsc's interface (as much of
/// it as the outbox uses), whose storage exists only while items are queued.
mod queue {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use parking_lot::Mutex;
    use tokio::sync::{Semaphore, TryAcquireError};

    /// A queue holding at most `capacity` items.
    pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
        let chan = Arc::new(Chan {
            state: Mutex::new(State {
                items: VecDeque::new(),
                senders: 1,
                closed: false,
                receiver: None,
                parked: None,
            }),
            room: Semaphore::new(capacity.min(Semaphore::MAX_PERMITS)),
        });
        (Sender { chan: chan.clone() }, Receiver { chan })
    }

    struct Chan<T> {
        state: Mutex<State<T>>,
        /// One permit per free slot: a sender takes one for each item it queues, the
        /// receiver gives it back when it takes the item. Closed with the receiver, which
        /// wakes the senders waiting for room.
        room: Semaphore,
    }

    impl<T> std::fmt::Debug for Chan<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let state = self.state.lock();
            f.debug_struct("Chan")
                .field("queued", &state.items.len())
                .field("senders", &state.senders)
                .field("closed", &state.closed)
                .finish_non_exhaustive()
        }
    }

    struct State<T> {
        items: VecDeque<T>,
        /// Live senders and unused permits; none left closes the queue for the receiver.
        senders: usize,
        /// The receiver is gone: nothing more is queued.
        closed: bool,
        /// The receiver, waiting for an item.
        receiver: Option<Waker>,
        /// The receiver, parked: given back by the next push or the last sender's drop.
        parked: Option<Box<dyn FnOnce() + Send>>,
    }

    pub(crate) enum TrySendError<T> {
        Full(#[allow(dead_code)] T),
        Closed(#[allow(dead_code)] T),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum TryRecvError {
        Empty,
        Disconnected,
    }

    #[derive(Debug)]
    pub(crate) struct Sender<T> {
        chan: Arc<Chan<T>>,
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            self.chan.state.lock().senders += 1;
            Sender {
                chan: self.chan.clone(),
            }
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            let mut state = self.chan.state.lock();
            state.senders -= 1;
            let (receiver, parked) = if state.senders == 0 {
                (state.receiver.take(), state.parked.take())
            } else {
                (None, None)
            };
            drop(state);
            if let Some(receiver) = receiver {
                receiver.wake();
            }
            // Given back so that it sees the queue close (and so that the queue and the
            // parked receiver, which hold each other, are freed).
            if let Some(resume) = parked {
                resume();
            }
        }
    }

    impl<T> Sender<T> {
        /// Queues an item if there is room, without waiting.
        pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
            match self.chan.room.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(item)),
                Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(item)),
            }
            self.push(item).map_err(TrySendError::Closed)
        }

        /// Queues an item, waiting for room; gives it back if the receiver is gone.
        pub async fn send(&self, item: T) -> Result<(), T> {
            match self.chan.room.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(item),
            }
            self.push(item)
        }

        /// Waits for room for one item, kept until the permit is used or dropped.
        pub async fn reserve_owned(self) -> Result<OwnedPermit<T>, ()> {
            match self.chan.room.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(()),
            }
            Ok(OwnedPermit { sender: Some(self) })
        }

        /// Queues an item whose room was already taken.
        fn push(&self, item: T) -> Result<(), T> {
            let mut state = self.chan.state.lock();
            if state.closed {
                return Err(item);
            }
            state.items.push_back(item);
            let receiver = state.receiver.take();
            let parked = state.parked.take();
            drop(state);
            if let Some(receiver) = receiver {
                receiver.wake();
            }
            if let Some(resume) = parked {
                resume();
            }
            Ok(())
        }
    }

    /// Room for one item, taken in advance; given back if dropped unused.
    #[derive(Debug)]
    pub(crate) struct OwnedPermit<T> {
        sender: Option<Sender<T>>,
    }

    impl<T> OwnedPermit<T> {
        /// Queues the item without waiting (it is dropped if the receiver is gone).
        pub fn send(mut self, item: T) {
            if let Some(sender) = self.sender.take() {
                let _ = sender.push(item);
            }
        }
    }

    impl<T> Drop for OwnedPermit<T> {
        fn drop(&mut self) {
            if let Some(sender) = self.sender.take() {
                sender.chan.room.add_permits(1);
            }
        }
    }

    #[derive(Debug)]
    pub(crate) struct Receiver<T> {
        chan: Arc<Chan<T>>,
    }

    impl<T> Receiver<T> {
        /// The next item; `None` once every sender is gone and the queue is empty.
        pub async fn recv(&mut self) -> Option<T> {
            std::future::poll_fn(|cx| self.poll_recv(cx)).await
        }

        fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
            let mut state = self.chan.state.lock();
            if let Some(item) = state.items.pop_front() {
                drop(state);
                self.chan.room.add_permits(1);
                return Poll::Ready(Some(item));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            // Drained, and about to wait: the storage of a burst is not kept for an idle
            // connection (a busy one drains with `try_recv` and does not come here per item).
            if state.items.capacity() > 0 {
                state.items = VecDeque::new();
            }
            match &mut state.receiver {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        }

        /// The next item if one is queued.
        pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
            let mut state = self.chan.state.lock();
            match state.items.pop_front() {
                Some(item) => {
                    drop(state);
                    self.chan.room.add_permits(1);
                    Ok(item)
                }
                None if state.senders == 0 => Err(TryRecvError::Disconnected),
                None => Err(TryRecvError::Empty),
            }
        }

        /// Leaves the queue while it is empty: `resume` gets the receiver back when an
        /// item is queued or the last sender goes, or at once if one of those happened.
        pub fn park(self, resume: impl FnOnce(Receiver<T>) + Send + 'static)
        where
            T: Send + 'static,
        {
            let chan = self.chan.clone();
            let mut state = chan.state.lock();
            if state.items.is_empty() && state.senders > 0 {
                state.items = VecDeque::new();
                // The waker is the parking task's: it must not keep that task's memory.
                state.receiver = None;
                state.parked = Some(Box::new(move || resume(self)));
                return;
            }
            drop(state);
            resume(self);
        }

        /// Slots of item storage the queue holds (for tests of idle memory).
        #[cfg(test)]
        pub fn allocated_slots(&self) -> usize {
            self.chan.state.lock().items.capacity()
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            self.chan.room.close();
            let mut state = self.chan.state.lock();
            state.closed = true;
            let items = std::mem::take(&mut state.items);
            drop(state);
            // Dropped outside the lock: an item may hold anything.
            drop(items);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn items_come_out_in_order_and_the_queue_closes_with_its_last_sender() {
            let (tx, mut rx) = channel::<u32>(2);
            let other = tx.clone();
            tx.try_send(1).map_err(|_| "full").unwrap();
            other.send(2).await.unwrap();
            assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
            assert_eq!(rx.recv().await, Some(1));
            tx.try_send(3).map_err(|_| "full").unwrap();
            assert_eq!(rx.try_recv(), Ok(2));
            drop(tx);
            assert_eq!(rx.recv().await, Some(3));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            drop(other);
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
            assert_eq!(rx.recv().await, None);
        }

        #[tokio::test]
        async fn a_waiting_sender_gets_room_when_an_item_is_taken() {
            let (tx, mut rx) = channel::<u32>(1);
            tx.send(1).await.unwrap();
            let waiting = tokio::spawn({
                let tx = tx.clone();
                async move { tx.send(2).await }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished());
            assert_eq!(rx.recv().await, Some(1));
            waiting.await.unwrap().unwrap();
            assert_eq!(rx.recv().await, Some(2));
        }

        #[tokio::test]
        async fn senders_fail_once_the_receiver_is_gone_even_while_waiting() {
            let (tx, rx) = channel::<u32>(1);
            tx.send(1).await.unwrap();
            let waiting = tokio::spawn({
                let tx = tx.clone();
                async move { tx.send(2).await }
            });
            tokio::task::yield_now().await;
            drop(rx);
            assert_eq!(waiting.await.unwrap(), Err(2));
            assert!(matches!(tx.try_send(3), Err(TrySendError::Closed(3))));
            assert!(tx.clone().reserve_owned().await.is_err());
        }

        #[tokio::test]
        async fn a_permit_keeps_room_and_the_queue_open_until_used_or_dropped() {
            let (tx, mut rx) = channel::<u32>(1);
            let permit = tx.clone().reserve_owned().await.unwrap();
            assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
            drop(tx);
            // The permit counts as a sender: the queue is not closed yet.
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            permit.send(7);
            assert_eq!(rx.recv().await, Some(7));
            assert_eq!(rx.recv().await, None);

            let (tx, mut rx) = channel::<u32>(1);
            drop(tx.clone().reserve_owned().await.unwrap());
            tx.try_send(8).map_err(|_| "full").unwrap();
            assert_eq!(rx.recv().await, Some(8));
        }

        /// A parked receiver, handed back by whatever resumes it.
        fn park_into(rx: Receiver<u32>) -> std::sync::mpsc::Receiver<Receiver<u32>> {
            let (resumed, back) = std::sync::mpsc::channel();
            rx.park(move |rx| resumed.send(rx).unwrap());
            back
        }

        #[test]
        fn a_parked_receiver_comes_back_with_the_next_item() {
            let (tx, rx) = channel::<u32>(4);
            let back = park_into(rx);
            assert!(back.try_recv().is_err(), "nothing queued: still parked");
            tx.try_send(5).map_err(|_| "full").unwrap();
            let mut rx = back.try_recv().expect("resumed by the push");
            assert_eq!(rx.try_recv(), Ok(5));
            // Resumed once only: the next push finds no parked receiver.
            tx.try_send(6).map_err(|_| "full").unwrap();
            assert!(back.try_recv().is_err());
            assert_eq!(rx.try_recv(), Ok(6));
        }

        #[test]
        fn a_receiver_is_not_parked_on_a_queue_with_items_or_without_senders() {
            let (tx, rx) = channel::<u32>(4);
            tx.try_send(1).map_err(|_| "full").unwrap();
            let mut rx = park_into(rx)
                .try_recv()
                .expect("items waiting: given back at once");
            assert_eq!(rx.try_recv(), Ok(1));
            drop(tx);
            let mut rx = park_into(rx)
                .try_recv()
                .expect("no senders: given back at once");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        }

        #[test]
        fn the_last_sender_going_resumes_a_parked_receiver() {
            let (tx, rx) = channel::<u32>(4);
            let other = tx.clone();
            let back = park_into(rx);
            drop(tx);
            assert!(back.try_recv().is_err(), "a sender is left");
            drop(other);
            let mut rx = back.try_recv().expect("resumed by the last sender");
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        }

        #[tokio::test]
        async fn a_drained_queue_holds_no_storage_while_waiting() {
            let (tx, mut rx) = channel::<u64>(1024);
            for item in 0..100 {
                tx.try_send(item).map_err(|_| "full").unwrap();
            }
            while rx.try_recv().is_ok() {}
            assert!(rx.allocated_slots() > 0);
            let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv());
            assert!(waiting.await.is_err());
            assert_eq!(rx.allocated_slots(), 0);
        }
    }
}
