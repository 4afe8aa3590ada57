//! Hashtag index: the recent messages of each tag, so they can be fetched and replayed.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use switchboard_proto::packet::Since;

use super::message::StoredMessage;
use crate::budget::{self, MemoryBudget};
use crate::time::now_us;

/// A message in the index, with the time it expires at (its channel's maximum age after
/// its publish time; `u64::MAX` for never): a tag mixes channels of different ages, so
/// each entry carries its own.
#[derive(Debug)]
struct Entry {
    expires_us: u64,
    message: Arc<StoredMessage>,
}

type Map = HashMap<String, VecDeque<Entry>>;

/// Recent messages per tag, newest last. Lock order: a channel's history, then this, then
/// the routes.
#[derive(Debug)]
pub struct TagIndex {
    per_tag: usize,
    map: Mutex<Map>,
}

/// The locked index.
pub struct TagGuard<'a> {
    per_tag: usize,
    map: MutexGuard<'a, Map>,
}

impl TagIndex {
    pub fn new(per_tag: usize) -> Self {
        TagIndex {
            per_tag: per_tag.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn lock(&self) -> TagGuard<'_> {
        TagGuard {
            per_tag: self.per_tag,
            map: self.map.lock(),
        }
    }
}

impl TagGuard<'_> {
    /// Indexes a message of a channel whose messages expire after `max_age_us`, if set,
    /// among the tag's others in time order, keeping the newest.
    /// A tag new to the index is charged to `budget`; when the budget is exhausted, the
    /// message is not indexed under new tags (it is published and routed all the same;
    /// only fetching and replaying by that tag miss it).
    pub fn push(
        &mut self,
        message: &Arc<StoredMessage>,
        max_age_us: Option<u64>,
        budget: &MemoryBudget,
    ) {
        let expires_us = max_age_us.map_or(u64::MAX, |age| message.time_us().saturating_add(age));
        for tag in message.tags() {
            let recent = match self.map.get_mut(tag.as_str()) {
                Some(recent) => recent,
                None => {
                    if budget.charge(budget::tag_cost(tag), "hashtags").is_err() {
                        continue;
                    }
                    self.map.entry(tag.clone()).or_default()
                }
            };
            let entry = Entry {
                expires_us,
                message: message.clone(),
            };
            // In time order: a publish is the newest, but a restart indexes its
            // channels one after another.
            match recent.back() {
                Some(last) if last.message.time_us() > message.time_us() => {
                    let at = recent
                        .partition_point(|entry| entry.message.time_us() <= message.time_us());
                    recent.insert(at, entry);
                }
                _ => recent.push_back(entry),
            }
            if recent.len() > self.per_tag {
                recent.pop_front();
            }
        }
    }

    /// Cluster mode: puts messages of `tag` read back from the backplane (oldest first)
    /// among those indexed, in time order, leaving out any already there, so that a
    /// replay of the tag on this node covers the cluster's recent messages.
    pub fn merge(&mut self, tag: &str, messages: Vec<Arc<StoredMessage>>, budget: &MemoryBudget) {
        if messages.is_empty() {
            return;
        }
        let recent = match self.map.get_mut(tag) {
            Some(recent) => recent,
            None => {
                if budget.charge(budget::tag_cost(tag), "hashtags").is_err() {
                    return;
                }
                self.map.entry(tag.to_owned()).or_default()
            }
        };
        let present: std::collections::HashSet<uuid::Uuid> =
            recent.iter().map(|entry| entry.message.id()).collect();
        for message in messages {
            if present.contains(&message.id()) {
                continue;
            }
            let at = recent.partition_point(|entry| entry.message.time_us() <= message.time_us());
            recent.insert(
                at,
                Entry {
                    expires_us: u64::MAX,
                    message,
                },
            );
        }
        while recent.len() > self.per_tag {
            recent.pop_front();
        }
    }

