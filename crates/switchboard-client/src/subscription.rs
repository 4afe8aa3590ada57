//! Subscriptions: the client-side table that routes live messages to every matching
//! subscription, and [`Subscription`], the stream a caller reads.
//!
//! The server sends a live message once per connection even when several subscriptions
//! match, so the client does the fan-out itself, with the same matching rules as the
//! server ([`Pattern::matches_message`]). Replayed messages carry the request id of the
//! SUBSCRIBE that asked for them and go to that subscription alone.
//!
//! Backpressure: each subscription has a bounded queue. When it is full, the dispatch task
//! waits for the consumer instead of dropping messages. While it waits it reads nothing
//! else from the socket, so TCP backpressure reaches the server, whose slow-consumer
//! policy (disconnect, or drop the oldest and send a Skipped event) then applies. A
//! subscription that is never read therefore stalls its whole connection once its queue
//! is full: read it, or drop it (dropping unsubscribes).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::Stream;
use switchboard_proto::packet::{Message, SubscribeAck, Unsubscribe};
use switchboard_proto::subject::{Pattern, message_hashtags};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::{ClientError, CloseReason, Result};
use crate::payload::ReceivedMessage;

/// Why a subscription stopped receiving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The caller unsubscribed or dropped it.
    Unsubscribed,
    /// The server ended it (EVENT SubscriptionClosed).
    ClosedByServer,
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
    fn end_error(&self, subscription_id: u64) -> Option<ClientError> {
        match self.ended.get()? {
            EndReason::Unsubscribed | EndReason::Connection(CloseReason::Client) => None,
            EndReason::ClosedByServer => Some(ClientError::SubscriptionClosed { subscription_id }),
            EndReason::Connection(reason) => Some(ClientError::closed(reason.clone())),
        }
    }
}

/// A subscription the server acknowledged, as the dispatch task sees it.
pub(crate) struct SubscriptionEntry {
    pub pattern: Pattern,
    pub sender: mpsc::Sender<ReceivedMessage>,
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
        if let Some(previous) = self.entries.insert(subscription_id, entry) {
            // A server reusing a live id ends the old subscription rather than merging.
            self.forget_kind(&previous);
            previous.state.end(EndReason::ClosedByServer);
        }
        Ok(())
    }

    /// Removes a subscription.
    pub(crate) fn remove(&mut self, subscription_id: u64) -> Option<SubscriptionEntry> {
        let entry = self.entries.remove(&subscription_id)?;
        self.forget_kind(&entry);
        Some(entry)
    }

    fn forget_kind(&mut self, entry: &SubscriptionEntry) {
        if matches!(entry.pattern, Pattern::Tag(_)) {
            self.tag_patterns -= 1;
        }
    }

    /// The queue of one subscription.
    pub(crate) fn sender(&self, subscription_id: u64) -> Option<mpsc::Sender<ReceivedMessage>> {
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

    /// The subscriptions a live channel message goes to, each once.
    #[cfg(test)]
    pub(crate) fn matching(&self, message: &Message) -> Vec<(u64, mpsc::Sender<ReceivedMessage>)> {
        let mut targets = Vec::new();
        self.matching_into(message, &mut targets);
        targets
    }

    /// [`SubscriptionTable::matching`] into a list the caller reuses (no allocation per
    /// message). Hashtags are only looked for when some subscription is to a hashtag.
    pub(crate) fn matching_into(
        &self,
        message: &Message,
        targets: &mut Vec<(u64, mpsc::Sender<ReceivedMessage>)>,
    ) {
        let tags = if self.tag_patterns > 0 {
            message_tags(message)
        } else {
            Vec::new()
        };
        targets.extend(
            self.entries
                .iter()
                .filter(|(_, entry)| entry.pattern.matches_message(&message.channel, &tags))
                .map(|(id, entry)| (*id, entry.sender.clone())),
        );
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
        self.entries.drain().map(|(_, entry)| entry).collect()
    }
}

/// The hashtags of a message, by the rule the server routes with.
fn message_tags(message: &Message) -> Vec<String> {
    message_hashtags(&message.content_type, &message.body)
}

