//! A bounded multi-producer, single-consumer queue with tokio mpsc's interface (as much of
//! it as the outbox uses), whose storage exists only while items are queued.
//!
//! Not tokio's mpsc: that one allocates a block of 32 slots (and a cache-padded channel)
//! for every connection up front and keeps them for the connection's life, which is most
//! of what an idle connection would cost. This one holds its items in a deque that is
//! allocated when items come and freed when the receiver has taken them all. Its
//! receiver can also leave the queue while it is empty ([`Receiver::park`]) and be handed
//! back by the next item queued, so that no task waits on an idle queue.
//!
//! The receiver takes everything queued at once, under one lock, into a hand of its own
//! and gives the slots of what it took back in one go ([`Receiver::try_take`],
//! [`Receiver::settle`]): a writer draining a burst pays for the lock and the slots once
//! per burst, not once per item, and the queue and the hand swap their storage rather
//! than allocate.
//!
//! The queue may live inside a larger state shared by the same senders ([`Holder`]):
//! the outbox keeps it in its own state, so that a connection pays for one allocation
//! (and one header) for both, and a sender is one pointer.
//!
//! Free slots are a count under the queue's lock, which every push takes anyway: a
//! delivery costs one lock, not a lock and a semaphore's atomic besides (the semaphore's
//! counter was shared with the receiver giving slots back, and with every other
//! publisher). Senders that wait for room (replies) wait on a [`Notify`] that the
//! queue's holder lends ([`Holder::room`]), woken when slots are given back or the queue
//! closes.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// A queue holding at most `capacity` items.
#[cfg(test)]
pub(crate) fn channel<T: Send>(capacity: usize) -> (Sender<T, Alone<T>>, Receiver<T, Alone<T>>) {
    halves(Arc::new(Alone {
        chan: Chan::new(capacity),
        room: Notify::new(),
    }))
}

/// The sender and the receiver of the queue `holder` holds, which has never had either.
pub(crate) fn halves<T, H: Holder<T>>(holder: Arc<H>) -> (Sender<T, H>, Receiver<T, H>) {
    (
        Sender {
            chan: holder.clone(),
            item: PhantomData,
        },
        Receiver {
            chan: holder,
            hand: VecDeque::new(),
            unsettled: 0,
            closes: true,
        },
    )
}

/// What holds a queue: a larger state shared by the same senders, which keeps the queue
/// inside it rather than in an allocation of its own, and lends it a [`Notify`] to wake
/// the senders waiting for room when slots are given back or the receiver goes (they
/// look again under the lock, so a `Notify` that also wakes them for the holder's own
/// reasons does no harm).
pub(crate) trait Holder<T>: Send + Sync {
    fn queue(&self) -> &Chan<T>;
    fn room(&self) -> &Notify;
}

/// A queue on its own, with a `Notify` of its own.
#[cfg(test)]
pub(crate) struct Alone<T> {
    chan: Chan<T>,
    room: Notify,
}

#[cfg(test)]
impl<T: Send> Holder<T> for Alone<T> {
    fn queue(&self) -> &Chan<T> {
        &self.chan
    }

    fn room(&self) -> &Notify {
        &self.room
    }
}

pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
}

impl<T> Chan<T> {
    /// An empty queue of at most `capacity` items, with one sender to come (see
    /// [`halves`]).
    pub(crate) fn new(capacity: usize) -> Chan<T> {
        Chan {
            state: Mutex::new(State {
                items: VecDeque::new(),
                free: u32::try_from(capacity).unwrap_or(u32::MAX),
                room_wanted: false,
                senders: 1,
                closed: false,
                receiver: Waiting::Nobody,
                burst: 0,
            }),
        }
    }
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
    /// Free slots: a sender takes one for each item it queues (or in advance, for a
    /// permit), the receiver gives them back when it settles the items it took.
    free: u32,
    /// A sender is waiting for room: whoever gives slots back wakes the waiters.
    room_wanted: bool,
    /// Live senders and unused permits; none left closes the queue for the receiver.
    senders: u32,
    /// The receiver is gone: nothing more is queued.
    closed: bool,
    /// The receiver, if it waits for an item: with a task, or parked.
    receiver: Waiting,
    /// About how many items the receiver takes at once: the most it took lately (it
    /// falls by a quarter at each smaller take). What a queue that starts again from
    /// nothing is given at once, so that a burst does not grow it one doubling (and one
    /// copy of everything queued) at a time, even when small takes come between bursts.
    burst: u32,
}

