//! The routing table: which connections want a message published to a channel.
//!
//! Exact channel names and hashtags are hash lookups; wildcard patterns live in a token
//! tree, so that routing costs grow with the depth of the channel name, not with the
//! number of subscriptions. A connection appears once per route however many of its
//! subscriptions share it (a count keeps track), and a message is queued once per
//! connection however many routes match it.
//!
//! A route may carry a session's permissions as a filter (its hashtag subscriptions,
//! and its wildcard subscriptions when the hub has roles): a message reaches the
//! connection through that route only if the session may subscribe to the message's
//! channel. Routes without a filter (every route of an open hub) cost nothing more.

use std::sync::Arc;

// Keys are client-chosen names, so the hasher is seeded per process; foldhash is that at a
// fraction of SipHash's cost, which showed in publish profiles.
use foldhash::HashMap;

use parking_lot::{RwLock, RwLockWriteGuard};
use switchboard_proto::subject::{Pattern, PatternToken};

use super::message::StoredMessage;
use crate::outbox::Outbox;
use crate::security::permissions::{Operation, SessionPermissions};

/// Whose permissions a route's deliveries are checked against.
pub type DeliveryFilter = Arc<SessionPermissions>;

/// What a route keeps per connection to decide whether a message reaches it: nothing
/// for exact routes (the channel was checked at subscribe time), an optional filter for
/// wildcard and hashtag routes.
trait RouteFilter: Clone + std::fmt::Debug + Default {
    fn admits(&self, channel: &str) -> bool;
}

impl RouteFilter for () {
    fn admits(&self, _channel: &str) -> bool {
        true
    }
}

impl RouteFilter for Option<DeliveryFilter> {
    fn admits(&self, channel: &str) -> bool {
        self.as_ref()
            .is_none_or(|permissions| permissions.allows(Operation::Subscribe, channel))
    }
}

/// One connection on a route: its outbox (which holds its id), how many of its
/// subscriptions use the route, and its filter.
type Subscriber<F> = (Outbox, u32, F);

/// Connections on one route, with how many of their subscriptions use it, sorted by
/// connection id.
///
/// Most routes have one subscriber: it is held inline, without an allocation of its own
/// (a vector of one was 32 bytes of heap, and glibc's header, per subscribed session),
/// its fields those of the variant (so that its count shares a word with the variant's
/// tag). Two or more are a sorted vector rather than a map: delivery walks it front to
/// back, and adding or removing one costs a binary search and a move of what follows.
/// The vector is boxed, and the connection's id read from its outbox rather than kept
/// beside it, so that an exact route is 16 bytes rather than 32: the route table has a
/// slot and more for every channel subscribed by name (most idle sessions' one route).
#[derive(Debug, Default)]
enum Subscribers<F = Option<DeliveryFilter>> {
    #[default]
    None,
    One(Outbox, u32, F),
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Subscriber<F>>>),
}

impl<F: RouteFilter> Subscribers<F> {
    /// Each subscriber's outbox and filter.
    fn entries(&self) -> impl Iterator<Item = (&Outbox, &F)> {
        let (one, many): (Option<(&Outbox, &F)>, &[Subscriber<F>]) = match self {
            Subscribers::None => (None, &[]),
            Subscribers::One(outbox, _, filter) => (Some((outbox, filter)), &[]),
            Subscribers::Many(many) => (None, many),
        };
        one.into_iter()
            .chain(many.iter().map(|(outbox, _, filter)| (outbox, filter)))
    }

    fn add(&mut self, outbox: &Outbox, filter: F) {
        let conn_id = outbox.conn_id();
        *self = match std::mem::take(self) {
            Subscribers::None => Subscribers::One(outbox.clone(), 1, filter),
            Subscribers::One(one, count, kept) if one.conn_id() == conn_id => {
                Subscribers::One(one, count + 1, kept)
            }
            Subscribers::One(one, count, kept) => {
                let new = (outbox.clone(), 1, filter);
                let mut many = Vec::with_capacity(2);
                if one.conn_id() < conn_id {
                    many.extend([(one, count, kept), new]);
                } else {
                    many.extend([new, (one, count, kept)]);
                }
                Subscribers::Many(Box::new(many))
            }
            Subscribers::Many(mut many) => {
                match many.binary_search_by_key(&conn_id, |entry| entry.0.conn_id()) {
                    Ok(at) => many[at].1 += 1,
                    Err(at) => many.insert(at, (outbox.clone(), 1, filter)),
                }
                Subscribers::Many(many)
            }
        };
    }