/// A live subscription: a [`Stream`] of the messages matching its pattern, replayed
/// history first (flag [`ReceivedMessage::is_replay`]), then live ones.
///
/// The stream ends when the subscription does. If the server or the connection ended it,
/// one `Err` says why before the end; after [`Subscription::unsubscribe`] or
/// [`crate::Client::close`] it just ends. Dropping it unsubscribes in the background.
/// Holding it keeps the connection open, like any [`Client`] handle.
pub struct Subscription {
    client: Client,
    subscription_id: u64,
    replay_count: u64,
    pattern: String,
    receiver: mpsc::Receiver<ReceivedMessage>,
    state: Arc<SubscriptionState>,
    end_reported: bool,
    active: bool,
}

impl Subscription {
    pub(crate) fn new(
        client: Client,
        ack: SubscribeAck,
        pattern: String,
        receiver: mpsc::Receiver<ReceivedMessage>,
        state: Arc<SubscriptionState>,
    ) -> Self {
        Subscription {
            client,
            subscription_id: ack.subscription_id,
            replay_count: ack.replay_count,
            pattern,
            receiver,
            state,
            end_reported: false,
            active: true,
        }
    }

    /// The id the server gave this subscription.
    pub fn subscription_id(&self) -> u64 {
        self.subscription_id
    }

    /// How many replayed messages come before live ones.
    pub fn replay_count(&self) -> u64 {
        self.replay_count
    }

    /// The pattern as given to [`crate::Client::subscribe`].
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Messages the server reported skipped for this subscription (slow consumer with
    /// drop-oldest policy).
    pub fn skipped(&self) -> u64 {
        self.state.skipped.load(Ordering::Relaxed)
    }

    /// Cancels the subscription and waits for the server to confirm. Messages still
    /// queued locally are discarded.
    pub async fn unsubscribe(mut self) -> Result<()> {
        self.active = false;
        // Stop accepting first: the dispatch task may be waiting on this very queue, and
        // the server's confirmation can only be read once it stops waiting.
        self.receiver.close();
        let removed = self
            .client
            .shared()
            .subscriptions()
            .remove(self.subscription_id);
        if let Some(entry) = removed {
            entry.state.end(EndReason::Unsubscribed);
        }
        let reply = self
            .client
            .call(Unsubscribe {
                subscription_id: self.subscription_id,
            })
            .await?;
        crate::client::expect_ok(&reply)
    }
}

impl Stream for Subscription {
    type Item = Result<ReceivedMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(message)) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(None) => {
                if !self.end_reported {
                    self.end_reported = true;
                    if let Some(error) = self.state.end_error(self.subscription_id) {
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.active {
            self.receiver.close();
            self.client.shared().drop_subscription(self.subscription_id);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("subscription_id", &self.subscription_id)
            .field("pattern", &self.pattern)
            .field("replay_count", &self.replay_count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pattern: &str) -> (SubscriptionEntry, mpsc::Receiver<ReceivedMessage>) {
        let (sender, receiver) = mpsc::channel(4);
        let entry = SubscriptionEntry {
            pattern: Pattern::parse(pattern).unwrap(),
            sender,
            state: Arc::default(),
        };
        (entry, receiver)
    }

    fn message(channel: &str, content_type: &str, body: &str) -> Message {
        Message {
            channel: channel.into(),
            content_type: content_type.into(),
            body: body.to_owned().into(),
            ..Message::default()
        }
    }

    fn matching_ids(table: &SubscriptionTable, message: &Message) -> Vec<u64> {
        let mut ids: Vec<u64> = table
            .matching(message)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
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
        assert!(state.end_error(1).is_none());
        state.end(EndReason::ClosedByServer);
        state.end(EndReason::Unsubscribed);
        assert!(matches!(
            state.end_error(9),
            Some(ClientError::SubscriptionClosed { subscription_id: 9 })
        ));
        let state = SubscriptionState::default();
        state.end(EndReason::Connection(CloseReason::Client));
        assert!(state.end_error(1).is_none());
        let state = SubscriptionState::default();
        state.end(EndReason::Connection(CloseReason::Eof));
        assert!(matches!(
            state.end_error(1),
            Some(ClientError::ConnectionClosed {
                reason: CloseReason::Eof
            })
        ));
    }
}