/// How the receiver waits for the next item (or the last sender's going). One field for
/// both ways, which never happen at once: two were 8 bytes more in every connection's
/// state, and one of glibc's 16-byte steps.
#[derive(Default)]
enum Waiting {
    /// Not waiting: busy, or gone.
    #[default]
    Nobody,
    /// A task waits, to be woken.
    Task(Waker),
    /// Parked without a task: given back by the next push or the last sender's drop.
    Parked(Box<dyn FnOnce() + Send>),
}

impl Waiting {
    /// Wakes or resumes the receiver, if it waits.
    fn wake(self) {
        match self {
            Waiting::Nobody => {}
            Waiting::Task(waker) => waker.wake(),
            Waiting::Parked(resume) => resume(),
        }
    }
}

/// A count of slots as the queue keeps it (4 bytes where a `usize` is 8: with the
/// senders' count and the burst, 16 bytes less in every connection's state).
fn slots_u32(slots: usize) -> u32 {
    u32::try_from(slots).unwrap_or(u32::MAX)
}

/// The most slots a queue starting from nothing is given at once: a busy fan-out writer
/// takes a few thousand items at a time, and a queue presized short of that copies
/// everything queued at each doubling.
const MAX_PRESIZE: usize = 4096;

pub(crate) enum TrySendError<T> {
    Full(#[allow(dead_code)] T),
    Closed(#[allow(dead_code)] T),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    Empty,
    Disconnected,
}

pub(crate) struct Sender<T, H: Holder<T>> {
    chan: Arc<H>,
    item: PhantomData<fn(T)>,
}

impl<T, H: Holder<T> + std::fmt::Debug> std::fmt::Debug for Sender<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("chan", &self.chan).finish()
    }
}

impl<T, H: Holder<T>> Clone for Sender<T, H> {
    fn clone(&self) -> Self {
        self.chan.queue().state.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
            item: PhantomData,
        }
    }
}

impl<T, H: Holder<T>> Drop for Sender<T, H> {
    fn drop(&mut self) {
        let mut state = self.chan.queue().state.lock();
        state.senders -= 1;
        let receiver = if state.senders == 0 {
            std::mem::take(&mut state.receiver)
        } else {
            Waiting::Nobody
        };
        drop(state);
        // A parked receiver is given back so that it sees the queue close (and so that
        // the queue and the parked receiver, which hold each other, are freed).
        receiver.wake();
    }
}

impl<T, H: Holder<T>> Sender<T, H> {
    /// What holds the queue.
    pub fn holder(&self) -> &Arc<H> {
        &self.chan
    }

    /// Queues an item if there is room, without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.chan.queue().state.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.free == 0 {
            return Err(TrySendError::Full(item));
        }
        state.free -= 1;
        push_locked(state, item);
        Ok(())
    }

    /// Queues an item, waiting for room; gives it back if the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        if self.room().await.is_err() {
            return Err(item);
        }
        self.push(item)
    }

    /// Waits for room for one item, kept until the permit is used or dropped.
    pub async fn reserve_owned(self) -> Result<OwnedPermit<T, H>, ()> {
        self.room().await?;
        Ok(OwnedPermit { sender: Some(self) })
    }

    /// Takes a free slot, waiting for one; fails once the receiver is gone. Dropped
    /// while waiting, it has taken nothing.
    async fn room(&self) -> Result<(), ()> {
        loop {
            let freed = self.chan.room().notified();
            tokio::pin!(freed);
            // Enabled before looking, so that slots given back in between wake it.
            freed.as_mut().enable();
            {
                let mut state = self.chan.queue().state.lock();
                if state.closed {
                    return Err(());
                }
                if state.free > 0 {
                    state.free -= 1;
                    return Ok(());
                }
                state.room_wanted = true;
            }
            freed.await;
        }
    }

    /// Whether the receiver is gone (nothing queued will be taken any more).
    pub fn is_closed(&self) -> bool {
        self.chan.queue().state.lock().closed
    }

    /// Queues an item whose room was already taken.
    fn push(&self, item: T) -> Result<(), T> {
        let state = self.chan.queue().state.lock();
        if state.closed {
            return Err(item);
        }
        push_locked(state, item);
        Ok(())
    }
}