    /// Messages of `tag`, oldest first, with the same range rules as a history; expired
    /// messages are left out.
    pub fn range(&self, tag: &str, since: Since, limit: Option<u64>) -> Vec<Arc<StoredMessage>> {
        let Some(recent) = self.map.get(tag) else {
            return Vec::new();
        };
        let now = now_us();
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let live = |entry: &&Entry| entry.expires_us >= now;
        match since {
            Since::All => {
                let mut newest: Vec<_> = recent
                    .iter()
                    .rev()
                    .filter(live)
                    .take(limit)
                    .map(|entry| entry.message.clone())
                    .collect();
                newest.reverse();
                newest
            }
            // Tag streams mix channels, so their seqs are not ordered; filter instead.
            Since::Seq(seq) => recent
                .iter()
                .filter(live)
                .filter(|entry| entry.message.seq() >= seq)
                .take(limit)
                .map(|entry| entry.message.clone())
                .collect(),
            Since::Time(time) => {
                let start = recent.partition_point(|entry| entry.message.time_us() < time);
                recent
                    .iter()
                    .skip(start)
                    .filter(live)
                    .take(limit)
                    .map(|entry| entry.message.clone())
                    .collect()
            }
        }
    }

    /// Whether `tag` is in the index.
    pub fn contains(&self, tag: &str) -> bool {
        self.map.contains_key(tag)
    }

    /// Removes from `tags` every message of `channel` (a channel being deleted, whose
    /// history no longer held those messages in memory); returns the tags left empty.
    /// Each message's channel is read from its frame: a deletion's cost, not a
    /// publish's.
    pub fn remove_channel(
        &mut self,
        tags: &[String],
        channel: &str,
        budget: &MemoryBudget,
    ) -> Vec<String> {
        let mut left = Vec::new();
        for tag in tags {
            let Some(recent) = self.map.get_mut(tag.as_str()) else {
                continue;
            };
            recent.retain(|entry| {
                entry
                    .message
                    .envelope()
                    .map_or(true, |envelope| envelope.channel != channel)
            });
            if recent.is_empty() {
                self.map.remove(tag.as_str());
                budget.release(budget::tag_cost(tag));
                left.push(tag.clone());
            }
        }
        left
    }

    /// Removes the given messages (those of a deleted channel) from every tag they carry;
    /// a tag left with none leaves the index and gives its share of `budget` back. Returns
    /// the tags that left.
    pub fn remove(
        &mut self,
        messages: &[Arc<StoredMessage>],
        budget: &MemoryBudget,
    ) -> Vec<String> {
        let mut left = Vec::new();
        let mut by_tag: HashMap<&str, Vec<*const StoredMessage>> = HashMap::new();
        for message in messages {
            for tag in message.tags() {
                by_tag
                    .entry(tag.as_str())
                    .or_default()
                    .push(Arc::as_ptr(message));
            }
        }
        for (tag, mut gone) in by_tag {
            gone.sort_unstable();
            if let Some(recent) = self.map.get_mut(tag) {
                recent.retain(|entry| gone.binary_search(&Arc::as_ptr(&entry.message)).is_err());
                if recent.is_empty() {
                    self.map.remove(tag);
                    budget.release(budget::tag_cost(tag));
                    left.push(tag.to_owned());
                }
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::packet::Message;
    use switchboard_proto::{FrameCodec, Limits};

    use super::*;

    /// Message `seq` of channel `channel`, published at `time_us`, tagged #t.
    fn tagged(channel: &str, seq: u64, time_us: u64) -> Arc<StoredMessage> {
        let message = Message {
            channel: channel.into(),
            seq,
            time_us,
            body: format!("{channel} {seq} #t").into_bytes().into(),
            ..Message::default()
        };
        let codec = FrameCodec::new(Limits::default());
        let stored =
            StoredMessage::encode(&codec, &message.as_envelope(), vec!["t".to_owned()]).unwrap();
        Arc::new(stored)
    }

    /// A restart indexes one channel after the other: the index still holds the tag's
    /// newest messages, in time order.
    #[test]
    fn messages_indexed_out_of_time_order_keep_the_newest_in_order() {
        let index = TagIndex::new(3);
        let budget = MemoryBudget::unlimited();
        let mut tags = index.lock();
        for (seq, time) in [(1, 10), (2, 30), (3, 50)] {
            tags.push(&tagged("a", seq, time), None, &budget);
        }
        for (seq, time) in [(1, 20), (2, 40)] {
            tags.push(&tagged("b", seq, time), None, &budget);
        }
        let order: Vec<(u64, u64)> = tags
            .range("t", Since::All, None)
            .iter()
            .map(|m| (m.time_us(), m.seq()))
            .collect();
        assert_eq!(order, [(30, 2), (40, 2), (50, 3)]);
    }
}
