//! Subscriptions: the client-side table that routes live messages to every matching
//! subscription, and [`Subscription`], the stream a caller reads.
//!
//! The server sends a live message once per connection even when several subscriptions
//! match, so the client does the fan-out itself, with the same matching rules as the
//! server ([`Pattern::matches_message`]). Replayed messages carry the request id of the
//! SUBSCRIBE that asked for them and go to that subscription alone.
//!
//! One [`Subscription`] is one consumer, however many patterns it has: the server holds
//! one subscription per pattern, and every one of them feeds the consumer's single queue
//! (the table's entries share its sender and its [`SubscriptionState`]). A live message
//! matching several of its patterns is queued once, since the fan-out skips a queue it
//! already chose for that message. Replays can overlap too (the last messages of a
//! channel and of a hashtag in it), and a message can arrive live through one pattern
//! before the replay of the next pattern also holds it; the consumer therefore remembers
//! the ids it has handed out until every replay is complete, and drops repeats. After
//! that, the server's own rule (a message is in a subscription's replay or routed to it
//! live, never both) leaves nothing to repeat, so the memory is released.
//!
//! Backpressure: each subscription has a bounded queue. When it is full, the dispatch task
//! waits for the consumer instead of dropping messages. While it waits it reads nothing
//! else from the socket, so TCP backpressure reaches the server, whose slow-consumer
//! policy (disconnect, or drop the oldest and send a Skipped event) then applies. A
//! subscription that is never read therefore stalls its whole connection once its queue
//! is full: read it, or drop it (dropping unsubscribes).

use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use crate::message_queue;
use futures::Stream;
use switchboard_proto::packet::{Replay, SubscribeAck, Unsubscribe};
use switchboard_proto::subject::{Pattern, message_hashtags};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{ClientError, CloseReason, ErrorDetail, Result};
use crate::payload::{MessageNames, ReceivedMessage};

/// Why a subscription stopped receiving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The caller unsubscribed or dropped it.
    Unsubscribed,
    /// The server ended it, or one of its patterns (EVENT SubscriptionClosed).
    ClosedByServer { subscription_id: u64 },
    /// A reload of the server's permissions no longer allows one of its patterns
    /// (EVENT SubscriptionRevoked).
    Revoked {
        subscription_id: u64,
        pattern: String,
    },
    /// The channel one of its patterns names exactly was deleted (EVENT ChannelDeleted).
    ChannelDeleted { channel: String },
    /// The connection ended.
    Connection(CloseReason),
}

/// What the dispatch task and the [`Subscription`] handle both know about one
/// subscription.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionState {
    ended: OnceLock<EndReason>,
    skipped: AtomicU64,
}

impl SubscriptionState {
    /// Records why the subscription ended; the first reason is kept.
    pub(crate) fn end(&self, reason: EndReason) {
        let _ = self.ended.set(reason);
    }

    pub(crate) fn add_skipped(&self, count: u64) {
        self.skipped.fetch_add(count, Ordering::Relaxed);
    }

    /// The error a reader should see once the queue is drained, if the end was not its
    /// own doing.
    fn end_error(&self) -> Option<ClientError> {
        match self.ended.get()? {
            EndReason::Unsubscribed | EndReason::Connection(CloseReason::Client) => None,
            EndReason::ClosedByServer { subscription_id } => Some(
                ErrorDetail::SubscriptionClosed {
                    subscription_id: *subscription_id,
                }
                .into(),
            ),
            EndReason::Revoked {
                subscription_id,
                pattern,
            } => Some(
                ErrorDetail::SubscriptionRevoked {
                    subscription_id: *subscription_id,
                    pattern: pattern.clone(),
                }
                .into(),
            ),
            EndReason::ChannelDeleted { channel } => Some(
                ErrorDetail::ChannelDeleted {
                    channel: channel.clone(),
                }
                .into(),
            ),
            EndReason::Connection(reason) => Some(ClientError::closed(reason.clone())),
        }
    }
}

/// A subscription the server acknowledged, as the dispatch task sees it.
pub(crate) struct SubscriptionEntry {
    pub pattern: Pattern,
    pub sender: message_queue::Sender<ReceivedMessage>,
    pub state: Arc<SubscriptionState>,
}

