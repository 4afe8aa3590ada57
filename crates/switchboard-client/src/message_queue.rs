//! The bounded queue between the dispatch task and one [`crate::Subscription`].
//!
//! The dispatch task adds messages one at a time under a short lock; the subscription
//! takes every message queued at once, under the same lock, and then hands them out
//! from its own hand without locking, so a burst costs the reader one lock and at most
//! one wake-up rather than one of each per message. A message counts against the
//! capacity until the reader has handed it out, as in a channel: a reader that takes
//! nothing holds the dispatch task back after `capacity` messages, and the senders are
//! woken when the reader comes back for more.
//!
//! Ends as a channel does: closing the receiver (or dropping it) refuses what is sent
//! after, and the receiver sees the end once the last sender is gone and the queue is
//! drained.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::mpsc::error::TrySendError;

use crate::shared::lock;

struct State<T> {
    queued: VecDeque<T>,
    /// Messages the receiver took and has not handed out yet.
    in_hand: usize,
    /// The receiver, waiting for a message.
    receiver_waiting: Option<Waker>,
    senders: usize,
    closed: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Wakes senders waiting for room.
    room: Notify,
}

/// A bounded queue of at most `capacity` messages (at least 1).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            queued: VecDeque::new(),
            in_hand: 0,
            receiver_waiting: None,
            senders: 1,
            closed: false,
        }),
        capacity: capacity.max(1),
        room: Notify::new(),
    });
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver {
            inner,
            hand: VecDeque::new(),
        },
    )
}

/// The dispatch task's end of the queue.
pub(crate) struct Sender<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        lock(&self.inner.state).senders += 1;
        Sender {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        state.senders -= 1;
        let waiting = if state.senders == 0 {
            state.receiver_waiting.take()
        } else {
            None
        };
        drop(state);
        if let Some(receiver) = waiting {
            receiver.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Queues `message` if there is room.
    pub(crate) fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        let mut state = lock(&self.inner.state);
        if state.closed {
            return Err(TrySendError::Closed(message));
        }
        if state.queued.len() + state.in_hand >= self.inner.capacity {
            return Err(TrySendError::Full(message));
        }
        state.queued.push_back(message);
        let waiting = state.receiver_waiting.take();
        drop(state);
        if let Some(receiver) = waiting {
            receiver.wake();
        }
        Ok(())
    }

    /// Queues `message`, waiting for room; gives it back if the receiver is gone.
    pub(crate) async fn send(&self, mut message: T) -> Result<(), T> {
        loop {
            // Enabled before trying, so that room made in between is not missed.
            let room = self.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(message) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                Err(TrySendError::Full(back)) => message = back,
            }
            room.await;
        }
    }

    /// Whether both senders feed the same queue.
    pub(crate) fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The subscription's end of the queue.
pub(crate) struct Receiver<T> {
    inner: Arc<Inner<T>>,
    /// Messages taken from the queue, handed out from here.
    hand: VecDeque<T>,
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Receiver<T> {
    /// The next message, or `None` once the queue is closed or every sender is gone,
    /// and drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(message) = self.hand.pop_front() {
            return Poll::Ready(Some(message));
        }
        let mut state = lock(&self.inner.state);
        let freed = std::mem::take(&mut state.in_hand) > 0;
        std::mem::swap(&mut state.queued, &mut self.hand);
        state.in_hand = self.hand.len();
        let ended = state.closed || state.senders == 0;
        if self.hand.is_empty() && !ended {
            state.receiver_waiting = Some(cx.waker().clone());
        }
        drop(state);
        if freed {
            self.inner.room.notify_waiters();
        }
        match self.hand.pop_front() {
            Some(message) => Poll::Ready(Some(message)),
            None if ended => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// The next message, if one is queued now.
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Result<T, tokio::sync::mpsc::error::TryRecvError> {
        use tokio::sync::mpsc::error::TryRecvError;
        let waker = futures::task::noop_waker();
        match self.poll_recv(&mut Context::from_waker(&waker)) {
            Poll::Ready(Some(message)) => Ok(message),
            Poll::Ready(None) => Err(TryRecvError::Disconnected),
            Poll::Pending => Err(TryRecvError::Empty),
        }
    }

    /// The next message, waiting for one.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Refuses further messages (those queued can still be received) and wakes senders
    /// waiting for room, which then find the queue closed.
    pub(crate) fn close(&mut self) {
        lock(&self.inner.state).closed = true;
        self.inner.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn messages_come_out_in_order_and_the_end_after_the_last_sender() {
        let (sender, mut receiver) = channel(8);
        for n in 0..5 {
            sender.try_send(n).unwrap();
        }
        let second = sender.clone();
        assert!(second.same_channel(&sender));
        drop(sender);
        assert_eq!(receiver.try_recv(), Ok(0));
        second.try_send(5).unwrap();
        drop(second);
        let rest: Vec<i32> = std::iter::from_fn(|| receiver.try_recv().ok()).collect();
        assert_eq!(rest, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn messages_in_the_readers_hand_count_until_handed_out() {
        let (sender, mut receiver) = channel(3);
        for n in 0..3 {
            sender.try_send(n).unwrap();
        }
        assert!(matches!(sender.try_send(3), Err(TrySendError::Full(3))));
        // Taking the batch does not make room: the messages are not handed out yet.
        assert_eq!(receiver.try_recv(), Ok(0));
        assert!(matches!(sender.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(receiver.try_recv(), Ok(2));
        // Coming back for more gives the room back.
        assert!(receiver.try_recv().is_err());
        for n in 3..6 {
            sender.try_send(n).unwrap();
        }
        assert!(matches!(sender.try_send(6), Err(TrySendError::Full(6))));
    }

    #[tokio::test]
    async fn a_waiting_sender_goes_on_once_the_reader_reads() {
        let (sender, mut receiver) = channel(1);
        sender.try_send(0).unwrap();
        let waiting = tokio::spawn(async move { sender.send(1).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(receiver.recv().await, Some(0));
        assert_eq!(receiver.recv().await, Some(1));
        assert!(waiting.await.unwrap());
        assert_eq!(receiver.recv().await, None);
    }

    #[tokio::test]
    async fn closing_the_receiver_refuses_and_releases_a_waiting_sender() {
        let (sender, mut receiver) = channel(1);
        sender.try_send(0).unwrap();
        let waiting = tokio::spawn(async move {
            let refused = sender.send(1).await.is_err();
            (refused, sender.try_send(2).is_err())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        receiver.close();
        assert_eq!(waiting.await.unwrap(), (true, true));
        assert_eq!(receiver.recv().await, Some(0));
        assert_eq!(receiver.recv().await, None);
    }
}