/// Queues an item under the queue's lock, then lets go of the lock and wakes the
/// receiver if it waits.
fn push_locked<T>(mut state: parking_lot::MutexGuard<'_, State<T>>, item: T) {
    if state.items.capacity() == 0 && state.burst > 1 {
        let presize = (state.burst as usize).min(MAX_PRESIZE);
        state.items.reserve_exact(presize);
    }
    state.items.push_back(item);
    // Most pushes find the receiver busy: nothing to take out of the field then.
    let receiver = if matches!(state.receiver, Waiting::Nobody) {
        Waiting::Nobody
    } else {
        std::mem::take(&mut state.receiver)
    };
    drop(state);
    receiver.wake();
}

/// Gives `slots` back to the queue and wakes the senders waiting for room, if any.
fn give_back<T, H: Holder<T>>(holder: &H, slots: usize) {
    let mut state = holder.queue().state.lock();
    state.free = state.free.saturating_add(slots_u32(slots));
    let wanted = std::mem::take(&mut state.room_wanted);
    drop(state);
    if wanted {
        holder.room().notify_waiters();
    }
}

/// Room for one item, taken in advance; given back if dropped unused.
pub(crate) struct OwnedPermit<T, H: Holder<T>> {
    sender: Option<Sender<T, H>>,
}

impl<T, H: Holder<T>> std::fmt::Debug for OwnedPermit<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("unused", &self.sender.is_some())
            .finish()
    }
}

impl<T, H: Holder<T>> OwnedPermit<T, H> {
    /// Queues the item without waiting (it is dropped if the receiver is gone).
    pub fn send(mut self, item: T) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.push(item);
        }
    }
}

impl<T, H: Holder<T>> Drop for OwnedPermit<T, H> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            give_back(&*sender.chan, 1);
        }
    }
}

pub(crate) struct Receiver<T, H: Holder<T>> {
    chan: Arc<H>,
    /// Items taken from the queue in one go and not handed out yet. They keep their
    /// slots: the queue and the hand together never hold more than the capacity.
    hand: VecDeque<T>,
    /// Items handed out whose slots were not given back yet (see [`Receiver::settle`]).
    unsettled: usize,
    /// Dropping it closes the queue: false only for what is left of it once it parked.
    closes: bool,
}

impl<T, H: Holder<T>> std::fmt::Debug for Receiver<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("chan", self.chan.queue())
            .field("in_hand", &self.hand.len())
            .field("unsettled", &self.unsettled)
            .finish()
    }
}

impl<T, H: Holder<T>> Receiver<T, H> {
    /// What holds the queue.
    pub fn holder(&self) -> &Arc<H> {
        &self.chan
    }