/// The acknowledged subscriptions of a connection.
#[derive(Default)]
pub(crate) struct SubscriptionTable {
    entries: HashMap<u64, SubscriptionEntry>,
    /// How many entries are hashtag patterns: hashtags are only extracted from a body if
    /// some subscription can use them.
    tag_patterns: usize,
    closed: bool,
    /// Where the last live message that had exactly one consumer went, by the names it
    /// carried: while the reader hands out the same shared names (one publisher on one
    /// channel) and no entry has come or gone, the next one goes there without its
    /// channel being matched against every pattern again.
    last_single: Option<LastSingle>,
}

struct LastSingle {
    names: Arc<MessageNames>,
    subscription_id: u64,
    sender: message_queue::Sender<ReceivedMessage>,
}

impl SubscriptionTable {
    /// Adds an acknowledged subscription; hands it back if the connection is gone.
    pub(crate) fn insert(
        &mut self,
        subscription_id: u64,
        entry: SubscriptionEntry,
    ) -> std::result::Result<(), SubscriptionEntry> {
        if self.closed {
            return Err(entry);
        }
        if matches!(entry.pattern, Pattern::Tag(_)) {
            self.tag_patterns += 1;
        }
        self.last_single = None;
        if let Some(previous) = self.entries.insert(subscription_id, entry) {
            // A server reusing a live id ends the old subscription rather than merging.
            self.forget_kind(&previous);
            previous
                .state
                .end(EndReason::ClosedByServer { subscription_id });
        }
        Ok(())
    }

    /// Removes a subscription.
    pub(crate) fn remove(&mut self, subscription_id: u64) -> Option<SubscriptionEntry> {
        let entry = self.entries.remove(&subscription_id)?;
        self.last_single = None;
        self.forget_kind(&entry);
        Some(entry)
    }

    fn forget_kind(&mut self, entry: &SubscriptionEntry) {
        if matches!(entry.pattern, Pattern::Tag(_)) {
            self.tag_patterns -= 1;
        }
    }

    /// The queue of one subscription.
    pub(crate) fn sender(
        &self,
        subscription_id: u64,
    ) -> Option<message_queue::Sender<ReceivedMessage>> {
        self.entries
            .get(&subscription_id)
            .map(|entry| entry.sender.clone())
    }

    /// The shared state of one subscription.
    pub(crate) fn state(&self, subscription_id: u64) -> Option<Arc<SubscriptionState>> {
        self.entries
            .get(&subscription_id)
            .map(|entry| entry.state.clone())
    }

    /// The subscriptions a live channel message goes to: one per consumer.
    #[cfg(test)]
    pub(crate) fn matching(
        &self,
        message: &ReceivedMessage,
    ) -> Vec<(u64, message_queue::Sender<ReceivedMessage>)> {
        let mut targets = Vec::new();
        self.matching_into(message, &mut targets);
        targets
    }

    /// The subscriptions a live message goes to (one per consumer) into a list the caller reuses (no allocation per
    /// message). Hashtags are only looked for when some subscription is to a hashtag.
    pub(crate) fn matching_into(
        &self,
        message: &ReceivedMessage,
        targets: &mut Vec<(u64, message_queue::Sender<ReceivedMessage>)>,
    ) {
        let tags = if self.tag_patterns > 0 {
            message_tags(message)
        } else {
            Vec::new()
        };
        for (id, entry) in &self.entries {
            if !entry.pattern.matches_message(message.channel(), &tags) {
                continue;
            }
            // A consumer with several matching patterns gets the message once.
            if targets
                .iter()
                .any(|(_, sender)| sender.same_channel(&entry.sender))
            {
                continue;
            }
            targets.push((*id, entry.sender.clone()));
        }
    }

