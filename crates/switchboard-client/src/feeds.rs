//! The two feeds of unsolicited pushes: the group feed (messages posted to groups this
//! session belongs to, and member joins and leaves) and the direct feed (bodies other
//! clients relayed to this one).
//!
//! Unlike subscriptions, feeds never slow the connection down: anyone may post to a group
//! or relay to a client, so a consumer that does not keep up must not stall the replies
//! to its own requests. Each feed is a bounded queue that drops its oldest item when full
//! and counts the drops. It fills from the moment the session opens, so nothing is lost
//! between connecting and taking the feed (up to its capacity).
//!
//! Each feed has one consumer at a time: taking it while another handle holds it is an
//! error (of kind [`crate::ErrorKind::FeedTaken`]); once that handle is dropped it can be taken again,
//! and the new handle sees what was queued meanwhile.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures::Stream;
use switchboard_proto::packet::Event;

use crate::client::Client;
use crate::error::{ErrorDetail, Result};
use crate::payload::{ReceivedDirect, ReceivedMessage};
use crate::shared::lock;

/// An item of the group feed.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use futures::StreamExt;
/// use switchboard_client::{EventKind, GroupItem};
///
/// let mut feed = client.group_feed()?;
/// while let Some(item) = feed.next().await {
///     match item {
///         GroupItem::Message(message) => {
///             println!("[{}] {}: {:?}", message.channel(), message.sender_name(), message.text());
///         }
///         GroupItem::Event(event) if event.kind == EventKind::MemberJoined => {
///             println!("{} joined {}", event.subject, event.channel);
///         }
///         GroupItem::Event(event) => println!("{:?} in {}", event.kind, event.channel),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupItem {
    /// A message posted to a group this session is a member of.
    Message(ReceivedMessage),
    /// A member joined or left a group, or another group event.
    Event(Event),
}

/// A bounded queue that drops its oldest item rather than wait, with one consumer.
pub(crate) struct FeedQueue<T> {
    name: &'static str,
    state: Mutex<FeedState<T>>,
}

struct FeedState<T> {
    items: VecDeque<T>,
    capacity: usize,
    dropped: u64,
    closed: bool,
    taken: bool,
    waker: Option<Waker>,
}

impl<T> FeedQueue<T> {
    pub(crate) fn new(name: &'static str, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FeedQueue {
            name,
            state: Mutex::new(FeedState {
                items: VecDeque::new(),
                capacity,
                dropped: 0,
                closed: false,
                taken: false,
                waker: None,
            }),
        }
    }

    /// Queues `item`, dropping the oldest one if the queue is full. Never waits.
    pub(crate) fn push(&self, item: T) {
        let waker = {
            let mut state = lock(&self.state);
            if state.closed {
                return;
            }
            if state.items.len() >= state.capacity {
                state.items.pop_front();
                state.dropped += 1;
                if state.dropped.is_power_of_two() {
                    tracing::warn!(
                        feed = self.name,
                        dropped = state.dropped,
                        "feed is full; dropping its oldest items"
                    );
                }
            }
            state.items.push_back(item);
            state.waker.take()
        };
        // Woken outside the lock so the consumer can take it straight away.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next item, `None` once the connection ended and the queue is empty.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = lock(&self.state);
        if let Some(item) = state.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ends the feed: what is queued can still be read, nothing more arrives.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Claims the single consumer's place.
    pub(crate) fn take(&self) -> Result<()> {
        let mut state = lock(&self.state);
        if state.taken {
            return Err(ErrorDetail::FeedTaken(self.name).into());
        }
        state.taken = true;
        Ok(())
    }

    /// Gives the consumer's place back.
    pub(crate) fn release(&self) {
        let mut state = lock(&self.state);
        state.taken = false;
        state.waker = None;
    }

    /// Items dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).items.len()
    }
}

