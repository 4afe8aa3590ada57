//! SUBSCRIBE and UNSUBSCRIBE.

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{OkReply, Packet, Replay, Subscribe, Unsubscribe};
use switchboard_proto::subject::Pattern;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;

/// A session's subscriptions by id, in id order. A vector rather than a hash map: most
/// sessions hold one or a few, and a map's smallest table is several times their size.
#[derive(Default)]
pub(super) struct Subscriptions {
    entries: Vec<(u64, Pattern)>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn insert(&mut self, id: u64, pattern: Pattern) {
        // Grown by doubling from one entry, not from the four a vector starts with.
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact(self.entries.len().max(1));
        }
        match self.entries.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => self.entries[at].1 = pattern,
            // Ids only grow, so this is nearly always the end.
            Err(at) => self.entries.insert(at, (id, pattern)),
        }
    }

    pub fn remove(&mut self, id: &u64) -> Option<Pattern> {
        let at = self.entries.binary_search_by_key(id, |(id, _)| *id).ok()?;
        Some(self.entries.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u64, Pattern)> {
        self.entries.iter()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = (u64, Pattern)> + '_ {
        self.entries.drain(..)
    }
}

pub(crate) async fn subscribe(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    subscribe: Subscribe,
) {
    let pattern = match Pattern::parse(&subscribe.pattern) {
        Ok(pattern) => pattern,
        Err(error) => {
            session.refuse(request_id, Refusal::from(error)).await;
            return;
        }
    };
    let replay = subscribe.replay != Replay::None;
    let filter = match session.permit_subscription(hub, &pattern, replay) {
        Ok(filter) => filter,
        Err(refusal) => {
            session.refuse(request_id, refusal).await;
            return;
        }
    };
    if session.subscriptions.len() >= hub.config().max_subscriptions {
        session
            .refuse(
                request_id,
                Refusal::new(
                    ErrorCode::LimitReached,
                    format!(
                        "a session may hold at most {} subscriptions",
                        hub.config().max_subscriptions
                    ),
                ),
            )
            .await;
        return;
    }
    if let Err(refusal) = session.count_subscription(hub) {
        session.refuse(request_id, refusal).await;
        return;
    }
    if let Err(refusal) = hub.admit_subscription(&pattern) {
        session.uncount_subscriptions(1);
        session.refuse(request_id, refusal).await;
        return;
    }
    // Cluster mode: the feed is followed and the replayed channels are in step before
    // the hub joins replay and live delivery, as it does on one server.
    if let Some(cluster) = hub.cluster()
        && let Err(refusal) = cluster
            .prepare_subscription(hub, &pattern, subscribe.replay)
            .await
    {
        hub.budget()
            .release(crate::budget::subscription_cost(&pattern));
        session.uncount_subscriptions(1);
        session.refuse(request_id, refusal).await;
        return;
    }
    // Room for the ack and replay is reserved before the hub takes its locks.
    let Ok(permit) = session.outbox().reserve().await else {
        hub.budget()
            .release(crate::budget::subscription_cost(&pattern));
        session.uncount_subscriptions(1);
        if let Some(cluster) = hub.cluster() {
            cluster.subscription_ended(hub, &pattern);
        }
        return;
    };
    let subscription_id = session.next_subscription_id();
    hub.subscribe(
        &session.caller,
        request_id,
        subscription_id,
        &pattern,
        subscribe.replay,
        permit,
        filter.as_ref(),
    );
    session.subscriptions.insert(subscription_id, pattern);
}

pub(crate) async fn unsubscribe(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    unsubscribe: Unsubscribe,
) {
    match session.subscriptions.remove(&unsubscribe.subscription_id) {
        Some(pattern) => {
            hub.unsubscribe(&pattern, session.caller.client_id);
            session.uncount_subscriptions(1);
            session.reply(request_id, Packet::Ok(OkReply)).await;
        }
        None => {
            session
                .refuse(
                    request_id,
                    Refusal::not_found(format!(
                        "no subscription {} on this session",
                        unsubscribe.subscription_id
                    )),
                )
                .await;
        }
    }
}