    /// The next item; `None` once every sender is gone and the queue is empty. Its slot
    /// is given back at once, with those of items taken before.
    pub async fn recv(&mut self) -> Option<T> {
        let item = std::future::poll_fn(|cx| self.poll_recv(cx)).await;
        self.settle();
        item
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.take_from_hand() {
            return Poll::Ready(Some(item));
        }
        let mut state = lock_settled(&*self.chan, &mut self.unsettled);
        if !state.items.is_empty() {
            let short = take_all(&mut state, &mut self.hand);
            drop(state);
            drop(short);
            return Poll::Ready(self.take_from_hand());
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        // Drained, and about to wait: the storage of a burst is not kept for an idle
        // connection, neither in the queue nor in the hand.
        if state.items.capacity() > 0 {
            state.items = VecDeque::new();
        }
        if self.hand.capacity() > 0 {
            self.hand = VecDeque::new();
        }
        match &mut state.receiver {
            Waiting::Task(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Waiting::Task(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued, its slot given back at once.
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let item = self.try_take();
        self.settle();
        item
    }

    /// The next item if one is queued, without giving its slot back yet: the slots of
    /// the items taken are given back together by the next [`Receiver::settle`] (or the
    /// next time the hand is empty). For a receiver that drains a burst before acting.
    pub fn try_take(&mut self) -> Result<T, TryRecvError> {
        if let Some(item) = self.take_from_hand() {
            return Ok(item);
        }
        let mut state = lock_settled(&*self.chan, &mut self.unsettled);
        if state.items.is_empty() {
            return Err(if state.senders == 0 {
                TryRecvError::Disconnected
            } else {
                TryRecvError::Empty
            });
        }
        let short = take_all(&mut state, &mut self.hand);
        drop(state);
        drop(short);
        self.take_from_hand().ok_or(TryRecvError::Empty)
    }

    /// Hands the items at the front of the hand to `take` for as long as it accepts
    /// them (an accepted item then goes to `taken`, its slot given back by the next
    /// [`Receiver::settle`]); stops at the first it refuses or when the hand is empty.
    /// For a receiver that handles a run of items of one kind without taking each out.
    pub fn take_while_in_hand(
        &mut self,
        mut take: impl FnMut(&T) -> bool,
        mut taken: impl FnMut(T),
    ) {
        while let Some(item) = self.hand.front() {
            if !take(item) {
                break;
            }
            if let Some(item) = self.hand.pop_front() {
                taken(item);
            }
            self.unsettled += 1;
        }
    }

    fn take_from_hand(&mut self) -> Option<T> {
        let item = self.hand.pop_front()?;
        self.unsettled += 1;
        Some(item)
    }

    /// Gives back the slots of the items taken since the last time.
    pub fn settle(&mut self) {
        if self.unsettled > 0 {
            give_back(&*self.chan, self.unsettled);
            self.unsettled = 0;
        }
    }

    /// Leaves the queue while it is empty: `resume` gets the receiver back when an
    /// item is queued or the last sender goes, or at once if one of those happened.
    pub fn park(mut self, resume: impl FnOnce(Receiver<T, H>) + Send + 'static)
    where
        T: Send + 'static,
        H: 'static,
    {
        self.settle();
        let chan = self.chan.clone();
        let mut state = chan.queue().state.lock();
        if state.items.is_empty() && self.hand.is_empty() && state.senders > 0 {
            state.items = VecDeque::new();
            self.hand = VecDeque::new();
            // A waker left is the parking task's: it must not keep that task's memory.
            // Only the channel is kept (a parked connection keeps this for as long as
            // it is idle): the hand is empty and everything settled, so the receiver
            // is made again around it.
            let kept = self.chan.clone();
            self.closes = false;
            state.receiver = Waiting::Parked(Box::new(move || {
                resume(Receiver {
                    chan: kept,
                    hand: VecDeque::new(),
                    unsettled: 0,
                    closes: true,
                });
            }));
            return;
        }
        drop(state);
        resume(self);
    }

    /// Slots of item storage the queue holds (for tests of idle memory).
    #[cfg(test)]
    pub fn allocated_slots(&self) -> usize {
        self.chan.queue().state.lock().items.capacity() + self.hand.capacity()
    }
}

/// Moves everything queued into the receiver's empty `hand`, in one go: the queue keeps
/// the hand's empty storage if it could hold a burst like the last ones, and otherwise starts
/// from nothing, to be given room for such a burst at once by the next push (rather than
/// growing by doublings, each a copy of everything queued). Returns the storage let go
/// of, to be freed once the lock is.
fn take_all<T>(state: &mut State<T>, hand: &mut VecDeque<T>) -> VecDeque<T> {
    std::mem::swap(&mut state.items, hand);
    state.burst = slots_u32(hand.len()).max(state.burst - state.burst / 4);
    if state.items.capacity() < (state.burst as usize).min(MAX_PRESIZE) {
        std::mem::take(&mut state.items)
    } else {
        VecDeque::new()
    }
}

/// The queue's state, locked, with the slots of `unsettled` items given back under the
/// same lock (the senders waiting for room are woken once it is let go of).
fn lock_settled<'a, T, H: Holder<T>>(holder: &'a H, unsettled: &mut usize) -> SettledGuard<'a, T> {
    let mut state = holder.queue().state.lock();
    let mut wake = false;
    if *unsettled > 0 {
        state.free = state
            .free
            .saturating_add(slots_u32(std::mem::take(unsettled)));
        wake = std::mem::take(&mut state.room_wanted);
    }
    SettledGuard {
        state: Some(state),
        room: wake.then_some(holder.room()),
    }
}

/// The queue's state locked by the receiver, which wakes the senders waiting for room
/// once the lock is let go of, if it gave slots back.
struct SettledGuard<'a, T> {
    state: Option<parking_lot::MutexGuard<'a, State<T>>>,
    room: Option<&'a Notify>,
}

impl<T> std::ops::Deref for SettledGuard<'_, T> {
    type Target = State<T>;
    fn deref(&self) -> &State<T> {
        self.state.as_deref().expect("locked until dropped")
    }
}

impl<T> std::ops::DerefMut for SettledGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        self.state.as_deref_mut().expect("locked until dropped")
    }
}