    fn remove(&mut self, conn_id: u64) {
        *self = match std::mem::take(self) {
            Subscribers::One(one, count, kept) if one.conn_id() == conn_id => {
                if count == 1 {
                    Subscribers::None
                } else {
                    Subscribers::One(one, count - 1, kept)
                }
            }
            Subscribers::Many(mut many) => {
                if let Ok(at) = many.binary_search_by_key(&conn_id, |entry| entry.0.conn_id()) {
                    many[at].1 -= 1;
                    if many[at].1 == 0 {
                        many.remove(at);
                    }
                }
                if many.len() == 1
                    && let Some((outbox, count, filter)) = many.pop()
                {
                    Subscribers::One(outbox, count, filter)
                } else {
                    if many.len() * 4 < many.capacity() {
                        many.shrink_to_fit();
                    }
                    Subscribers::Many(many)
                }
            }
            other => other,
        };
    }

    fn is_empty(&self) -> bool {
        matches!(self, Subscribers::None)
    }

    fn outboxes(&self) -> impl Iterator<Item = &Outbox> {
        self.entries().map(|(outbox, _)| outbox)
    }

    /// The outboxes whose filter (if any) admits a message of `channel`.
    fn outboxes_for<'a>(&'a self, channel: &'a str) -> impl Iterator<Item = &'a Outbox> + 'a {
        self.entries()
            .filter(move |(_, filter)| filter.admits(channel))
            .map(|(outbox, _)| outbox)
    }
}

/// A node of the wildcard tree.
#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    one: Option<Box<Node>>,
    /// Patterns ending here with `>`.
    rest: Subscribers,
    /// Patterns ending exactly here.
    end: Subscribers,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.one.is_none() && self.rest.is_empty() && self.end.is_empty()
    }

    fn insert(
        &mut self,
        tokens: &[PatternToken],
        outbox: &Outbox,
        filter: Option<&DeliveryFilter>,
    ) {
        match tokens.split_first() {
            None => self.end.add(outbox, filter.cloned()),
            Some((PatternToken::Rest, _)) => self.rest.add(outbox, filter.cloned()),
            Some((PatternToken::One, rest)) => self
                .one
                .get_or_insert_default()
                .insert(rest, outbox, filter),
            Some((PatternToken::Literal(literal), rest)) => self
                .literal
                .entry(literal.clone())
                .or_default()
                .insert(rest, outbox, filter),
        }
    }

    fn remove(&mut self, tokens: &[PatternToken], conn_id: u64) {
        match tokens.split_first() {
            None => self.end.remove(conn_id),
            Some((PatternToken::Rest, _)) => self.rest.remove(conn_id),
            Some((PatternToken::One, rest)) => {
                if let Some(child) = &mut self.one {
                    child.remove(rest, conn_id);
                    if child.is_empty() {
                        self.one = None;
                    }
                }
            }
            Some((PatternToken::Literal(literal), rest)) => {
                if let Some(child) = self.literal.get_mut(literal) {
                    child.remove(rest, conn_id);
                    if child.is_empty() {
                        self.literal.remove(literal);
                    }
                }
            }
        }
    }

    fn collect<'a>(&'a self, channel: &'a str, tokens: &[&str], out: &mut Vec<&'a Outbox>) {
        let Some((first, rest)) = tokens.split_first() else {
            out.extend(self.end.outboxes_for(channel));
            return;
        };
        out.extend(self.rest.outboxes_for(channel));
        if let Some(child) = self.literal.get(*first) {
            child.collect(channel, rest, out);
        }
        if let Some(child) = &self.one {
            child.collect(channel, rest, out);
        }
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Keyed by a boxed name: 8 bytes less than a `String` in every slot of the table,
    /// which has a slot and more for every channel subscribed by name (most idle
    /// sessions' one route).
    exact: HashMap<Box<str>, Subscribers<()>>,
    tags: HashMap<String, Subscribers>,
    tree: Node,
}

