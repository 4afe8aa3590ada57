//! SUBSCRIBE and UNSUBSCRIBE.

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{OkReply, Packet, Replay, Subscribe, Unsubscribe};
use switchboard_proto::subject::Pattern;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;

/// A session's subscriptions by id, in id order. A vector rather than a hash map: most
/// sessions hold one or a few, and a map's smallest table is several times their size.
/// A single one is held inline: a vector of one is an allocation of 48 bytes with its
/// header, in every session that subscribed once.
#[derive(Default)]
pub(super) enum Subscriptions {
    #[default]
    None,
    One((u64, Pattern)),
    /// Two or more, or what is left of them.
    Many(Vec<(u64, Pattern)>),
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn as_slice(&self) -> &[(u64, Pattern)] {
        match self {
            Subscriptions::None => &[],
            Subscriptions::One(one) => std::slice::from_ref(one),
            Subscriptions::Many(many) => many,
        }
    }

    pub fn insert(&mut self, id: u64, pattern: Pattern) {
        match self {
            Subscriptions::None => *self = Subscriptions::One((id, pattern)),
            Subscriptions::One(one) if one.0 == id => one.1 = pattern,
            Subscriptions::One(_) => {
                let Subscriptions::One(one) = std::mem::take(self) else {
                    return;
                };
                let mut many = Vec::with_capacity(2);
                if one.0 < id {
                    many.extend([one, (id, pattern)]);
                } else {
                    many.extend([(id, pattern), one]);
                }
                *self = Subscriptions::Many(many);
            }
            Subscriptions::Many(entries) => {
                // Grown by doubling, not from the four a vector grows to at first.
                if entries.len() == entries.capacity() {
                    entries.reserve_exact(entries.len().max(1));
                }
                match entries.binary_search_by_key(&id, |(id, _)| *id) {
                    Ok(at) => entries[at].1 = pattern,
                    // Ids only grow, so this is nearly always the end.
                    Err(at) => entries.insert(at, (id, pattern)),
                }
            }
        }
    }

    pub fn remove(&mut self, id: &u64) -> Option<Pattern> {
        match self {
            Subscriptions::None => None,
            Subscriptions::One(one) if one.0 == *id => match std::mem::take(self) {
                Subscriptions::One((_, pattern)) => Some(pattern),
                _ => None,
            },
            Subscriptions::One(_) => None,
            Subscriptions::Many(entries) => {
                let at = entries.binary_search_by_key(id, |(id, _)| *id).ok()?;
                let (_, pattern) = entries.remove(at);
                if entries.is_empty() {
                    *self = Subscriptions::None;
                }
                Some(pattern)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u64, Pattern)> {
        self.as_slice().iter()
    }

    /// Takes every subscription out.
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, Pattern)> + use<> {
        let (one, many) = match std::mem::take(self) {
            Subscriptions::None => (None, Vec::new()),
            Subscriptions::One(one) => (Some(one), Vec::new()),
            Subscriptions::Many(many) => (None, many),
        };
        one.into_iter().chain(many)
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
        withdraw(hub, session, &pattern);
        return;
    };
    let subscription_id = session.next_subscription_id();
    let subscribed = hub.subscribe(
        &session.caller,
        request_id,
        subscription_id,
        &pattern,
        subscribe.replay,
        permit,
        filter.as_ref(),
    );
    if let Err(refusal) = subscribed {
        withdraw(hub, session, &pattern);
        session.refuse(request_id, refusal).await;
        return;
    }
    session.subscriptions.insert(subscription_id, pattern);
}

/// Gives back what an admitted subscription to `pattern` took (its share of the memory
/// budget, the session's count, the cluster's interest) when it is not registered after
/// all.
fn withdraw(hub: &Hub, session: &Session, pattern: &Pattern) {
    hub.budget()
        .release(crate::budget::subscription_cost(pattern));
    session.uncount_subscriptions(1);
    if let Some(cluster) = hub.cluster() {
        cluster.subscription_ended(hub, pattern);
    }
}

pub(crate) async fn unsubscribe(
    hub: &Hub,
    session: &mut Session,
    request_id: u32,
    unsubscribe: Unsubscribe,
) {
    match session.subscriptions.remove(&unsubscribe.subscription_id) {
        Some(pattern) => {
            hub.unsubscribe(&pattern, session.caller.client_id());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(subscriptions: &Subscriptions) -> Vec<u64> {
        subscriptions.iter().map(|(id, _)| *id).collect()
    }

    fn pattern(name: &str) -> Pattern {
        Pattern::parse(name).expect("a valid pattern")
    }

    /// One subscription inline, more in a vector, fewer again: always in id order, each
    /// id with the pattern it was given last, and everything taken out by a drain.
    #[test]
    fn subscriptions_keep_id_order_held_inline_or_not() {
        let mut subscriptions = Subscriptions::default();
        assert_eq!(subscriptions.len(), 0);
        subscriptions.insert(5, pattern("a"));
        assert!(matches!(subscriptions, Subscriptions::One(_)));
        subscriptions.insert(5, pattern("b"));
        assert_eq!(ids(&subscriptions), [5]);
        subscriptions.insert(3, pattern("c"));
        subscriptions.insert(9, pattern("d"));
        assert_eq!(ids(&subscriptions), [3, 5, 9]);
        assert_eq!(subscriptions.remove(&7), None);
        assert_eq!(subscriptions.remove(&5), Some(pattern("b")));
        assert_eq!(ids(&subscriptions), [3, 9]);
        assert_eq!(subscriptions.remove(&3), Some(pattern("c")));
        assert_eq!(subscriptions.remove(&9), Some(pattern("d")));
        assert!(matches!(subscriptions, Subscriptions::None));
        subscriptions.insert(1, pattern("e"));
        assert_eq!(subscriptions.remove(&2), None);
        assert_eq!(subscriptions.remove(&1), Some(pattern("e")));
        assert_eq!(subscriptions.len(), 0);
        subscriptions.insert(1, pattern("f"));
        subscriptions.insert(2, pattern("g"));
        let drained: Vec<u64> = subscriptions.drain().map(|(id, _)| id).collect();
        assert_eq!(drained, [1, 2]);
        assert_eq!(subscriptions.len(), 0);
    }
}