impl<T> Drop for SettledGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.state.take());
        if let Some(room) = self.room {
            room.notify_waiters();
        }
    }
}

impl<T, H: Holder<T>> Drop for Receiver<T, H> {
    fn drop(&mut self) {
        if !self.closes {
            return;
        }
        let mut state = self.chan.queue().state.lock();
        state.closed = true;
        let items = std::mem::take(&mut state.items);
        drop(state);
        // Senders waiting for room see the queue closed.
        self.chan.room().notify_waiters();
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

    /// Slots given back by a receiver taking its next burst (which settles under the
    /// lock it takes anyway) or by a permit dropped unused wake a sender waiting for
    /// room.
    #[tokio::test]
    async fn a_waiting_sender_gets_room_from_a_settling_take_and_from_a_dropped_permit() {
        let (tx, mut rx) = channel::<u32>(1);
        tx.send(1).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(rx.try_take(), Ok(1));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "taken but not settled: no room yet");
        assert_eq!(rx.try_take(), Err(TryRecvError::Empty));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken by the take that settled")
            .unwrap()
            .unwrap();
        assert_eq!(rx.try_recv(), Ok(2));

        let permit = tx.clone().reserve_owned().await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(3).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the permit holds the only slot");
        drop(permit);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken by the permit given back")
            .unwrap()
            .unwrap();
        assert_eq!(rx.try_recv(), Ok(3));
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

    /// Items taken in one go keep their slots while in the receiver's hand, and those
    /// handed out give theirs back together: the queue never holds more than its
    /// capacity, and a receiver that settles frees the room of everything it took.
    #[test]
    fn items_taken_in_one_go_give_their_slots_back_when_settled() {
        let (tx, mut rx) = channel::<u32>(3);
        for item in 0..3 {
            tx.try_send(item).map_err(|_| "full").unwrap();
        }
        assert_eq!(rx.try_take(), Ok(0));
        assert!(
            matches!(tx.try_send(9), Err(TrySendError::Full(9))),
            "an item handed out keeps its slot until settled"
        );
        rx.settle();
        tx.try_send(3).map_err(|_| "full").unwrap();
        assert!(
            matches!(tx.try_send(9), Err(TrySendError::Full(9))),
            "the items still in hand keep theirs"
        );
        assert_eq!(rx.try_take(), Ok(1));
        assert_eq!(rx.try_take(), Ok(2));
        // The hand is empty: taking more settles what it handed out.
        assert_eq!(rx.try_take(), Ok(3));
        tx.try_send(4).map_err(|_| "full").unwrap();
        tx.try_send(5).map_err(|_| "full").unwrap();
        assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
        rx.settle();
        tx.try_send(6).map_err(|_| "full").unwrap();
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(rx.try_recv(), Ok(5));
        assert_eq!(rx.try_recv(), Ok(6));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    /// A parked receiver, handed back by whatever resumes it.
    fn park_into(
        rx: Receiver<u32, Alone<u32>>,
    ) -> std::sync::mpsc::Receiver<Receiver<u32, Alone<u32>>> {
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
