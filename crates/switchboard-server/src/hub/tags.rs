//! Hashtag index: the recent messages of each tag, so they can be fetched and replayed.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use switchboard_proto::packet::Since;

use super::message::StoredMessage;
use crate::budget::{self, MemoryBudget};

/// Recent messages per tag, newest last. Lock order: a channel's history, then this, then
/// the routes.
#[derive(Debug)]
pub struct TagIndex {
    per_tag: usize,
    map: Mutex<HashMap<String, VecDeque<Arc<StoredMessage>>>>,
}

/// The locked index.
pub struct TagGuard<'a> {
    per_tag: usize,
    map: MutexGuard<'a, HashMap<String, VecDeque<Arc<StoredMessage>>>>,
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
    /// Indexes `message` under its tags. A tag new to the index is charged to `budget`;
    /// when the budget is exhausted, the message is not indexed under new tags (it is
    /// published and routed all the same; only fetching and replaying by that tag miss
    /// it).
    pub fn push(&mut self, message: &Arc<StoredMessage>, budget: &MemoryBudget) {
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
            recent.push_back(message.clone());
            if recent.len() > self.per_tag {
                recent.pop_front();
            }
        }
    }

    /// Messages of `tag`, oldest first, with the same range rules as a history.
    pub fn range(&self, tag: &str, since: Since, limit: Option<u64>) -> Vec<Arc<StoredMessage>> {
        let Some(recent) = self.map.get(tag) else {
            return Vec::new();
        };
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let start = match since {
            Since::All => recent.len().saturating_sub(limit),
            // Tag streams mix channels, so their seqs are not ordered; filter instead.
            Since::Seq(seq) => {
                return recent
                    .iter()
                    .filter(|m| m.seq() >= seq)
                    .take(limit)
                    .cloned()
                    .collect();
            }
            Since::Time(time) => recent.partition_point(|m| m.time_us() < time),
        };
        recent.iter().skip(start).take(limit).cloned().collect()
    }
}