    /// The one subscription a live message goes to, if exactly one matches it (the
    /// common case, which needs no list of targets and no clone of a sender).
    pub(crate) fn single_match(
        &mut self,
        message: &ReceivedMessage,
    ) -> Option<(u64, &message_queue::Sender<ReceivedMessage>)> {
        if self.tag_patterns > 0 {
            // Hashtags depend on the body, not only on the names: match every time.
            let tags = message_tags(message);
            let (id, entry) = self.only_match(message, &tags)?;
            return Some((id, &entry.sender));
        }
        let names = message.shared_names();
        let known = self
            .last_single
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(&last.names, names));
        if !known {
            let (subscription_id, entry) = self.only_match(message, &[])?;
            let sender = entry.sender.clone();
            self.last_single = Some(LastSingle {
                names: names.clone(),
                subscription_id,
                sender,
            });
        }
        let last = self.last_single.as_ref()?;
        Some((last.subscription_id, &last.sender))
    }

    /// The one entry whose pattern matches `message`, if exactly one does.
    fn only_match(
        &self,
        message: &ReceivedMessage,
        tags: &[String],
    ) -> Option<(u64, &SubscriptionEntry)> {
        let mut matching = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.pattern.matches_message(message.channel(), tags));
        let (id, entry) = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        Some((*id, entry))
    }

    /// The subscriptions whose pattern is exactly `channel`.
    pub(crate) fn exact_on(&self, channel: &str) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, entry)| matches!(&entry.pattern, Pattern::Exact(name) if name == channel))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Removes every other subscription of the consumer that `state` belongs to, and
    /// returns their ids.
    pub(crate) fn remove_siblings(&mut self, state: &Arc<SubscriptionState>) -> Vec<u64> {
        let siblings: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, entry)| Arc::ptr_eq(&entry.state, state))
            .map(|(id, _)| *id)
            .collect();
        for id in &siblings {
            self.remove(*id);
        }
        siblings
    }

    /// Number of subscriptions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Refuses further subscriptions and hands back the current ones, to be ended.
    pub(crate) fn close(&mut self, _reason: &CloseReason) -> Vec<SubscriptionEntry> {
        self.closed = true;
        self.tag_patterns = 0;
        self.last_single = None;
        self.entries.drain().map(|(_, entry)| entry).collect()
    }
}

/// The hashtags of a message, by the rule the server routes with.
fn message_tags(message: &ReceivedMessage) -> Vec<String> {
    message_hashtags(message.content_type(), message.body())
}

/// A subscription being set up: [`crate::Client::subscribe`] returns it, and awaiting it
/// sends the request and yields the [`Subscription`].
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use switchboard_client::Replay;
///
/// let builder = client.subscribe("orders.*", Replay::Last(50)).pattern("#urgent");
/// // Nothing is sent until it is awaited.
/// let orders = builder.await?;
/// println!("subscribed to {:?}", orders.patterns());
/// # Ok(()) }
/// ```
#[must_use = "a subscription is only requested when awaited"]
#[derive(Debug)]
pub struct SubscribeBuilder<'a> {
    client: &'a Client,
    patterns: Vec<String>,
    replay: Replay,
}

impl<'a> SubscribeBuilder<'a> {
    pub(crate) fn new(client: &'a Client, pattern: &str, replay: Replay) -> Self {
        SubscribeBuilder {
            client,
            patterns: vec![pattern.to_owned()],
            replay,
        }
    }

    /// Adds a pattern to the same subscription: a message matching several of them is
    /// still received once. A pattern given twice counts once.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Replay;
    ///
    /// let news = client.subscribe("news.>", Replay::None).pattern("#breaking").await?;
    /// assert_eq!(news.patterns(), ["news.>", "#breaking"]);
    /// # Ok(()) }
    /// ```
    pub fn pattern(mut self, pattern: &str) -> Self {
        if !self.patterns.iter().any(|known| known == pattern) {
            self.patterns.push(pattern.to_owned());
        }
        self
    }
}

impl<'a> IntoFuture for SubscribeBuilder<'a> {
    type Output = Result<Subscription>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Subscription>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.client.subscribe_patterns(self.patterns, self.replay))
    }
}