impl RouteTable {
    /// Routes `pattern` to `outbox`; with a filter, only messages of channels the
    /// filter's session may subscribe to (exact routes never need one: the channel was
    /// checked when the session subscribed).
    pub fn add(&mut self, pattern: &Pattern, outbox: &Outbox, filter: Option<&DeliveryFilter>) {
        match pattern {
            Pattern::Exact(name) => self
                .exact
                .entry(Box::from(name.as_str()))
                .or_default()
                .add(outbox, ()),
            Pattern::Tag(tag) => self
                .tags
                .entry(tag.clone())
                .or_default()
                .add(outbox, filter.cloned()),
            Pattern::Wildcard(tokens) => self.tree.insert(tokens, outbox, filter),
        }
    }

    pub fn remove(&mut self, pattern: &Pattern, conn_id: u64) {
        match pattern {
            Pattern::Exact(name) => {
                if let Some(subscribers) = self.exact.get_mut(name.as_str()) {
                    subscribers.remove(conn_id);
                    if subscribers.is_empty() {
                        self.exact.remove(name.as_str());
                    }
                }
            }
            Pattern::Tag(tag) => {
                if let Some(subscribers) = self.tags.get_mut(tag) {
                    subscribers.remove(conn_id);
                    if subscribers.is_empty() {
                        self.tags.remove(tag);
                    }
                }
            }
            Pattern::Wildcard(tokens) => self.tree.remove(tokens, conn_id),
        }
    }

    /// Queues `message` once on every connection that wants a message of `channel` with
    /// `tags`. Returns how many connections it was queued on.
    pub fn deliver(
        &self,
        channel: &str,
        tags: &[String],
        message: &Arc<StoredMessage>,
        drop_oldest: bool,
    ) -> u64 {
        if self.tree.is_empty() && (tags.is_empty() || self.tags.is_empty()) {
            // Only exact routes can match, and they hold each connection once: no list
            // to gather and deduplicate.
            let Some(subscribers) = self.exact.get(channel) else {
                return 0;
            };
            return subscribers
                .outboxes()
                .filter(|outbox| outbox.deliver_message(message, drop_oldest))
                .count() as u64;
        }
        let mut targets: Vec<&Outbox> = Vec::new();
        if let Some(subscribers) = self.exact.get(channel) {
            targets.extend(subscribers.outboxes());
        }
        for tag in tags {
            if let Some(subscribers) = self.tags.get(tag) {
                targets.extend(subscribers.outboxes_for(channel));
            }
        }
        if !self.tree.is_empty() {
            let tokens: Vec<&str> = channel.split('.').collect();
            self.tree.collect(channel, &tokens, &mut targets);
        }
        if targets.len() > 1 {
            targets.sort_unstable_by_key(|outbox| outbox.conn_id());
            targets.dedup_by_key(|outbox| outbox.conn_id());
        }
        let mut delivered = 0;
        for outbox in targets {
            if outbox.deliver_message(message, drop_oldest) {
                delivered += 1;
            }
        }
        delivered
    }
}

impl RouteTable {
    /// Whether some connection has an exact or wildcard route matching `channel`.
    pub fn covers(&self, channel: &str) -> bool {
        if self.exact.contains_key(channel) {
            return true;
        }
        if self.tree.is_empty() {
            return false;
        }
        let tokens: Vec<&str> = channel.split('.').collect();
        let mut targets = Vec::new();
        self.tree.collect(channel, &tokens, &mut targets);
        !targets.is_empty()
    }

