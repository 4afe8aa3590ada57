//! The routing table: which connections want a message published to a channel.
//!
//! Exact channel names and hashtags are hash lookups; wildcard patterns live in a token
//! tree, so that routing costs grow with the depth of the channel name, not with the
//! number of subscriptions. A connection appears once per route however many of its
//! subscriptions share it (a count keeps track), and a message is queued once per
//! connection however many routes match it.

use std::sync::Arc;

// Keys are client-chosen names, so the hasher is seeded per process; foldhash is that at a
// fraction of SipHash's cost, which showed in publish profiles.
use foldhash::HashMap;

use parking_lot::{RwLock, RwLockWriteGuard};
use switchboard_proto::subject::{Pattern, PatternToken};

use super::message::StoredMessage;
use crate::outbox::Outbox;

/// Connections on one route, with how many of their subscriptions use it.
type Subscribers = HashMap<u64, (Outbox, u32)>;

fn add(subscribers: &mut Subscribers, outbox: &Outbox) {
    subscribers
        .entry(outbox.conn_id())
        .or_insert_with(|| (outbox.clone(), 0))
        .1 += 1;
}

fn remove(subscribers: &mut Subscribers, conn_id: u64) {
    if let Some(entry) = subscribers.get_mut(&conn_id) {
        entry.1 -= 1;
        if entry.1 == 0 {
            subscribers.remove(&conn_id);
        }
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

    fn insert(&mut self, tokens: &[PatternToken], outbox: &Outbox) {
        match tokens.split_first() {
            None => add(&mut self.end, outbox),
            Some((PatternToken::Rest, _)) => add(&mut self.rest, outbox),
            Some((PatternToken::One, rest)) => {
                self.one.get_or_insert_default().insert(rest, outbox)
            }
            Some((PatternToken::Literal(literal), rest)) => self
                .literal
                .entry(literal.clone())
                .or_default()
                .insert(rest, outbox),
        }
    }

    fn remove(&mut self, tokens: &[PatternToken], conn_id: u64) {
        match tokens.split_first() {
            None => remove(&mut self.end, conn_id),
            Some((PatternToken::Rest, _)) => remove(&mut self.rest, conn_id),
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

    fn collect<'a>(&'a self, tokens: &[&str], out: &mut Vec<&'a Outbox>) {
        let Some((first, rest)) = tokens.split_first() else {
            out.extend(self.end.values().map(|(outbox, _)| outbox));
            return;
        };
        out.extend(self.rest.values().map(|(outbox, _)| outbox));
        if let Some(child) = self.literal.get(*first) {
            child.collect(rest, out);
        }
        if let Some(child) = &self.one {
            child.collect(rest, out);
        }
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Subscribers>,
    tags: HashMap<String, Subscribers>,
    tree: Node,
}

impl RouteTable {
    pub fn add(&mut self, pattern: &Pattern, outbox: &Outbox) {
        match pattern {
            Pattern::Exact(name) => add(self.exact.entry(name.clone()).or_default(), outbox),
            Pattern::Tag(tag) => add(self.tags.entry(tag.clone()).or_default(), outbox),
            Pattern::Wildcard(tokens) => self.tree.insert(tokens, outbox),
        }
    }

    pub fn remove(&mut self, pattern: &Pattern, conn_id: u64) {
        match pattern {
            Pattern::Exact(name) => {
                if let Some(subscribers) = self.exact.get_mut(name) {
                    remove(subscribers, conn_id);
                    if subscribers.is_empty() {
                        self.exact.remove(name);
                    }
                }
            }
            Pattern::Tag(tag) => {
                if let Some(subscribers) = self.tags.get_mut(tag) {
                    remove(subscribers, conn_id);
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
                .values()
                .filter(|(outbox, _)| outbox.deliver_message(message, drop_oldest))
                .count() as u64;
        }
        let mut targets: Vec<&Outbox> = Vec::new();
        if let Some(subscribers) = self.exact.get(channel) {
            targets.extend(subscribers.values().map(|(outbox, _)| outbox));
        }
        for tag in tags {
            if let Some(subscribers) = self.tags.get(tag) {
                targets.extend(subscribers.values().map(|(outbox, _)| outbox));
            }
        }
        if !self.tree.is_empty() {
            let tokens: Vec<&str> = channel.split('.').collect();
            self.tree.collect(&tokens, &mut targets);
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

    pub fn write(&self) -> RwLockWriteGuard<'_, RouteTable> {
        self.table.write()
    }
}