/// A live subscription: a [`Stream`] of the messages matching any of its patterns,
/// replayed history first (flag [`ReceivedMessage::is_replay`]), then live ones.
///
/// It is one consumer: a message matching several of its patterns arrives once, in the
/// order the server sent it, and a message found by the replays of two patterns is
/// handed out once too (see [`crate::Client::subscribe`]). Separate subscriptions, on the
/// other hand, each receive every message that matches them.
///
/// The stream ends when the subscription does. If the server or the connection ended it,
/// one `Err` says why before the end (of kind [`crate::ErrorKind::SubscriptionRevoked`]
/// when a reload of the server's permissions no longer allows it); after [`Subscription::unsubscribe`] or
/// [`crate::Client::close`] it just ends. Dropping it unsubscribes in the background.
/// Holding it keeps the connection open, like any [`Client`] handle.
///
/// ```no_run
/// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
/// use switchboard_client::Replay;
/// use futures::StreamExt;
///
/// let mut alerts = client.subscribe("alerts.>", Replay::None).await?;
/// while let Some(message) = alerts.next().await {
///     match message {
///         Ok(message) => println!("{}: {:?}", message.channel(), message.text()),
///         // The server or the connection ended it; the stream ends next.
///         Err(error) => eprintln!("subscription ended: {error}"),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Subscription {
    client: Client,
    /// The server's id for each pattern, in the order of `patterns`.
    subscription_ids: Vec<u64>,
    replay_count: u64,
    patterns: Vec<String>,
    receiver: message_queue::Receiver<ReceivedMessage>,
    state: Arc<SubscriptionState>,
    /// Ids handed out while replays of several patterns may still repeat them.
    settling: Option<Settling>,
    end_reported: bool,
    active: bool,
}

/// What a consumer of several patterns remembers until their replays are complete.
struct Settling {
    seen: HashSet<Uuid>,
    replays_left: u64,
}

impl Subscription {
    /// A consumer with no pattern acknowledged yet; see [`Subscription::add`].
    pub(crate) fn new(
        client: Client,
        receiver: message_queue::Receiver<ReceivedMessage>,
        state: Arc<SubscriptionState>,
    ) -> Self {
        Subscription {
            client,
            subscription_ids: Vec::new(),
            replay_count: 0,
            patterns: Vec::new(),
            receiver,
            state,
            settling: None,
            end_reported: false,
            active: true,
        }
    }

    /// Adds a pattern the server acknowledged. Once a consumer has more than one, and
    /// some replay, repeats are looked for until the replays are complete.
    pub(crate) fn add(&mut self, ack: SubscribeAck, pattern: String) {
        self.subscription_ids.push(ack.subscription_id);
        self.patterns.push(pattern);
        self.replay_count += ack.replay_count;
        if self.patterns.len() > 1 && self.replay_count > 0 {
            let settling = self.settling.get_or_insert_with(|| Settling {
                seen: HashSet::new(),
                replays_left: 0,
            });
            settling.replays_left = self.replay_count;
        }
    }

