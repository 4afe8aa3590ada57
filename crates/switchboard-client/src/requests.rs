//! The table of requests still waiting for their answer, keyed by request id, and the
//! allocation of those ids.
//!
//! Ids of requests that expect an answer come from `1..=MAX_TRACKED_ID` and are unique
//! among the entries of the table. Publishes sent with NO_REPLY get ids from the upper
//! half (high bit set) instead: they have no entry here, because nothing answers them
//! unless they fail, and an ERROR carrying such an id is recognised by that bit alone.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_proto::Frame;
use switchboard_proto::packet::SubscribeAck;
use switchboard_proto::subject::Pattern;
use tokio::sync::oneshot;

use crate::message_queue;

use crate::error::{ClientError, CloseReason, Result};
use crate::payload::ReceivedMessage;
use crate::subscription::SubscriptionState;

/// The bit that marks the request id of a publish sent without reply.
pub(crate) const NO_REPLY_BIT: u32 = 0x8000_0000;
/// Largest id handed to a request that expects an answer.
pub(crate) const MAX_TRACKED_ID: u32 = NO_REPLY_BIT - 1;

/// Whether `request_id` belongs to a publish sent without reply.
pub(crate) fn is_no_reply_id(request_id: u32) -> bool {
    request_id & NO_REPLY_BIT != 0
}

/// What a request is waiting for.
pub(crate) enum Pending {
    /// One terminal frame (its reply type, OK, MESSAGE for GET_MESSAGE); an ERROR is
    /// turned into an error of kind [`crate::ErrorKind::Server`] before it gets here.
    Reply(oneshot::Sender<Result<Frame>>),
    /// GET_MESSAGE: one MESSAGE, handed over as soon as it arrives (a streamed body
    /// follows through the message's own channel).
    Message(oneshot::Sender<Result<ReceivedMessage>>),
    /// GET_MESSAGES: MESSAGE frames are gathered until MESSAGES_END.
    Collect {
        messages: Vec<ReceivedMessage>,
        done: oneshot::Sender<Result<Vec<ReceivedMessage>>>,
    },
    /// SUBSCRIBE before its SUBSCRIBE_ACK.
    Subscribe(PendingSubscription),
    /// SUBSCRIBE after its ack, while replayed MESSAGE frames are still to come.
    Replaying {
        subscription_id: u64,
        remaining: u64,
    },
    /// Sent by the client itself (UNSUBSCRIBE of a dropped subscription); nobody waits.
    Ignored,
}

/// A subscription whose SUBSCRIBE is in flight: everything the reader needs to start
/// delivering to it once the server acknowledges.
pub(crate) struct PendingSubscription {
    pub pattern: Pattern,
    pub sender: message_queue::Sender<ReceivedMessage>,
    pub state: Arc<SubscriptionState>,
    pub done: oneshot::Sender<Result<SubscribeAck>>,
}

impl Pending {
    /// Ends the wait with `error`. A caller that already gave up is not an error.
    pub(crate) fn fail(self, error: ClientError) {
        match self {
            Pending::Reply(done) => {
                let _ = done.send(Err(error));
            }
            Pending::Message(done) => {
                let _ = done.send(Err(error));
            }
            Pending::Collect { done, .. } => {
                let _ = done.send(Err(error));
            }
            Pending::Subscribe(pending) => {
                let _ = pending.done.send(Err(error));
            }
            Pending::Replaying { .. } | Pending::Ignored => {}
        }
    }
}

/// The requests in flight on one connection.
pub(crate) struct RequestTable {
    entries: HashMap<u32, Pending>,
    next_id: u32,
    closed: Option<CloseReason>,
}

impl Default for RequestTable {
    fn default() -> Self {
        RequestTable {
            entries: HashMap::new(),
            next_id: 1,
            closed: None,
        }
    }
}

