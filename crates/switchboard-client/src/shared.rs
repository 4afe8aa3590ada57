//! State shared by the client handles, the dispatch (reader) task and the writer task:
//! requests in flight, subscriptions, feeds, small chores for the writer, and the end of
//! the connection.
//!
//! Every lock here is a plain mutex held for a few map operations and never across an
//! `.await`; the tasks copy out what they need (a channel sender, say) and then wait.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How many announced epoch changes a connection keeps.
pub const MAX_EPOCH_CHANGES: usize = 64;

/// A channel's (or group's) history that began a new epoch on a cluster: messages
/// before `first_seq` may be missing, and sequence numbers before it belong to another
/// series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochChange {
    /// A channel or a group.
    pub scope: switchboard_proto::packet::Scope,
    /// Its name.
    pub channel: String,
    /// The first sequence number of the new epoch.
    pub first_seq: u64,
}

use crate::error::{ClientError, CloseReason, ErrorDetail, Result};
use crate::feeds::{FeedQueue, GroupItem};
use crate::payload::ReceivedDirect;
use crate::requests::{NO_REPLY_BIT, Pending, RequestTable};
use crate::subscription::{EndReason, SubscriptionTable};

/// Locks `mutex`, carrying on if a thread panicked while holding it: every critical
/// section here leaves the data consistent at each step, so the poison flag adds nothing.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frames the writer owes the server that are not requests from the API: answers to the
/// server's heartbeats and cancellations of dropped subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Chores {
    /// The request id of a server HEARTBEAT still to be answered with PONG.
    pub pong: Option<u32>,
    /// Subscriptions dropped without `unsubscribe()`, to cancel on the server.
    pub unsubscribe: Vec<u64>,
}

/// Failures of publishes sent without reply, kept until the next flush.
#[derive(Debug, Default)]
struct NoReplyFailures {
    count: u64,
    first: Option<ClientError>,
}

/// The state of one connection, shared by its handles and tasks.
pub(crate) struct Shared {
    requests: Mutex<RequestTable>,
    subscriptions: Mutex<SubscriptionTable>,
    pub group_feed: FeedQueue<GroupItem>,
    pub direct_feed: FeedQueue<ReceivedDirect>,
    chores: Mutex<Chores>,
    /// Wakes the writer when a chore was added.
    pub chores_added: Notify,
    no_reply_failures: Mutex<NoReplyFailures>,
    next_no_reply_id: AtomicU32,
    /// Ids of the streams this client opens (streamed publishes), from 1.
    next_stream_id: AtomicU64,
    skipped: AtomicU64,
    /// The newest epoch changes the server announced (cluster mode), at most
    /// [`MAX_EPOCH_CHANGES`].
    epoch_changes: Mutex<std::collections::VecDeque<EpochChange>>,
    close_reason: OnceLock<CloseReason>,
    /// How far the connection is in closing, in the order the signals are given (see
    /// [`crate::Client::close`] and [`Shared::terminate`]); each is a cheap check for the
    /// dispatch task, which looks at `stop_tasks` between frames.
    ///
    /// [`crate::Client::close`] was called, before its flush: from now on the dispatch
    /// task no longer waits for unread streamed bodies (it ends them instead), so that
    /// the flush's answer can get through.
    pub close_started: CancellationToken,
    /// DISCONNECT is queued (or the connection is over): the server hanging up is now the
    /// expected end, not an error, and the tasks may take a short grace period to write
    /// what is queued.
    pub goodbye_sent: CancellationToken,
    /// The connection is over: both tasks stop at once.
    pub stop_tasks: CancellationToken,
}

impl Shared {
    pub(crate) fn new(feed_capacity: usize) -> Self {
        Shared {
            requests: Mutex::new(RequestTable::default()),
            subscriptions: Mutex::new(SubscriptionTable::default()),
            group_feed: FeedQueue::new("group", feed_capacity),
            direct_feed: FeedQueue::new("direct", feed_capacity),
            chores: Mutex::new(Chores::default()),
            chores_added: Notify::new(),
            no_reply_failures: Mutex::new(NoReplyFailures::default()),
            next_no_reply_id: AtomicU32::new(0),
            next_stream_id: AtomicU64::new(1),
            skipped: AtomicU64::new(0),
            epoch_changes: Mutex::default(),
            close_reason: OnceLock::new(),
            close_started: CancellationToken::new(),
            goodbye_sent: CancellationToken::new(),
            stop_tasks: CancellationToken::new(),
        }
    }