    /// The ids the server gave this subscription, one per pattern.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Replay;
    ///
    /// let chat = client.subscribe("chat.*", Replay::None).pattern("#rust").await?;
    /// for (pattern, id) in chat.patterns().iter().zip(chat.subscription_ids()) {
    ///     println!("{pattern} is subscription {id} on the server");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscription_ids(&self) -> &[u64] {
        &self.subscription_ids
    }

    /// How many replayed messages the server announced, all patterns together (repeats
    /// among them are handed out once).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use futures::StreamExt;
    /// use switchboard_client::Replay;
    ///
    /// let mut chat = client.subscribe("chat.rust", Replay::Last(100)).await?;
    /// // One pattern, so no repeats: the first `replay_count` messages are the history.
    /// let replayed = chat.replay_count() as usize;
    /// let history: Vec<_> = chat.by_ref().take(replayed).collect().await;
    /// println!("caught up on {} messages", history.len());
    /// # Ok(()) }
    /// ```
    pub fn replay_count(&self) -> u64 {
        self.replay_count
    }

    /// The patterns, as given to [`crate::Client::subscribe`].
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Replay;
    ///
    /// let news = client.subscribe("news.>", Replay::None).pattern("#breaking").pattern("news.>").await?;
    /// // A pattern given twice counts once.
    /// assert_eq!(news.patterns(), ["news.>", "#breaking"]);
    /// # Ok(()) }
    /// ```
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Messages the server reported skipped for this subscription (slow consumer with
    /// drop-oldest policy).
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Replay;
    /// use futures::StreamExt;
    ///
    /// let mut ticks = client.subscribe("prices.>", Replay::None).await?;
    /// while let Some(message) = ticks.next().await {
    ///     let message = message?;
    ///     if ticks.skipped() > 0 {
    ///         eprintln!("too slow: {} ticks skipped so far", ticks.skipped());
    ///     }
    ///     println!("{:?}", message.text());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn skipped(&self) -> u64 {
        self.state.skipped.load(Ordering::Relaxed)
    }

    /// Cancels the subscription and waits for the server to confirm. Messages still
    /// queued locally are discarded.
    ///
    /// ```no_run
    /// # async fn demo(client: &switchboard_client::Client) -> switchboard_client::Result<()> {
    /// use switchboard_client::Replay;
    /// use futures::StreamExt;
    ///
    /// let mut chat = client.subscribe("chat.rust", Replay::None).await?;
    /// if let Some(first) = chat.next().await {
    ///     println!("first message: {:?}", first?.text());
    /// }
    /// chat.unsubscribe().await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(mut self) -> Result<()> {
        self.active = false;
        // Stop accepting first: the dispatch task may be waiting on this very queue, and
        // the server's confirmation can only be read once it stops waiting.
        self.receiver.close();
        {
            let mut table = self.client.shared().subscriptions();
            for id in &self.subscription_ids {
                if let Some(entry) = table.remove(*id) {
                    entry.state.end(EndReason::Unsubscribed);
                }
            }
        }
        for id in std::mem::take(&mut self.subscription_ids) {
            let reply = self
                .client
                .call(Unsubscribe {
                    subscription_id: id,
                })
                .await?;
            crate::client::expect_ok(&reply)?;
        }
        Ok(())
    }

    /// Whether `message` was already handed out (and, while replays may repeat
    /// messages, notes it as handed out).
    fn is_repeat(&mut self, message: &ReceivedMessage) -> bool {
        let Some(settling) = &mut self.settling else {
            return false;
        };
        let repeat = !settling.seen.insert(message.id());
        if message.is_replay() {
            settling.replays_left = settling.replays_left.saturating_sub(1);
            if settling.replays_left == 0 {
                self.settling = None;
            }
        }
        repeat
    }
}