/// The group feed: a [`Stream`] of [`GroupItem`]s. See the module docs for its policy.
///
/// Holding it keeps the connection open, like any [`Client`] handle.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use futures::StreamExt;
/// use switchboard_client::GroupItem;
///
/// client.join_group("team").await?;
/// let mut feed = client.group_feed()?;
/// while let Some(item) = feed.next().await {
///     if let GroupItem::Message(message) = item {
///         println!("{}: {}", message.sender_name(), message.text().unwrap_or("<binary>"));
///     }
/// }
/// # Ok(()) }
/// ```
pub struct GroupFeed {
    client: Client,
}

impl GroupFeed {
    pub(crate) fn take(client: &Client) -> Result<GroupFeed> {
        client.shared().group_feed.take()?;
        Ok(GroupFeed {
            client: client.clone(),
        })
    }

    /// Items dropped because the feed was full, since the session opened.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut feed = client.group_feed()?;
    /// while let Some(item) = feed.next().await {
    ///     if feed.dropped() > 0 {
    ///         eprintln!("fell behind: {} group items lost so far", feed.dropped());
    ///     }
    ///     println!("{item:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn dropped(&self) -> u64 {
        self.client.shared().group_feed.dropped()
    }
}

impl Stream for GroupFeed {
    type Item = GroupItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GroupItem>> {
        self.client.shared().group_feed.poll_next(cx)
    }
}

impl Drop for GroupFeed {
    fn drop(&mut self) {
        self.client.shared().group_feed.release();
    }
}

impl std::fmt::Debug for GroupFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupFeed")
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// The direct feed: a [`Stream`] of bodies relayed to this client. See the module docs
/// for its policy.
///
/// Holding it keeps the connection open, like any [`Client`] handle.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use futures::StreamExt;
///
/// let mut directs = client.direct_feed()?;
/// while let Some(direct) = directs.next().await {
///     println!("from {}: {}", direct.sender_name(), direct.text().unwrap_or("<binary>"));
/// }
/// # Ok(()) }
/// ```
pub struct DirectFeed {
    client: Client,
}

impl DirectFeed {
    pub(crate) fn take(client: &Client) -> Result<DirectFeed> {
        client.shared().direct_feed.take()?;
        Ok(DirectFeed {
            client: client.clone(),
        })
    }

    /// Items dropped because the feed was full, since the session opened.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut directs = client.direct_feed()?;
    /// while let Some(direct) = directs.next().await {
    ///     println!("{:?}", direct.text());
    /// }
    /// // The connection ended: say whether anything was lost on the way.
    /// println!("{} direct bodies dropped", directs.dropped());
    /// # Ok(()) }
    /// ```
    pub fn dropped(&self) -> u64 {
        self.client.shared().direct_feed.dropped()
    }
}

impl Stream for DirectFeed {
    type Item = ReceivedDirect;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ReceivedDirect>> {
        self.client.shared().direct_feed.poll_next(cx)
    }
}

impl Drop for DirectFeed {
    fn drop(&mut self) {
        self.client.shared().direct_feed.release();
    }
}

impl std::fmt::Debug for DirectFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectFeed")
            .field("dropped", &self.dropped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;
    use crate::error::ClientError;

    fn next<T>(queue: &FeedQueue<T>) -> Poll<Option<T>> {
        queue.poll_next(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let queue = FeedQueue::new("test", 2);
        for item in 1..=5 {
            queue.push(item);
        }
        assert_eq!(queue.dropped(), 3);
        assert_eq!(next(&queue), Poll::Ready(Some(4)));
        assert_eq!(next(&queue), Poll::Ready(Some(5)));
        assert_eq!(next(&queue), Poll::Pending);
        queue.push(6);
        queue.close();
        queue.push(7);
        assert_eq!(next(&queue), Poll::Ready(Some(6)));
        assert_eq!(next(&queue), Poll::Ready(None));
    }

    #[test]
    fn one_consumer_at_a_time() {
        let queue = FeedQueue::<u8>::new("test", 2);
        assert!(queue.take().is_ok());
        assert!(matches!(
            queue.take().as_ref().map_err(ClientError::detail),
            Err(ErrorDetail::FeedTaken("test"))
        ));
        queue.release();
        assert!(queue.take().is_ok());
    }
}