    /// Queues `message` once on every connection routed to one of `tags`, and on no
    /// other (cluster mode: a message that came through a hashtag's feed only).
    pub fn deliver_tagged(
        &self,
        channel: &str,
        tags: &[String],
        message: &Arc<StoredMessage>,
        drop_oldest: bool,
    ) -> u64 {
        let mut targets: Vec<&Outbox> = Vec::new();
        for tag in tags {
            if let Some(subscribers) = self.tags.get(tag) {
                targets.extend(subscribers.outboxes_for(channel));
            }
        }
        targets.sort_unstable_by_key(|outbox| outbox.conn_id());
        targets.dedup_by_key(|outbox| outbox.conn_id());
        targets
            .into_iter()
            .filter(|outbox| outbox.deliver_message(message, drop_oldest))
            .count() as u64
    }

    /// Every connection with an exact or wildcard route matching `channel`, once each.
    pub fn connections_for(&self, channel: &str) -> Vec<Outbox> {
        let mut targets: Vec<&Outbox> = Vec::new();
        if let Some(subscribers) = self.exact.get(channel) {
            targets.extend(subscribers.outboxes());
        }
        if !self.tree.is_empty() {
            let tokens: Vec<&str> = channel.split('.').collect();
            self.tree.collect(channel, &tokens, &mut targets);
        }
        targets.sort_unstable_by_key(|outbox| outbox.conn_id());
        targets.dedup_by_key(|outbox| outbox.conn_id());
        targets.into_iter().cloned().collect()
    }
}

/// The routing table behind its lock. Publishers read it while holding their channel's
/// lock; subscribers write it while holding the locks of the channels they replay.
#[derive(Debug, Default)]
pub struct Routes {
    table: RwLock<RouteTable>,
}

impl Routes {
    pub fn deliver(
        &self,
        channel: &str,
        tags: &[String],
        message: &Arc<StoredMessage>,
        drop_oldest: bool,
    ) -> u64 {
        self.table
            .read()
            .deliver(channel, tags, message, drop_oldest)
    }

    /// Every connection routed to `channel` by its name or a wildcard.
    pub fn connections_for(&self, channel: &str) -> Vec<Outbox> {
        self.table.read().connections_for(channel)
    }

    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, RouteTable> {
        self.table.read()
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, RouteTable> {
        self.table.write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(conn_id: u64) -> Outbox {
        let (outbox, _) = Outbox::unbudgeted(conn_id, 16, 4096);
        outbox
    }

    fn ids(subscribers: &Subscribers<()>) -> Vec<(u64, u32)> {
        match subscribers {
            Subscribers::None => Vec::new(),
            Subscribers::One(outbox, count, ()) => vec![(outbox.conn_id(), *count)],
            Subscribers::Many(many) => many
                .iter()
                .map(|(outbox, count, ())| (outbox.conn_id(), *count))
                .collect(),
        }
    }

    #[test]
    fn subscribers_stay_sorted_and_counted_from_one_inline_to_many_and_back() {
        let (one, two, three) = (outbox(1), outbox(2), outbox(3));
        let mut subscribers = Subscribers::<()>::default();
        subscribers.add(&two, ());
        subscribers.add(&two, ());
        assert!(matches!(subscribers, Subscribers::One(..)));
        assert_eq!(ids(&subscribers), [(2, 2)]);
        subscribers.add(&three, ());
        subscribers.add(&one, ());
        assert_eq!(ids(&subscribers), [(1, 1), (2, 2), (3, 1)]);
        subscribers.remove(2);
        subscribers.remove(9);
        assert_eq!(ids(&subscribers), [(1, 1), (2, 1), (3, 1)]);
        subscribers.remove(2);
        subscribers.remove(1);
        assert!(matches!(subscribers, Subscribers::One(..)));
        assert_eq!(ids(&subscribers), [(3, 1)]);
        assert_eq!(
            subscribers
                .outboxes()
                .map(Outbox::conn_id)
                .collect::<Vec<_>>(),
            [3]
        );
        subscribers.remove(1);
        assert_eq!(ids(&subscribers), [(3, 1)]);
        subscribers.remove(3);
        assert!(subscribers.is_empty());
        assert!(ids(&subscribers).is_empty());
    }
}