impl RequestTable {
    /// Records `pending` under a fresh id, or refuses if the connection is gone.
    pub(crate) fn register(&mut self, pending: Pending) -> Result<u32> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::closed(reason.clone()));
        }
        // Ids go round in order, so a freed id is reused only after two billion others;
        // a late answer to a request that timed out cannot be mistaken for a new one's.
        // The table can never hold every id (that would be billions of requests), so
        // the search ends.
        loop {
            let id = self.next_id;
            self.next_id = if id >= MAX_TRACKED_ID { 1 } else { id + 1 };
            if let std::collections::hash_map::Entry::Vacant(slot) = self.entries.entry(id) {
                slot.insert(pending);
                return Ok(id);
            }
        }
    }

    /// Takes the entry for `id`.
    pub(crate) fn take(&mut self, id: u32) -> Option<Pending> {
        self.entries.remove(&id)
    }

    /// The entry for `id`, to update in place.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Pending> {
        self.entries.get_mut(&id)
    }

    /// Whether `id` is a GET_MESSAGES still gathering its messages.
    pub(crate) fn is_collecting(&self, id: u32) -> bool {
        matches!(self.entries.get(&id), Some(Pending::Collect { .. }))
    }

    /// Stops waiting for `id`'s answer but keeps the id reserved, so that the answer
    /// still on its way is recognised and dropped. `false` if there is no such entry
    /// (the answer already came, or the connection is gone).
    pub(crate) fn ignore(&mut self, id: u32) -> bool {
        match self.entries.get_mut(&id) {
            Some(pending) => {
                *pending = Pending::Ignored;
                true
            }
            None => false,
        }
    }

    /// Puts an entry back under the id it was taken from.
    pub(crate) fn restore(&mut self, id: u32, pending: Pending) {
        if self.closed.is_none() {
            self.entries.insert(id, pending);
        }
    }

    /// Number of requests in flight.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Refuses all further requests and hands back those in flight, to be failed.
    pub(crate) fn close(&mut self, reason: &CloseReason) -> Vec<Pending> {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
        }
        self.entries.drain().map(|(_, pending)| pending).collect()
    }

    #[cfg(test)]
    fn set_next_id(&mut self, id: u32) {
        self.next_id = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorDetail;

    #[test]
    fn ids_start_at_one_and_skip_those_in_use() {
        let mut table = RequestTable::default();
        assert_eq!(table.register(Pending::Ignored).unwrap(), 1);
        assert_eq!(table.register(Pending::Ignored).unwrap(), 2);
        table.set_next_id(1);
        // 1 and 2 are taken, so the next free one is 3.
        assert_eq!(table.register(Pending::Ignored).unwrap(), 3);
        assert!(table.take(2).is_some());
        table.set_next_id(2);
        assert_eq!(table.register(Pending::Ignored).unwrap(), 2);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn ids_wrap_past_the_tracked_range_and_never_use_zero() {
        let mut table = RequestTable::default();
        table.set_next_id(MAX_TRACKED_ID);
        assert_eq!(table.register(Pending::Ignored).unwrap(), MAX_TRACKED_ID);
        assert_eq!(table.register(Pending::Ignored).unwrap(), 1);
        assert!(!is_no_reply_id(MAX_TRACKED_ID));
        assert!(is_no_reply_id(NO_REPLY_BIT | 5));
    }

    #[test]
    fn closing_fails_everyone_and_refuses_newcomers() {
        let mut table = RequestTable::default();
        let (done, mut answer) = oneshot::channel();
        table.register(Pending::Reply(done)).unwrap();
        let reason = CloseReason::Eof;
        for pending in table.close(&reason) {
            pending.fail(ClientError::closed(reason.clone()));
        }
        let answer = answer.try_recv().expect("answered");
        assert!(matches!(
            answer.as_ref().map_err(ClientError::detail),
            Err(ErrorDetail::ConnectionClosed {
                reason: CloseReason::Eof
            })
        ));
        assert!(matches!(
            table
                .register(Pending::Ignored)
                .as_ref()
                .map_err(ClientError::detail),
            Err(ErrorDetail::ConnectionClosed { .. })
        ));
        table.restore(9, Pending::Ignored);
        assert_eq!(table.len(), 0);
    }
}