impl Stream for Subscription {
    type Item = Result<ReceivedMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(message)) => {
                    if self.is_repeat(&message) {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(message)));
                }
                Poll::Ready(None) => {
                    if !self.end_reported {
                        self.end_reported = true;
                        if let Some(error) = self.state.end_error() {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.active {
            self.receiver.close();
            for id in &self.subscription_ids {
                self.client.shared().drop_subscription(*id);
            }
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("subscription_ids", &self.subscription_ids)
            .field("patterns", &self.patterns)
            .field("replay_count", &self.replay_count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::packet::Message;

    fn entry(pattern: &str) -> (SubscriptionEntry, message_queue::Receiver<ReceivedMessage>) {
        let (sender, receiver) = message_queue::channel(4);
        let entry = SubscriptionEntry {
            pattern: Pattern::parse(pattern).unwrap(),
            sender,
            state: Arc::default(),
        };
        (entry, receiver)
    }

    fn message(channel: &str, content_type: &str, body: &str) -> ReceivedMessage {
        let message = Message {
            channel: channel.into(),
            content_type: content_type.into(),
            body: body.to_owned().into(),
            ..Message::default()
        };
        ReceivedMessage::new(message, false)
    }

    fn matching_ids(table: &SubscriptionTable, message: &ReceivedMessage) -> Vec<u64> {
        let mut ids: Vec<u64> = table
            .matching(message)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn the_last_single_consumer_is_forgotten_when_an_entry_comes_or_goes() {
        use tokio::sync::mpsc::error::TryRecvError;

        let mut table = SubscriptionTable::default();
        let (wide, mut wide_receiver) = entry("chat.*");
        assert!(table.insert(1, wide).is_ok());
        let first = message("chat.rust", "text/plain", "one");
        // A clone shares the names, as the reader's messages do while they repeat.
        let again = first.clone();
        let single = |table: &mut SubscriptionTable| table.single_match(&again).map(|(id, _)| id);
        assert_eq!(table.single_match(&first).map(|(id, _)| id), Some(1));
        assert_eq!(single(&mut table), Some(1));
        drop(table.remove(1));
        // The removed subscription's queue has no sender left: what was remembered
        // went with its entry.
        assert!(matches!(
            wide_receiver.try_recv(),
            Err(TryRecvError::Disconnected)
        ));
        assert_eq!(single(&mut table), None);
        let (exact, _exact_receiver) = entry("chat.rust");
        assert!(table.insert(2, exact).is_ok());
        assert_eq!(single(&mut table), Some(2));
        let (deep, _deep_receiver) = entry("chat.>");
        assert!(table.insert(3, deep).is_ok());
        assert_eq!(single(&mut table), None, "two consumers match now");
        drop(table.remove(3));
        assert_eq!(single(&mut table), Some(2));
        table.close(&CloseReason::Client);
        assert_eq!(single(&mut table), None);
    }

    #[test]
    fn live_messages_go_to_each_matching_pattern_once() {
        let mut table = SubscriptionTable::default();
        let mut receivers = Vec::new();
        for (id, pattern) in [
            (1, "chat.rust"),
            (2, "chat.*"),
            (3, "chat.>"),
            (4, "news"),
            (5, "#rust"),
        ] {
            let (entry, receiver) = entry(pattern);
            assert!(table.insert(id, entry).is_ok());
            receivers.push(receiver);
        }
        let text = message("chat.rust", "text/plain; charset=utf-8", "hi #Rust");
        assert_eq!(matching_ids(&table, &text), [1, 2, 3, 5]);
        let deep = message("chat.rust.help", "text/plain", "no tags");
        assert_eq!(matching_ids(&table, &deep), [3]);
        // Hashtags only count in text bodies.
        let binary = message("news", "application/octet-stream", "#rust");
        assert_eq!(matching_ids(&table, &binary), [4]);
        let upper = message("elsewhere", "TEXT/markdown", "#rust");
        assert_eq!(matching_ids(&table, &upper), [5]);
    }

    #[test]
    fn tag_count_follows_inserts_and_removals() {
        let mut table = SubscriptionTable::default();
        let (tag, _tag_receiver) = entry("#rust");
        let (plain, _plain_receiver) = entry("chat");
        assert!(table.insert(1, tag).is_ok());
        assert!(table.insert(2, plain).is_ok());
        assert_eq!(table.tag_patterns, 1);
        assert!(table.remove(1).is_some());
        assert_eq!(table.tag_patterns, 0);
        assert!(table.remove(1).is_none());
        assert_eq!(table.len(), 1);
        let closed = table.close(&CloseReason::Eof);
        assert_eq!(closed.len(), 1);
        let (late, _late_receiver) = entry("chat");
        assert!(table.insert(3, late).is_err());
    }

    #[test]
    fn end_errors_say_who_ended_it() {
        let state = SubscriptionState::default();
        assert!(state.end_error().is_none());
        state.end(EndReason::ClosedByServer { subscription_id: 9 });
        state.end(EndReason::Unsubscribed);
        assert!(matches!(
            state.end_error().as_ref().map(ClientError::detail),
            Some(ErrorDetail::SubscriptionClosed { subscription_id: 9 })
        ));
        let state = SubscriptionState::default();
        state.end(EndReason::Revoked {
            subscription_id: 4,
            pattern: "news.>".into(),
        });
        let revoked = state.end_error().expect("a revocation is reported");
        assert_eq!(revoked.kind(), crate::ErrorKind::SubscriptionRevoked);
        assert!(
            revoked.to_string().contains("news.> was revoked"),
            "{revoked}"
        );
        let state = SubscriptionState::default();
        state.end(EndReason::Connection(CloseReason::Client));
        assert!(state.end_error().is_none());
        let state = SubscriptionState::default();
        state.end(EndReason::Connection(CloseReason::Eof));
        assert!(matches!(
            state.end_error().as_ref().map(ClientError::detail),
            Some(ErrorDetail::ConnectionClosed {
                reason: CloseReason::Eof
            })
        ));
    }
}