    /// The requests in flight.
    pub(crate) fn requests(&self) -> MutexGuard<'_, RequestTable> {
        lock(&self.requests)
    }

    /// The subscriptions the server acknowledged.
    pub(crate) fn subscriptions(&self) -> MutexGuard<'_, SubscriptionTable> {
        lock(&self.subscriptions)
    }

    /// Records a request and gives it an id.
    pub(crate) fn register(&self, pending: Pending) -> Result<u32> {
        self.requests().register(pending)
    }

    /// Forgets a request whose caller stopped waiting.
    pub(crate) fn forget(&self, request_id: u32) {
        self.requests().take(request_id);
    }

    /// A request id for a publish sent without reply.
    pub(crate) fn next_no_reply_id(&self) -> u32 {
        NO_REPLY_BIT | (self.next_no_reply_id.fetch_add(1, Ordering::Relaxed) & !NO_REPLY_BIT)
    }

    /// A fresh id for a stream this client opens: unique on the connection, since ids
    /// are never reused.
    pub(crate) fn next_stream_id(&self) -> u64 {
        self.next_stream_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Notes that a publish sent without reply failed.
    pub(crate) fn record_no_reply_failure(&self, error: ClientError) {
        tracing::warn!(%error, "publish sent without reply failed");
        let mut failures = lock(&self.no_reply_failures);
        failures.count += 1;
        if failures.first.is_none() {
            failures.first = Some(error);
        }
    }

    /// The failures of publishes sent without reply since the last call, as one error.
    pub(crate) fn take_no_reply_failures(&self) -> Option<ClientError> {
        let mut failures = lock(&self.no_reply_failures);
        let count = std::mem::take(&mut failures.count);
        failures
            .first
            .take()
            .map(|first| ErrorDetail::NoReplyFailures { count, first }.into())
    }

    /// Asks the writer to answer a server HEARTBEAT.
    pub(crate) fn owe_pong(&self, request_id: u32) {
        lock(&self.chores).pong = Some(request_id);
        self.chores_added.notify_one();
    }

    /// Asks the writer to cancel a subscription on the server, unless the connection is
    /// already gone (which cancels everything anyway).
    pub(crate) fn schedule_unsubscribe(&self, subscription_id: u64) {
        if self.is_closed() {
            return;
        }
        lock(&self.chores).unsubscribe.push(subscription_id);
        self.chores_added.notify_one();
    }

    /// The chores added since the last call.
    pub(crate) fn take_chores(&self) -> Chores {
        std::mem::take(&mut *lock(&self.chores))
    }

    /// Stops delivering to a subscription whose receiver is gone (with the other
    /// patterns of the same consumer), and cancels them on the server. Does nothing if it
    /// was already removed.
    pub(crate) fn drop_subscription(&self, subscription_id: u64) {
        let removed = {
            let mut table = self.subscriptions();
            table.remove(subscription_id).map(|entry| {
                entry.state.end(EndReason::Unsubscribed);
                table.remove_siblings(&entry.state)
            })
        };
        let Some(siblings) = removed else { return };
        self.schedule_unsubscribe(subscription_id);
        for sibling in siblings {
            self.schedule_unsubscribe(sibling);
        }
    }

    /// Keeps an EVENT `EPOCH_CHANGED`, dropping the oldest kept past the bound.
    pub(crate) fn note_epoch_change(&self, event: &switchboard_proto::packet::Event) {
        let mut changes = self
            .epoch_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if changes.len() == MAX_EPOCH_CHANGES {
            changes.pop_front();
        }
        changes.push_back(EpochChange {
            scope: event.scope,
            channel: event.channel.to_string(),
            first_seq: event.count,
        });
    }

    /// The epoch changes kept, oldest first.
    pub(crate) fn epoch_changes(&self) -> Vec<EpochChange> {
        let changes = self
            .epoch_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        changes.iter().cloned().collect()
    }

    /// Counts messages the server skipped for this connection.
    pub(crate) fn add_skipped(&self, count: u64) {
        self.skipped.fetch_add(count, Ordering::Relaxed);
    }

    /// Messages the server reported skipped for this connection.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Whether the connection is over.
    pub(crate) fn is_closed(&self) -> bool {
        self.close_reason.get().is_some()
    }

    /// Why the connection ended, once it has.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.get().cloned()
    }

    /// The error for a call that found the connection gone.
    pub(crate) fn closed_error(&self) -> ClientError {
        ClientError::closed(self.close_reason().unwrap_or(CloseReason::Client))
    }

    /// Ends the connection: the first reason given is kept; every request in flight fails
    /// with it, every subscription and feed ends, and both tasks stop.
    pub(crate) fn terminate(&self, reason: CloseReason) {
        let reason = self.close_reason.get_or_init(|| reason).clone();
        let pending = self.requests().close(&reason);
        for request in pending {
            request.fail(ClientError::closed(reason.clone()));
        }
        let subscriptions = self.subscriptions().close(&reason);
        for entry in subscriptions {
            // The reason is set before the sender is dropped, so the stream finds it as
            // soon as it sees the end.
            entry.state.end(EndReason::Connection(reason.clone()));
        }
        self.group_feed.close();
        self.direct_feed.close();
        self.goodbye_sent.cancel();
        self.stop_tasks.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_reply_ids_have_the_high_bit_and_wrap_inside_it() {
        let shared = Shared::new(4);
        assert_eq!(shared.next_no_reply_id(), NO_REPLY_BIT);
        assert_eq!(shared.next_no_reply_id(), NO_REPLY_BIT | 1);
        shared.next_no_reply_id.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(shared.next_no_reply_id(), u32::MAX);
        assert_eq!(shared.next_no_reply_id(), NO_REPLY_BIT);
    }

    #[test]
    fn no_reply_failures_are_reported_once() {
        let shared = Shared::new(4);
        assert!(shared.take_no_reply_failures().is_none());
        shared.record_no_reply_failure(ClientError::server(
            switchboard_proto::ErrorCode::TooLarge,
            "big",
        ));
        shared.record_no_reply_failure(ClientError::server(
            switchboard_proto::ErrorCode::Forbidden,
            "no",
        ));
        let failures = shared.take_no_reply_failures().expect("failures");
        match failures.detail() {
            ErrorDetail::NoReplyFailures { count: 2, first } => {
                assert_eq!(first.code(), Some(switchboard_proto::ErrorCode::TooLarge));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(shared.take_no_reply_failures().is_none());
    }

    #[test]
    fn the_first_close_reason_wins() {
        let shared = Shared::new(4);
        shared.terminate(CloseReason::HeartbeatTimeout);
        shared.terminate(CloseReason::Client);
        assert_eq!(shared.close_reason(), Some(CloseReason::HeartbeatTimeout));
        assert!(shared.stop_tasks.is_cancelled());
        assert!(shared.register(Pending::Ignored).is_err());
    }
}
